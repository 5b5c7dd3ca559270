"""The conform pipeline's stages: results in input order, errors where a sequential run raises them, bounded."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from oa_dagster.conform.pipeline import ReadAhead, WriteBehind, ordered_map, use_threads


def counting(produced: list[int], count: int, fail_at: int | None = None) -> Iterator[int]:
    for i in range(count):
        if i == fail_at:
            raise ValueError(f"bad item {i}")
        produced.append(i)
        yield i


def test_read_ahead_yields_every_item_in_order_and_reads_at_most_depth_ahead() -> None:
    produced: list[int] = []
    reader = ReadAhead(counting(produced, 50), depth=2)
    seen = []
    for item in reader:
        time.sleep(0.002)  # a slow consumer: the reader must wait for it
        assert len(produced) <= item + 1 + 2 + 1  # the one consumed, two queued, one waiting to be queued
        seen.append(item)
    reader.close()
    assert seen == list(range(50))


def test_read_ahead_raises_the_source_error_after_the_items_before_it() -> None:
    reader = ReadAhead(counting([], 10, fail_at=4), depth=3)
    seen = []
    with pytest.raises(ValueError, match="bad item 4"):
        for item in reader:
            seen.append(item)
    reader.close()
    assert seen == [0, 1, 2, 3]


def test_read_ahead_close_stops_the_source_on_its_own_thread_and_closes_it() -> None:
    closed = threading.Event()

    def endless() -> Iterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    reader = ReadAhead(endless(), depth=2)
    assert next(reader) == 0
    reader.close()
    assert closed.is_set()
    with pytest.raises(StopIteration):
        next(reader)


def test_ordered_map_keeps_input_order_whatever_order_the_workers_finish_in() -> None:
    def slow_for_small(i: int) -> int:
        time.sleep(0.01 * (5 - i % 5))
        return i * i

    assert list(ordered_map(slow_for_small, range(20), workers=4)) == [i * i for i in range(20)]


def test_ordered_map_raises_the_first_failing_item_even_if_a_later_one_fails_sooner() -> None:
    def work(i: int) -> int:
        if i == 2:
            time.sleep(0.05)
            raise ValueError("item 2")
        if i == 3:
            raise ValueError("item 3")
        return i

    results = []
    with pytest.raises(ValueError, match="item 2"):
        for value in ordered_map(work, range(6), workers=3):
            results.append(value)
    assert results == [0, 1]


def test_ordered_map_raises_an_error_of_the_items_after_the_results_before_it() -> None:
    results = []
    with pytest.raises(ValueError, match="bad item 5"):
        for value in ordered_map(lambda i: -i, counting([], 9, fail_at=5), workers=2):
            results.append(value)
    assert results == [0, -1, -2, -3, -4]


def test_write_behind_runs_jobs_in_order_and_raises_the_first_failure() -> None:
    done: list[int] = []
    writer = WriteBehind(depth=2)
    for i in range(20):
        writer.submit(lambda i=i: done.append(i))
    writer.finish()
    assert done == list(range(20))

    failing = WriteBehind(depth=1)

    def fail() -> None:
        raise OSError("disk full")

    failing.submit(fail)
    with pytest.raises(OSError, match="disk full"):
        for _ in range(5):
            failing.submit(lambda: done.append(-1))
        failing.finish()
    failing.stop(abandon=True)
    assert -1 not in done


def test_threads_follow_the_setting_and_otherwise_an_idle_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OA_CONFORM_THREADS", "off")
    assert use_threads() is False
    monkeypatch.setenv("OA_CONFORM_THREADS", "on")
    assert use_threads() is True
    monkeypatch.setenv("OA_CONFORM_THREADS", "auto")
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    monkeypatch.setattr("os.getloadavg", lambda: (3.5, 0.0, 0.0))
    assert use_threads() is False  # no core idle: threads would only contend for the GIL
    monkeypatch.setattr("os.getloadavg", lambda: (1.0, 0.0, 0.0))
    assert use_threads() is True
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert use_threads() is False


def test_inline_stages_give_the_same_items_errors_and_order() -> None:
    reader = ReadAhead(counting([], 10, fail_at=6), threaded=False)
    seen = []
    with pytest.raises(ValueError, match="bad item 6"):
        for item in reader:
            seen.append(item)
    reader.close()
    assert seen == list(range(6))
    assert list(ordered_map(lambda i: i + 1, range(5), workers=1)) == [1, 2, 3, 4, 5]
    done: list[int] = []
    writer = WriteBehind(threaded=False)
    for i in range(5):
        writer.submit(lambda i=i: done.append(i))
    writer.finish()
    assert done == list(range(5))
