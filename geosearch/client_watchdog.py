"""The deadline of the HTTP client's body reads: one daemon thread for the process shuts the
socket of any body still being read when its deadline passes (urllib3's
``HTTPResponse.shutdown``), which wakes the blocked read at once.

A socket timeout cannot do this: it bounds each read, so a server that sends a byte before
every timeout runs out holds the request for ever. A timer thread per request could, but
starting one costs more CPU than the rest of the request.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import threading
import time
from collections.abc import Iterator
from typing import Any


class Watch:
    """A body being read: ``cut`` turns True once its deadline has shut the socket."""

    __slots__ = ("cut", "done", "raw")

    def __init__(self, raw: Any) -> None:
        self.raw, self.cut, self.done = raw, False, False


class _Watchdog:
    """The deadlines still pending, earliest first, and the thread that waits for them."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        """No thread yet. Also run in a forked child, which has neither the parent's thread
        nor, perhaps, a lock the parent held while forking."""
        self._starting = threading.Lock()
        self._wake: threading.Condition | None = None
        self._due: list[tuple[float, int, Watch]] = []
        self._order = itertools.count()

    def add(self, raw: Any, deadline: float) -> Watch:
        watch = Watch(raw)
        if self._wake is None:
            with self._starting:
                if self._wake is None:
                    # Made at first use, not at import: under gevent, a lock made before
                    # monkey-patching would block the hub while the thread waits on it.
                    self._wake = threading.Condition()
                    threading.Thread(target=self._run, args=(self._wake,), daemon=True,
                                     name="geosearch-client-deadlines").start()
        with self._wake:
            heapq.heappush(self._due, (deadline, next(self._order), watch))
            if self._due[0][2] is watch:
                self._wake.notify()
        return watch

    def release(self, watch: Watch) -> None:
        """The read is over: never cut it (it leaves the queue when the thread next wakes)."""
        assert self._wake is not None
        with self._wake:
            watch.done, watch.raw = True, None

    def _run(self, wake: threading.Condition) -> None:
        with wake:
            while True:
                while self._due and self._due[0][2].done:
                    heapq.heappop(self._due)
                left = self._due[0][0] - time.monotonic() if self._due else None
                if left is None or left > 0:
                    wake.wait(left)
                    continue
                watch = heapq.heappop(self._due)[2]
                watch.cut = True
                with contextlib.suppress(AttributeError, ValueError, RuntimeError, OSError):
                    watch.raw.shutdown()


_WATCHDOG = _Watchdog()
os.register_at_fork(after_in_child=_WATCHDOG._reset)


@contextlib.contextmanager
def watched(raw: Any, deadline: float) -> Iterator[Watch]:
    """Read ``raw`` (a urllib3 response) inside the block; at ``deadline`` (a
    ``time.monotonic()`` value) its socket is shut and the Watch marked ``cut``."""
    watch = _WATCHDOG.add(raw, deadline)
    try:
        yield watch
    finally:
        _WATCHDOG.release(watch)
