"""Progress of a download or a conform on stderr, shared by `process` and `download`."""

from __future__ import annotations

import sys
import time
from typing import Any


class Progress:
    """Progress on stderr: a live line on a terminal, a line every few seconds otherwise."""

    def __init__(self, stream: Any = None, interval: float = 5.0) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = 0.2 if self.tty else interval
        self.last = 0.0
        self.started = time.monotonic()

        self.pending: tuple[str, int, int | None] | None = None  # latest report not yet shown

    def __call__(self, what: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        self.pending = (what, done, total)
        if now - self.last < self.interval and (total is None or done < total):
            return
        self.last = now
        self._show(*self.pending)

    def _show(self, what: str, done: int, total: int | None) -> None:
        self.pending = None
        self.last = time.monotonic()
        unit = {"download": "bytes", "http": "bytes", "ftp": "bytes", "conform": "rows read"}.get(what, "features")
        amount = f"{done:,}" + (f" / {total:,}" if total else "")
        line = f"{what}: {amount} {unit} ({time.monotonic() - self.started:.1f} s)"
        if self.tty:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Show the last report (so even a fast run says how far it got) and end a live line."""
        if self.pending:
            self._show(*self.pending)
        if self.tty and self.last:
            self.stream.write("\n")
