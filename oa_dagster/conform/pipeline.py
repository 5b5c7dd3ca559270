"""Bounded stages on threads: read ahead, map in order, write behind, so a conform runs on every core.

The libraries the engine leans on (pyarrow's readers and compute, GDAL, PROJ, numpy, zlib, file writes) release
the GIL while they work, so a thread per stage overlaps reading the next batch, conforming this one and hashing
and writing the previous one. Every queue is bounded (back-pressure keeps memory flat in the row count) and
every stage hands its results on in input order, with an error surfacing where it would have surfaced had the
stages run one after another: output bytes and error messages are the same as a sequential run's.

Threads pay only on a machine with a core to spare: on one already busy (a set running an entry per core),
stage threads gain nothing and hand the GIL back and forth between descheduled threads, which measured up to
2.5x slower than one thread. `use_threads()` decides per run from the load average; `OA_CONFORM_THREADS=on|off`
overrides it. Without threads every stage runs inline, in the same order, with the same results.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")
_POLL_SECONDS = 0.1


def use_threads() -> bool:
    """Whether stage threads can gain anything here: more than one core, and one of them idle."""
    setting = os.environ.get("OA_CONFORM_THREADS", "auto").lower()
    if setting in ("on", "off"):
        return setting == "on"
    cores = os.cpu_count() or 1
    return cores > 1 and os.getloadavg()[0] <= cores - 1


class ReadAhead(Generic[T]):
    """Iterate `source` on its own thread, at most `depth` items ahead of the consumer.

    An error of the source is raised to the consumer after the items before it, as a plain loop would. `close()`
    stops the thread and closes the source on it (a generator can only be closed by the thread running it).
    """

    def __init__(self, source: Iterable[T], depth: int = 2, name: str = "read-ahead", threaded: bool = True) -> None:
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._done = False
        self._inline: Iterator[T] | None = None if threaded else iter(source)
        self._thread = threading.Thread(target=self._run, args=(source,), name=name, daemon=True)
        if threaded:
            self._thread.start()

    def _run(self, source: Iterable[T]) -> None:
        iterator = iter(source)
        try:
            for item in iterator:
                if not self._put(("item", item)):
                    return
            self._put(("end", None))
        except BaseException as exc:  # handed to the consumer, raised there in order
            self._put(("error", exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    def _put(self, entry: tuple[str, Any]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        if self._inline is not None:
            return next(self._inline)
        kind, value = self._queue.get()
        if kind == "item":
            return value
        self._done = True
        if kind == "error":
            raise value
        raise StopIteration

    def close(self) -> None:
        """Stop reading ahead and wait until the source is closed (its file and dataset released)."""
        self._stop.set()
        if self._inline is not None:
            close = getattr(self._inline, "close", None)
            if close is not None:
                close()
        elif self._thread.is_alive():
            self._thread.join()
        self._done = True


def ordered_map(function: Callable[[T], R], items: Iterable[T], workers: int, depth: int | None = None) -> Iterator[R]:
    """`map(function, items)` on `workers` threads, results in input order, at most `depth` items in flight.

    An error, of `function` or of `items`, is raised after the results before it, as a plain `map` would.
    """
    if workers <= 1:
        yield from map(function, items)
        return
    depth = depth or 2 * workers
    iterator = iter(items)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ordered-map") as pool:
        pending: deque[Future[R]] = deque()
        try:
            while True:
                while len(pending) < depth:
                    try:
                        item = next(iterator)
                    except StopIteration:
                        break
                    except BaseException:  # the items' own error: after the results before it
                        while pending:
                            yield pending.popleft().result()
                        raise
                    pending.append(pool.submit(function, item))
                if not pending:
                    return
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


class WriteBehind:
    """Run jobs one at a time, in submission order, on a thread of their own, at most `depth` queued.

    The first job that fails stops the rest; its error is raised by the next `submit` or by `finish`.
    """

    def __init__(self, depth: int = 2, name: str = "write-behind", threaded: bool = True) -> None:
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._abandoned = False
        self._threaded = threaded
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        if threaded:
            self._thread.start()

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            if self._error is None and not self._abandoned:
                try:
                    job()
                except BaseException as exc:
                    self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, job: Callable[[], None]) -> None:
        self._raise()
        if self._threaded:
            self._queue.put(job)
        else:
            job()

    def finish(self) -> None:
        """Wait for every job; raises the first failure."""
        self.stop()
        self._raise()

    def stop(self, abandon: bool = False) -> None:
        """Wait for the thread to end; with `abandon`, the jobs still queued are dropped, not run."""
        self._abandoned = self._abandoned or abandon
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
