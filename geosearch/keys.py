"""API keys: named secrets with scopes, kept in PostGIS as a digest only.

A secret reads ``gsk_<prefix>_<body>``: ``prefix`` is 8 random lowercase letters and
digits, public (``geosearch keys list`` shows it, so a leaked key can be told apart) and
the lookup key of its row; ``body`` is 32 random bytes (``secrets.token_urlsafe``). The
table keeps the SHA-256 digest of the whole secret, compared with
:func:`hmac.compare_digest`. A slow password hash (bcrypt, scrypt, argon2) exists to
make guessing a person's low-entropy password expensive; a 256-bit random secret cannot
be guessed however fast its hash is, so one SHA-256 is enough, and a check costs
microseconds. The secret is shown once by :meth:`KeyStore.create` and kept nowhere.

Scopes: ``write`` (create, replace, patch and close spaces), ``changes`` (read the
change feed) and ``admin`` (every scope). A key's name is the actor its writes are
recorded under: it is never reused, even once the key is revoked.

Each server process caches what it read of a key (found, or not found) for
:data:`CACHE_S` seconds, so that a request does not cost a round trip to the database:
a key revoked elsewhere (``geosearch keys revoke``) stops working in every process within
that time; a new key works at once (its prefix was never looked up before). A malformed
secret is refused without a lookup.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

import psycopg

from geosearch.backends.base import BackendUnavailable
from geosearch.database import CONNECT_TIMEOUT_S, libpq_url, pooled, session_options
from geosearch.settings import Settings

WRITE, CHANGES, ADMIN = SCOPES = ("write", "changes", "admin")
CACHE_S = 5.0
# At most this many prefixes cached per process (the unknown ones a client makes up
# included): past it the cache starts afresh.
MAX_CACHED = 10_000
_MARK = "gsk_"
_PREFIX_CHARS = 8
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_BODY_BYTES = 32
# The shape of every secret create() makes; token_urlsafe(32) is 43 characters.
_SECRET = re.compile(f"{_MARK}([a-z0-9]{{{_PREFIX_CHARS}}})_[A-Za-z0-9_-]{{43}}")
SECRET_CHARS = len(_MARK) + _PREFIX_CHARS + 1 + 43
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class KeyCommandError(ValueError):
    """A key command that cannot be done as asked (a bad name or scope, a name taken, no
    such key); its text is one line for the person who asked."""


@dataclass(frozen=True)
class Key:
    """An authenticated key: its name (the actor) and its scopes."""

    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        """Whether the key has ``scope`` (``admin`` has every one)."""
        return scope in self.scopes or ADMIN in self.scopes


@dataclass(frozen=True)
class KeyInfo:
    """What ``geosearch keys list`` shows of a key: never its digest, never its secret."""

    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    def row(self) -> tuple[str, ...]:
        """The key as text: name, scopes, public prefix, created, last used, revoked."""
        def when(at: datetime | None) -> str:
            return "-" if at is None else at.isoformat(timespec="seconds")

        return (self.name, ",".join(self.scopes), f"{_MARK}{self.prefix}",
                when(self.created_at), when(self.last_used_at), when(self.revoked_at))


def scopes_of(names: Iterable[str]) -> tuple[str, ...]:
    """The scopes named (blank names skipped, each once); KeyCommandError for an unknown one
    or none at all."""
    scopes = tuple(dict.fromkeys(n.strip() for n in names if n.strip()))
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        what = f"unknown scope {unknown[0]!r}" if unknown else "no scope given"
        raise KeyCommandError(f"{what}; give one or more of {', '.join(SCOPES)}, comma-separated")
    return scopes


def digest(secret: str) -> bytes:
    """The SHA-256 of a secret, as the table keeps it."""
    return hashlib.sha256(secret.encode("ascii")).digest()


def prefix_of(secret: str) -> str | None:
    """The lookup prefix of a secret of the shape create() makes, else None (empty, too
    long, another alphabet, NUL...)."""
    if len(secret) != SECRET_CHARS:
        return None
    match = _SECRET.fullmatch(secret)
    return None if match is None else match.group(1)


def new_secret() -> tuple[str, str]:
    """A fresh secret and its prefix."""
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(_PREFIX_CHARS))
    return f"{_MARK}{prefix}_{secrets.token_urlsafe(_BODY_BYTES)}", prefix


@dataclass(frozen=True)
class _Stored:
    """A live key as read from its row."""

    key: Key
    digest: bytes


class KeyStore:
    """The keys of one database (``settings.database_url``, migrated to 0006 or later).

    One connection per store, opened at the first statement (in the server's worker, not
    before the fork) and opened again once when it breaks; statements that still fail
    raise BackendUnavailable. Safe to share among threads.
    """

    def __init__(self, settings: Settings, cache_s: float = CACHE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = libpq_url(settings.database_url or "")
        self.options = session_options(settings)
        self.pooled = pooled(settings)
        self.cache_s = cache_s
        self.clock = clock
        self._conn: psycopg.Connection | None = None
        self._cache: dict[str, tuple[float, _Stored | None]] = {}
        self._lock = threading.Lock()

    def create(self, name: str, scopes: Iterable[str]) -> str:
        """Store a new key; its secret, which is kept nowhere (show it once)."""
        if not _NAME.fullmatch(name):
            raise KeyCommandError("a key name is 1 to 64 letters, digits, '.', '_' or '-', "
                             "starting with a letter or a digit")
        checked = list(scopes_of(scopes))
        secret, prefix = new_secret()
        if not self._rows("INSERT INTO api_keys (name, prefix, secret_sha256, scopes) "
                          "VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO NOTHING "
                          "RETURNING name", (name, prefix, digest(secret), checked)):
            raise KeyCommandError(f"a key named {name!r} exists already (a name is never "
                             "reused, even once its key is revoked)")
        return secret

    def list_keys(self) -> list[KeyInfo]:
        """Every key, revoked ones included, by name."""
        return [KeyInfo(name, prefix, tuple(scopes), *times) for name, prefix, scopes, *times
                in self._rows("SELECT name, prefix, scopes, created_at, revoked_at, "
                              "last_used_at FROM api_keys ORDER BY name", ())]

    def revoke(self, name: str) -> None:
        """Revoke a key (again: no change); KeyCommandError when there is no such key. Other
        processes stop accepting it within :data:`CACHE_S` seconds."""
        rows = self._rows("UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) "
                          "WHERE name = %s RETURNING prefix", (name,))
        if not rows:
            raise KeyCommandError(f"no key is named {name!r}")
        with self._lock:
            self._cache.pop(rows[0][0], None)

    def authenticate(self, secret: str) -> Key | None:
        """The live key whose secret this is, else None (malformed, unknown, revoked)."""
        prefix = prefix_of(secret)
        if prefix is None:
            return None
        presented = digest(secret)
        stored, fetched = self._stored(prefix)
        if stored is None or not hmac.compare_digest(stored.digest, presented):
            return None
        if fetched:
            self._rows("UPDATE api_keys SET last_used_at = now() WHERE prefix = %s "
                       "RETURNING prefix", (prefix,))
        return stored.key

    def close(self) -> None:
        """Close the connection (a later statement opens another)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _stored(self, prefix: str) -> tuple[_Stored | None, bool]:
        """The live key of ``prefix`` (None: none) and whether it was read just now
        rather than from the cache."""
        now = self.clock()
        with self._lock:
            cached = self._cache.get(prefix)
        if cached is not None and now - cached[0] < self.cache_s:
            return cached[1], False
        rows = self._rows("SELECT name, scopes, secret_sha256 FROM api_keys "
                          "WHERE prefix = %s AND revoked_at IS NULL", (prefix,))
        stored = (_Stored(Key(rows[0][0], frozenset(rows[0][1])), bytes(rows[0][2]))
                  if rows else None)
        with self._lock:
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
            self._cache[prefix] = (now, stored)
        return stored, True

    def _rows(self, sql: str, params: tuple) -> list[tuple]:
        """The rows of one statement (in a transaction of its own)."""
        for attempt in (1, 2):
            with self._lock:
                try:
                    if self._conn is None:
                        self._conn = psycopg.connect(
                            self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                            options=self.options)
                        if self.pooled:  # pgbouncer 1.18 cannot keep prepared statements
                            self._conn.prepare_threshold = None
                    return self._conn.execute(sql, params).fetchall()
                except psycopg.OperationalError as exc:
                    if self._conn is not None:
                        self._conn.close()
                    self._conn = None
                    if attempt == 2:
                        raise BackendUnavailable("the keys cannot be read") from exc
        raise AssertionError("unreachable")
