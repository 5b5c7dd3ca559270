"""Process a run's entries in a background thread while the step's thread records the finished ones.

A daemon thread rather than a thread pool: when a run is terminated (`dagster/max_runtime`, a cancel in the
UI) the step's thread stops at once, and the entry in progress must not hold the process open until its
download ends (a pool's threads are joined at interpreter exit).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def in_background(func: Callable[[str], T], keys: Iterable[str], *, name: str = "oa-entries"
                  ) -> Iterator[tuple[str, T]]:
    """Yield `(key, func(key))` in order while the next keys are already being computed.

    An exception in `func` is raised here, at its key, and no further key is started; when the consumer
    stops early, the thread finishes the key in hand and starts no other.
    """
    keys = list(keys)
    done: queue.SimpleQueue[tuple[str, T | None, BaseException | None]] = queue.SimpleQueue()
    stop = threading.Event()

    def work() -> None:
        for key in keys:
            if stop.is_set():
                return
            try:
                done.put((key, func(key), None))
            except BaseException as exc:  # handed to the consumer, which re-raises it
                done.put((key, None, exc))
                return

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    try:
        for _ in keys:
            key, value, error = done.get()
            if error is not None:
                raise error
            yield key, value  # type: ignore[misc]
    finally:
        stop.set()
