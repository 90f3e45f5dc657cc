"""How long the current greenlet has held its thread: a request's own share of a worker.

Under gunicorn's gevent workers many requests take turns on one thread. A request's wall
time counts the turns of the others while it waited (for the database, for its client's
bytes, or for a CPU-bound neighbour to yield): charging that to its client would make the
victim of a heavy neighbour pay for the neighbour. :func:`run_time` counts only the time
between the switches into the current greenlet and out of it, kept by a greenlet trace
function installed once per process (a gevent worker runs its greenlets on one thread).
Without greenlet switches (sync workers, the Flask test client, the library) it is the
wall time, which is then what the request held the thread for.
"""

from __future__ import annotations

import os
import time
import weakref

import greenlet


class _Clock:
    """Run time per greenlet of one thread, advanced at each switch."""

    def __init__(self) -> None:
        self.spent: weakref.WeakKeyDictionary[greenlet.greenlet, float] = \
            weakref.WeakKeyDictionary()
        self.since = time.perf_counter()
        self.previous = greenlet.settrace(self._trace)

    def _trace(self, event: str, args: tuple[greenlet.greenlet, greenlet.greenlet]) -> None:
        if event in ("switch", "throw"):
            origin, _ = args
            now = time.perf_counter()
            self.spent[origin] = self.spent.get(origin, 0.0) + now - self.since
            self.since = now
        if self.previous is not None:
            self.previous(event, args)


# One clock per process, not a thread-local: gevent's patching makes those per greenlet.
_clock: _Clock | None = None
_pid = 0


def run_time() -> float:
    """Seconds the current greenlet has run so far (only differences mean something)."""
    global _clock, _pid
    if _clock is None or _pid != os.getpid():
        _clock, _pid = _Clock(), os.getpid()
    clock = _clock
    current = greenlet.getcurrent()
    return clock.spent.get(current, 0.0) + time.perf_counter() - clock.since
