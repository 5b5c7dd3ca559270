"""The layer assets' worker: a run's entries processed in a background thread while the step's thread records
the finished ones (no Dagster here: it only sequences work).

The worker starts an entry when the step takes the previous one, so it is never more than one finished entry
ahead: an entry published but not recorded (no materialization yet) is lost to Dagster if the run stops.
A daemon thread, not a pool: a terminated run (`dagster/max_runtime`, a cancel in the UI) must not be held
open by a download. When the consumer stops, `cancelled` is set; the entry in hand sees it through its
progress callback (`platform.entry_processing.raise_if_cancelled`), unwinds its temporary directories and the
thread ends.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")
JOIN_SECONDS = 10.0  # how long a stopping consumer waits for the entry in hand to unwind
AHEAD_WORKERS = 8  # change checks at once: each mostly waits on a server (a round trip or three)


def in_background(
    func: Callable[[str, threading.Event], T], keys: Iterable[str], *, name: str = "oa-entries"
) -> Iterator[tuple[str, T]]:
    """Yield `(key, func(key, cancelled))` in order while the next key is already being computed.

    An exception in `func` is raised here, at its key, and no further key is started. Close the generator
    (`contextlib.closing`) when stopping early: that sets `cancelled` and waits up to `JOIN_SECONDS` for
    the entry in hand.
    """
    keys = list(keys)
    done: queue.SimpleQueue[tuple[str, T | None, BaseException | None]] = queue.SimpleQueue()
    cancelled = threading.Event()
    turn = threading.Semaphore(1)  # released when the consumer takes a result: the worker starts the next key

    def my_turn() -> bool:
        while not cancelled.is_set():
            if turn.acquire(timeout=0.2):
                return True
        return False

    def work() -> None:
        for key in keys:
            if not my_turn():
                return
            try:
                item: tuple[str, T | None, BaseException | None] = (key, func(key, cancelled), None)
            except BaseException as exc:  # handed to the consumer, which re-raises it
                item = (key, None, exc)
            done.put(item)
            if item[2] is not None:
                return

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    try:
        for _ in keys:
            key, value, error = done.get()
            turn.release()
            if error is not None:
                raise error
            yield key, value  # type: ignore[misc]
    finally:
        cancelled.set()
        thread.join(JOIN_SECONDS)


class Ahead(Generic[T]):
    """`func(key)` for every key, run ahead in a small thread pool in key order; `get(key)` waits for one.

    What the layer run uses for change checks: asking upstreams one after another would make a set of unchanged
    entries wait a round trip each, while the checks of a batch can all be in flight together. `close` drops
    the checks not started (a stopped run).
    """

    def __init__(self, func: Callable[[str], T], keys: Iterable[str], *, workers: int = AHEAD_WORKERS) -> None:
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="oa-check")
        self.futures: dict[str, Future[T]] = {key: self.pool.submit(func, key) for key in keys}

    def get(self, key: str) -> T:
        return self.futures[key].result()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
