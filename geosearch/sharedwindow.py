"""Sliding-window counters shared by every worker process of one server.

gunicorn forks its workers from one master; a rate limit kept in each worker's memory
lets a client through once per worker. :class:`SharedWindows` keeps the counters in an
anonymous shared memory map made before the fork, so every worker counts against the
same numbers, with no server to run (the ``limits`` library's shared storages need Redis
or Memcached; the service must also run as ``make run`` alone).

Each counter is a sliding window estimate: the amount of the current fixed window plus
the previous window's amount weighted by how much of it still overlaps the sliding one.
A counter is found by open addressing among :data:`PROBE` slots from its key's hash; a
slot whose windows have both passed is free for another key. When every probed slot is
live (far more clients than slots), the one with the least recent window is taken over,
which can only forgive a client, never refuse one wrongly.
"""

from __future__ import annotations

import math
import mmap
import multiprocessing
import struct
from dataclasses import dataclass

# key hash, window number, amount in the current window, amount in the previous one
_SLOT = struct.Struct("<Qqdd")
PROBE = 8


@dataclass(frozen=True)
class Verdict:
    """The outcome of one :meth:`SharedWindows.take`: allowed, or the seconds to wait."""

    allowed: bool
    retry_after_s: float = 0.0


class SharedWindows:
    """Counters of amounts per key over sliding windows, shared across ``fork``.

    >>> windows = SharedWindows(slots=64)
    >>> [windows.take(7, 1.0, limit=2.0, period_s=60.0, now=0.0).allowed for _ in range(3)]
    [True, True, False]
    >>> windows.take(7, 1.0, limit=2.0, period_s=60.0, now=120.0).allowed
    True
    """

    def __init__(self, slots: int = 1 << 16) -> None:
        self.slots = slots
        self._map = mmap.mmap(-1, slots * _SLOT.size)  # anonymous and shared: see fork
        self._lock = multiprocessing.get_context("fork").Lock()

    def _find(self, key: int, window: int) -> int:
        """The slot of ``key``: its own, else a free one, else the stalest probed."""
        first = key % self.slots
        stalest, stalest_window = first, math.inf
        for step in range(PROBE):
            slot = (first + step) % self.slots
            owner, seen, _, _ = _SLOT.unpack_from(self._map, slot * _SLOT.size)
            if owner == key:
                return slot
            if seen < window - 1 or owner == 0:
                return slot
            if seen < stalest_window:
                stalest, stalest_window = slot, seen
        return stalest

    def _amounts(self, slot: int, key: int, window: int) -> tuple[float, float]:
        """The (current, previous) amounts of ``key`` in ``window``."""
        owner, seen, current, previous = _SLOT.unpack_from(self._map, slot * _SLOT.size)
        if owner != key or seen < window - 1:
            return 0.0, 0.0
        if seen == window - 1:
            return 0.0, current
        return current, previous

    def take(self, key: int, amount: float, limit: float, period_s: float,
             now: float) -> Verdict:
        """Add ``amount`` to ``key`` if its sliding sum over ``period_s`` stays within
        ``limit``; else add nothing and say how long until it would (``key`` != 0)."""
        window, into = divmod(now / period_s, 1.0)
        with self._lock:
            slot = self._find(key, int(window))
            current, previous = self._amounts(slot, key, int(window))
            if previous * (1.0 - into) + current + amount <= limit:
                _SLOT.pack_into(self._map, slot * _SLOT.size, key, int(window),
                                current + amount, previous)
                return Verdict(True)
        room = limit - current - amount
        if room >= 0 and previous > 0:  # wait until the previous window has faded enough
            wait = (1.0 - room / previous - into) * period_s
        else:  # the current window alone is over: the next one starts afresh
            wait = (1.0 - into) * period_s
        return Verdict(False, max(wait, 0.0))

    def charge(self, key: int, amount: float, period_s: float, now: float) -> None:
        """Add ``amount`` to ``key`` whatever its sum (a cost known only afterwards)."""
        window = int(now // period_s)
        with self._lock:
            slot = self._find(key, window)
            current, previous = self._amounts(slot, key, window)
            _SLOT.pack_into(self._map, slot * _SLOT.size, key, window, current + amount,
                            previous)
