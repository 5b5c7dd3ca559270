"""The peak resident memory of this process, reset per entry where Linux allows it, so a task can be sized for
the entries it runs next time (`platform/task_sizing.py`).

Linux keeps a resettable high-water mark (`VmHWM` in /proc/self/status; writing 5 to /proc/self/clear_refs resets
it), so each entry records the peak of its own processing plus what the process already held. Elsewhere the
process's lifetime peak (`ru_maxrss`) stands in: never lower than the entry's, so a task sized from it is never
too small.
"""

from __future__ import annotations

import contextlib
import resource
import sys
from pathlib import Path

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak() -> None:
    """Start a new high-water mark (no-op where the system has none to reset)."""
    with contextlib.suppress(OSError):
        CLEAR_REFS.write_text("5")


def peak_mb() -> float:
    """The peak resident memory since `reset_peak` (else since the process started), in MiB."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)  # kB
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)  # bytes on macOS, kB elsewhere
