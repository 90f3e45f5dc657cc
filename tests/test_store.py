"""The load's parts that need no database: rows made ahead of their reader."""

from __future__ import annotations

import threading
import time

import pytest

from geosearch.store import ROWS_THREAD, _Ahead


def _threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == ROWS_THREAD]


def test_items_come_in_order_and_all_of_them():
    with _Ahead(range(1000), depth=3) as ahead:
        assert list(ahead) == list(range(1000))
    assert not _threads()


def test_items_are_made_while_the_reader_works():
    made: list[float] = []

    def slow():
        for i in range(4):
            time.sleep(0.05)
            made.append(time.monotonic())
            yield i

    with _Ahead(slow(), depth=4) as ahead:
        time.sleep(0.3)  # the reader busy elsewhere: every item is made meanwhile
        started = time.monotonic()
        assert list(ahead) == [0, 1, 2, 3]
    assert max(made) < started


def test_an_error_making_an_item_is_raised_to_the_reader_after_the_items_before():
    def failing():
        yield 1
        yield 2
        raise KeyError("row 3")

    with _Ahead(failing()) as ahead:
        seen = []
        with pytest.raises(KeyError, match="row 3"):
            for item in ahead:
                seen.append(item)
    assert seen == [1, 2]


def test_closing_stops_the_thread_before_the_items_run_out():
    made = []

    def endless():
        i = 0
        while True:
            made.append(i)
            yield i
            i += 1

    ahead = _Ahead(endless(), depth=2)
    assert next(iter(ahead)) == 0
    ahead.close()
    assert not _threads()
    assert len(made) <= 5  # two waiting in the queue, one being put, none after the close
