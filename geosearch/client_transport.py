"""How :class:`geosearch.client.Client` talks to a service: safely enough to hand a key.

- The key goes as ``Authorization: Bearer`` with every request, to ``base_url``'s origin
  only (a redirect elsewhere is :class:`CrossOriginRedirect`, nothing sent there); it is
  in no ``repr`` and no exception text (a service that echoes it has it blanked out).
- One deadline per request over connect, redirects and body (a process-wide watchdog
  shuts a trickling body's socket), bodies capped by ``max_response_bytes``.
- A request is tried again only where that is safe (:meth:`Transport._send`); any answer
  but a 2xx is raised as its problem (:func:`geosearch.client_errors.problem_error`).
"""

from __future__ import annotations

import json
import re
import time
from urllib.parse import urljoin, urlsplit

import requests
from urllib3.exceptions import NewConnectionError

from geosearch.client_errors import (
    CrossOriginRedirect,
    DeadlineExceeded,
    ResponseTooLarge,
    problem_error,
)
from geosearch.client_watchdog import watched

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_CHUNK_BYTES = 64 * 1024
JSON = "application/json"
# A key: an RFC 6750 token, short enough for the service's Authorization header (256)
_KEY = re.compile(r"[A-Za-z0-9._~+/-]+=*")
MAX_KEY_CHARS = 249
REDACTED = "[key]"


def _origin(url: str) -> tuple[str, str | None, int | None]:
    """Scheme, host and port of ``url`` (the scheme's port when none is written)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:  # not a number: matches no origin
        port = -1
    return scheme, parts.hostname, port


def _time_left(deadline: float, url: str) -> float:
    """Seconds until ``deadline``, the timeout of the next connect or read."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded(f"{url}: the request's deadline passed")
    return left


def _unsent(exc: requests.RequestException) -> bool:
    """Whether a failed request certainly never reached the service: its connection could
    not be made (refused, unreachable, an unknown host, or connecting timed out)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    cause = exc.args[0] if exc.args else None
    return isinstance(getattr(cause, "reason", None), NewConnectionError)


class Transport:
    """Requests to one geosearch service; the parameters are :class:`Client`'s."""

    def __init__(self, base_url: str, timeout: float = 10.0, retries: int = 3,
                 backoff: float = 0.5, max_wait: float = 10.0,
                 session: requests.Session | None = None, *, max_pages: int = 10_000,
                 max_response_bytes: int = 16 * 1024 * 1024, key: str | None = None) -> None:
        if timeout <= 0 or max_pages < 1 or max_response_bytes < 1:
            raise ValueError("timeout, max_pages and max_response_bytes must be positive")
        if key is not None and not (len(key) <= MAX_KEY_CHARS and _KEY.fullmatch(key)):
            raise ValueError(f"key must be a secret as geosearch keys create prints it: at "
                             f"most {MAX_KEY_CHARS} letters, digits and -._~+/ (the value "
                             "given is not shown)")
        self.base_url = base_url.rstrip("/")
        self.timeout, self.retries, self.backoff, self.max_wait = (timeout, retries, backoff,
                                                                   max_wait)
        self.max_pages, self.max_response_bytes = max_pages, max_response_bytes
        self.session = session or requests.Session()
        self._key = key
        self._authorization = {} if key is None else {"Authorization": f"Bearer {key}"}

    def __repr__(self) -> str:
        key = f", key={REDACTED}" if self._key else ""
        return f"{type(self).__name__}({self.base_url!r}{key})"

    def _send(self, method: str, path: str, params: dict | None = None,
              body: dict | None = None, *, headers: dict[str, str] | None = None,
              media_type: str = JSON, write: bool = False, wait_s: float = 0.0
              ) -> tuple[requests.Response, bytes]:
        """A 2xx answer and its body, the request tried again where that is safe (see
        Retries; ``write``: it changes something); any other answer is raised as its
        problem. ``wait_s``: seconds the service may hold the answer, past ``timeout``."""
        url = f"{self.base_url}{path}"
        sent = {**self._authorization, **(headers or {}),
                **({} if body is None else {"Content-Type": media_type})}
        pause = self.backoff
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response, content = self._exchange(method, url, params, body, sent,
                                                   self.timeout + wait_s)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if last or not (method == "GET" or _unsent(exc)):
                    raise
                time.sleep(pause)
                pause *= 2
                continue
            if response.status_code == 503 and not (last or write):
                retry_after = response.headers.get("Retry-After", "")
                time.sleep(min(self.max_wait, float(retry_after)) if retry_after.isdigit()
                           else pause)
                pause *= 2
                continue
            if not response.ok:
                raise problem_error(response.status_code, self._redacted(response.reason),
                                    self._redacted(content.decode("utf-8", "replace")),
                                    response.headers)
            return response, content
        raise AssertionError("unreachable")  # pragma: no cover

    def _request(self, method: str, path: str, params: dict, body: dict | None = None) -> dict:
        """The JSON answer of a read."""
        return json.loads(self._send(method, path, params, body)[1])

    def _redacted(self, text: str) -> str:
        """``text`` with the key blanked out (a service or a proxy that echoes it)."""
        return text.replace(self._key, REDACTED) if self._key else text

    def _exchange(self, method: str, url: str, params: dict | None, body: dict | None,
                  headers: dict[str, str], timeout: float) -> tuple[requests.Response, bytes]:
        """One request and its body, all within ``timeout`` seconds; a redirect is followed
        only within the origin it came from (303, and 301/302 of a POST, become a GET
        without the body and without any header but the key, as in requests)."""
        deadline = time.monotonic() + timeout
        data = None if body is None else json.dumps(body)
        for _ in range(self.session.max_redirects + 1):
            response = self.session.request(
                method, url, params=params, data=data, headers=headers, stream=True,
                allow_redirects=False, timeout=_time_left(deadline, url))
            location = response.headers.get("Location")
            if response.status_code not in _REDIRECTS or location is None:
                return response, self._read(response, deadline)
            response.close()
            target = urljoin(response.url, location)
            if _origin(target) != _origin(response.url):
                raise CrossOriginRedirect(target, response.url)
            if response.status_code == 303 or (method == "POST" and response.status_code < 303):
                method, data, headers = "GET", None, self._authorization
            url, params = target, None
        raise requests.TooManyRedirects(f"more than {self.session.max_redirects} redirects "
                                        f"(last to {url})")

    def _read(self, response: requests.Response, deadline: float) -> bytes:
        """The body, unless it passes ``max_response_bytes`` or the deadline."""
        cap = self.max_response_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            response.close()
            raise ResponseTooLarge(f"{response.url} declared a body of {declared} bytes; "
                                   f"max_response_bytes is {cap}")
        chunks, size = [], 0
        late = f"{response.url}: the body was still arriving at the request's deadline"
        try:
            with watched(response.raw, deadline) as watch:
                try:
                    for chunk in response.iter_content(_CHUNK_BYTES):
                        size += len(chunk)
                        if size > cap:
                            raise ResponseTooLarge(f"{response.url} sent more than {cap} bytes "
                                                   "(max_response_bytes); the rest was not read")
                        chunks.append(chunk)
                except requests.RequestException as exc:
                    if watch.cut:
                        raise DeadlineExceeded(late) from exc
                    raise
        finally:
            response.close()
        if watch.cut:  # the body ended early because the deadline shut the socket
            raise DeadlineExceeded(late)
        return b"".join(chunks)
