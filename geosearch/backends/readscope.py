"""What one request asks of the reads it makes, and what answered them.

A request that sends a consistency token (:mod:`geosearch.api.consistency`) asks that its
reads come from a store that has applied the change feed's seq the token names:
``min_seq``. Whatever answers a read notes its stamp, the dataset version and the seq of
the state it read (:meth:`ReadScope.note`), which the response reports
(``X-Dataset-Version``, ``X-Change-Seq``). A store that swaps its state while serving (a
snapshot reloaded from its file) answers each request from the one state it chose at the
request's first read (:meth:`ReadScope.pin`).

The HTTP layer opens a scope around each search request (:func:`reading`); a backend reads
it with :func:`current` (None outside a request: no token, nothing noted). The stores:

- PostGIS (:mod:`.nodes`): each search statement reads the seq of its own snapshot beside
  its rows; a replica whose seq is below ``min_seq`` is not yet, and the read goes to
  another replica, waits for one, then reads the primary;
- a store that follows the feed in memory honours ``min_seq`` with its applied seq and
  notes the stamp of the state that answered, the same way;
- a snapshot takes no writes: it applies nothing, so it notes its version with seq 0 and
  answers as it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass
class ReadScope:
    """One request's reads: ``min_seq``, the seq its answers must reflect at least (0: any
    state), and ``started``, when it began (``time.monotonic()``; a wait for a store to
    catch up counts from there); the ``stamp`` of what answered, once a read noted one."""

    min_seq: int = 0
    started: float = field(default_factory=time.monotonic)
    stamp: tuple[str, int] | None = None
    _pinned: dict[int, object] = field(default_factory=dict)

    def note(self, version: str, seq: int) -> None:
        """Record that a read answered from the dataset ``version`` at ``seq``. Of several
        reads, the lowest seq is kept: the answer reflects every change up to it."""
        if self.stamp is None or seq < self.stamp[1]:
            self.stamp = (version, seq)

    def pin(self, owner: object, choose: Callable[[], T]) -> T:
        """The state ``owner`` answers this request from: ``choose()`` at its first read,
        the same one at every later read."""
        key = id(owner)
        if key not in self._pinned:
            self._pinned[key] = choose()
        return self._pinned[key]  # type: ignore[return-value] # what choose() gave


_scope: ContextVar[ReadScope | None] = ContextVar("geosearch_read_scope", default=None)


def current() -> ReadScope | None:
    """The scope of the request being served (None outside one)."""
    return _scope.get()


def enter(min_seq: int = 0) -> Token[ReadScope | None]:
    """Open a scope for the reads that follow in this thread or greenlet (a request's);
    :func:`leave` closes it with the token returned."""
    return _scope.set(ReadScope(min_seq))


def leave(token: Token[ReadScope | None]) -> None:
    """Close the scope that :func:`enter` opened."""
    _scope.reset(token)


@contextmanager
def reading(min_seq: int = 0) -> Iterator[ReadScope]:
    """A scope for the reads made inside the block."""
    token = enter(min_seq)
    scope = current()
    assert scope is not None
    try:
        yield scope
    finally:
        leave(token)
