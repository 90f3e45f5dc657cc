"""API keys on the HTTP API: ``Authorization: Bearer <key>`` (:mod:`geosearch.keys`).

- :func:`require` guards a view: no key (or another scheme than Bearer) is a 401 with
  ``WWW-Authenticate: Bearer realm="geosearch"``; a key that is malformed, over
  :data:`MAX_AUTHORIZATION_CHARS`, not ASCII, unknown or revoked is a 401 that adds
  ``error="invalid_token"`` (RFC 6750); a key without the scope is a 403. Each names
  the ``Authorization`` header in its errors. The key's name
  is then ``flask.g.actor``. A view that requires ``write`` also counts the request
  against the key's write limit (``GEOSEARCH_WRITE_RATE_LIMIT``: 429 with
  ``Retry-After``, shared by every worker of the server).
- With ``GEOSEARCH_READ_KEYS=required`` every route but the health probes (and CORS
  preflights, which carry no credentials) needs a valid key, of any scope.

The secret is read from the header and nowhere else; no answer and no log line holds it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TypeVar, cast

from flask import Flask, current_app, g, request
from limits import RateLimitItem, parse_many

from geosearch.api.errors import ApiError, ParamError
from geosearch.api.ratelimit import UNLIMITED, too_many
from geosearch.clientid import key_of
from geosearch.keys import SCOPES, WRITE, Key, KeyStore
from geosearch.observe.context import note_key
from geosearch.settings import Settings
from geosearch.sharedwindow import SharedWindows

REALM = 'Bearer realm="geosearch"'
# "Bearer " and a secret are far shorter: a longer header is refused unread.
MAX_AUTHORIZATION_CHARS = 256
KEYS = "geosearch.keys"  # app.extensions: the KeyStore (None without a database)
WRITE_LIMIT = "geosearch.write_limit"  # app.extensions: the WriteLimit (None: no limit)
View = TypeVar("View", bound=Callable)


class WriteLimit:
    """At most ``spec`` writes (``"20/second;600/minute"``) per key; more get 429 with
    ``Retry-After``. Made before the server forks, so that its workers share the counts."""

    def __init__(self, spec: str, windows: Callable[[], SharedWindows] = SharedWindows
                 ) -> None:
        self.items: list[RateLimitItem] = parse_many(spec)
        self.windows = windows()

    def check(self, key: Key) -> None:
        """Count one write of ``key``; raise 429 when it is over a limit."""
        for item in self.items:
            verdict = self.windows.take(key_of(f"write|{item}|{key.name}"), 1.0,
                                        float(item.amount), float(item.get_expiry()),
                                        time.time())
            if not verdict.allowed:
                raise too_many(f"too many writes with this key: at most {item}",
                               verdict.retry_after_s, "key_writes")


def install(app: Flask, settings: Settings) -> None:
    """Give ``app`` the key store of the settings' database and the write limit, and with
    ``read_keys="required"`` the check of a key before every request."""
    app.extensions[KEYS] = KeyStore(settings) if settings.database_url else None
    app.extensions[WRITE_LIMIT] = (WriteLimit(settings.write_rate_limit)
                                   if settings.write_rate_limit else None)
    if settings.read_keys:
        app.before_request(_any_key)


def _any_key() -> None:
    if request.path not in UNLIMITED and request.method != "OPTIONS":
        authenticate()


def _unauthorized(detail: str, invalid: bool) -> ApiError:
    challenge = f'{REALM}, error="invalid_token"' if invalid else REALM
    return ApiError(401, "Unauthorized", detail, [ParamError(
        "Authorization", "Bearer and a live key")], {"WWW-Authenticate": challenge})


def _bearer_token(header: str | None) -> str | None:
    """The token of a Bearer ``Authorization`` header ("" when it cannot be one); None
    when the request presents no Bearer credentials."""
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    if len(header or "") > MAX_AUTHORIZATION_CHARS or not token.isascii():
        return ""
    return token.strip()


def authenticate() -> Key:
    """The request's key (checked once per request, then kept on ``g``); 401 without a
    valid one."""
    known: Key | None = g.get("geosearch_key")
    if known is not None:
        return known
    token = _bearer_token(request.headers.get("Authorization"))
    if token is None:
        raise _unauthorized("this request needs a key: Authorization: Bearer <key>", False)
    store: KeyStore | None = current_app.extensions.get(KEYS)
    key = store.authenticate(token) if store is not None and token else None
    if key is None:
        raise _unauthorized("the key is malformed, unknown or revoked", True)
    g.geosearch_key, g.actor = key, key.name
    note_key(key.name)  # its name in the request's log line
    return key


def require(scope: str) -> Callable[[View], View]:
    """Decorate a view so that it runs only for a valid key with ``scope`` (or admin);
    a ``write`` view also counts against the key's write limit."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def guarded(*args, **kwargs):
            key = authenticate()
            if not key.allows(scope):
                raise ApiError(403, "Forbidden", f"this key does not have the scope {scope!r}",
                               [ParamError("Authorization", f"a key with the scope {scope}")])
            limit: WriteLimit | None = current_app.extensions.get(WRITE_LIMIT)
            if scope == WRITE and limit is not None:
                limit.check(key)
            return view(*args, **kwargs)

        return cast(View, guarded)

    return decorate
