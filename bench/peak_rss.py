"""Peak resident memory of this process while a block runs (sampled every 20 ms from /proc): what the benchmarks
print beside their throughput."""

from __future__ import annotations

import threading


class PeakRSS:
    """`with PeakRSS() as memory: ...`, then `memory.peak - memory.base` bytes grew at most."""

    def __init__(self) -> None:
        self.base = self.peak = self._rss()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    def _run(self) -> None:
        while not self.stop.wait(0.02):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> PeakRSS:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
