"""The background entry processor: order, overlap with the consumer, errors and early stops."""

from __future__ import annotations

import threading

import pytest

from oa_dagster.assets.background import in_background


def test_results_come_in_order_while_the_next_key_is_already_processed() -> None:
    started: list[str] = []
    second_started = threading.Event()

    def work(key: str) -> str:
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


def test_an_error_is_raised_at_its_key_and_no_later_key_starts() -> None:
    started: list[str] = []

    def work(key: str) -> str:
        started.append(key)
        if key == "b":
            raise RuntimeError("store unreachable")
        return key

    seen = []
    with pytest.raises(RuntimeError, match="store unreachable"):
        for key, _ in in_background(work, ["a", "b", "c"]):
            seen.append(key)
    assert seen == ["a"] and started == ["a", "b"]


def test_a_consumer_that_stops_early_starts_no_further_key() -> None:
    release = threading.Event()
    started: list[str] = []

    def work(key: str) -> str:
        started.append(key)
        if key == "b":
            release.wait(5)
        return key

    results = in_background(work, ["a", "b", "c", "d"])
    assert next(results) == ("a", "a")
    results.close()  # the step's thread gave up (a failure or a terminated run)
    release.set()
    for thread in threading.enumerate():
        if thread.name == "oa-entries":
            thread.join(5)
    assert started == ["a", "b"]


def test_no_keys_no_thread_work() -> None:
    assert list(in_background(lambda key: key, [])) == []
