"""How big an ECS task a run gets: the `ecs/cpu` and `ecs/memory` run tags EcsRunLauncher turns into RunTask's
size overrides (no Dagster here: the sensors and job definitions put the tags on).

A set run is sized from what its entries needed last time (each entry's output pointer keeps the peak memory
and seconds of its processing, `platform/publishing.py`): a run whose entries all fit the default task gets it;
an entry whose last peak, with headroom, exceeds it makes its run the smallest Fargate size that holds it, and an
entry that took an hour or more gets a second vCPU (the run worker records events while the entry converts).
Entries never run before have no figures and get the default task: the first set measures them. CI jobs run a
handful of capped entries and always get the small task.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

CPU_TAG = "ecs/cpu"  # EcsRunLauncher's own tag names
MEMORY_TAG = "ecs/memory"
MEMORY_HEADROOM = 1.25  # a peak is a measurement of one run: outputs grow, and an OOM kill costs a retry
LONG_ENTRY_SECONDS = 3600.0

# Fargate's valid task sizes: CPU units (1024 = 1 vCPU) -> (smallest, largest, step) memory in MiB.
FARGATE_MEMORY = {
    256: (512, 2048, 512),
    512: (1024, 4096, 1024),
    1024: (2048, 8192, 1024),
    2048: (4096, 16384, 1024),
    4096: (8192, 30720, 1024),
    8192: (16384, 61440, 4096),
    16384: (32768, 122880, 8192),
}


@dataclass(frozen=True)
class TaskSize:
    cpu: int  # CPU units
    memory: int  # MiB

    def tags(self) -> dict[str, str]:
        return {CPU_TAG: str(self.cpu), MEMORY_TAG: str(self.memory)}


DEFAULT_TASK = TaskSize(1024, 4096)  # deploy/production/dagster.yaml's run_resources: a run without size tags
CI_TASK = TaskSize(512, 2048)
LARGEST_TASK = TaskSize(16384, 122880)


def fargate_size(cpu: int, memory_mb: float) -> TaskSize:
    """The smallest valid Fargate size with at least `cpu` units and `memory_mb` MiB (the largest when none)."""
    for units, (low, high, step) in FARGATE_MEMORY.items():
        if units < cpu or high < memory_mb:
            continue
        memory = max(low, memory_mb)
        return TaskSize(units, int(low + -(-(memory - low) // step) * step))
    return LARGEST_TASK


def size_for_entries(entries: Iterable[Mapping[str, Any]]) -> TaskSize:
    """The task for a run of these catalog entries (each may carry `peak_memory_mb` and `seconds` from its last
    run): the default task unless an entry's last figures need more."""
    peak = 0.0
    longest = 0.0
    for info in entries:
        peak = max(peak, float(info.get("peak_memory_mb") or 0.0))
        longest = max(longest, float(info.get("seconds") or 0.0))
    cpu = 2048 if longest >= LONG_ENTRY_SECONDS else DEFAULT_TASK.cpu
    need = peak * MEMORY_HEADROOM
    if cpu == DEFAULT_TASK.cpu and need <= DEFAULT_TASK.memory:
        return DEFAULT_TASK
    return fargate_size(cpu, max(need, DEFAULT_TASK.memory))
