"""The background entry processor: order, overlap with the consumer, bounded lookahead, errors, stopping."""

from __future__ import annotations

import threading
import time
from contextlib import closing

import pytest

from oa_dagster.assets.layers_worker import in_background
from oa_dagster.platform.entry_processing import Cancelled, raise_if_cancelled


def test_results_come_in_order_while_the_next_key_is_already_processed() -> None:
    started: list[str] = []
    second_started = threading.Event()

    def work(key: str, _cancelled: threading.Event) -> str:
        started.append(key)
        if key == "b":
            second_started.set()
        return key.upper()

    out = []
    for key, value in in_background(work, ["a", "b", "c"]):
        if key == "a":  # the consumer is still busy with "a" while "b" is processed
            assert second_started.wait(5)
        out.append((key, value))
    assert out == [("a", "A"), ("b", "B"), ("c", "C")] and started == ["a", "b", "c"]


def test_the_worker_stays_at_most_one_finished_entry_ahead() -> None:
    finished: list[str] = []

    def work(key: str, _cancelled: threading.Event) -> str:
        finished.append(key)
        return key

    keys = [f"k{i}" for i in range(6)]
    with closing(in_background(work, keys)) as entries:
        assert next(entries) == ("k0", "k0")
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:  # give the worker every chance to run ahead
            time.sleep(0.01)
        # k0 taken, so k1 was processed; k2 waits until k1 is taken
        assert finished == ["k0", "k1"]
        assert [k for k, _ in entries] == keys[1:]


def test_an_error_is_raised_at_its_key_and_no_later_key_starts() -> None:
    started: list[str] = []

    def work(key: str, _cancelled: threading.Event) -> str:
        started.append(key)
        if key == "b":
            raise RuntimeError("store unreachable")
        return key

    seen = []
    with pytest.raises(RuntimeError, match="store unreachable"):
        for key, _ in in_background(work, ["a", "b", "c"]):
            seen.append(key)
    assert seen == ["a"] and started == ["a", "b"]


def test_stopping_early_cancels_the_entry_in_hand_and_starts_no_other() -> None:
    started: list[str] = []
    unwound: list[str] = []
    in_hand = threading.Event()

    def work(key: str, cancelled: threading.Event) -> str:
        started.append(key)
        progress = raise_if_cancelled(cancelled)
        try:
            if key == "b":
                in_hand.set()
                while True:  # a long download, reporting progress per chunk
                    progress("download", 1, None)
                    time.sleep(0.01)
            return key
        finally:
            unwound.append(key)

    with closing(in_background(work, ["a", "b", "c", "d"], name="oa-test-stop")) as entries:
        assert next(entries) == ("a", "a")
        assert in_hand.wait(5)
    # closing() set `cancelled` and joined the thread: "b" unwound (its temp dirs would be removed)
    assert started == ["a", "b"] and unwound == ["a", "b"]
    assert not any(t.name == "oa-test-stop" for t in threading.enumerate())


def test_cancelled_is_not_an_exception_that_error_handlers_swallow() -> None:
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(Cancelled):
        try:
            raise_if_cancelled(cancelled)("download", 1, None)
        except Exception:  # what run_entry does with engine errors
            pytest.fail("Cancelled must pass through `except Exception`")


def test_no_keys_no_work() -> None:
    assert list(in_background(lambda key, _c: key, [])) == []
