"""Sets: how a set's entries are packed into runs, and what its summary says.

A run subprocess costs seconds of Dagster overhead (import, code location load, event writes), while many
sources process in under a second, so a set packs consecutive partitions into one run (a partition range):
entries that took long last time run alone, small ones are packed up to a time budget. Ranges follow the
dynamic partitions' insertion order, so a batch is a contiguous slice of that order.

With `slots` (runs of a set at once) above 1 the budget also shrinks so the set splits into whole rounds of
`slots` batches, a few rounds when there is enough work (`min_batch_seconds` per run): a set of small entries
packed into fewer runs than slots would leave slots idle, and a last round with one run would idle the others.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

DEFAULT_TARGET_SECONDS = 120.0  # work per run: overhead of a few seconds stays small against it
DEFAULT_MAX_ENTRIES = 200  # also bounds what one failure message lists and what a crash loses
DEFAULT_GUESS_SECONDS = 5.0  # an entry never run before (70% of entries are ArcGIS services: not tiny)
ENTRY_OVERHEAD_SECONDS = 0.1  # per entry besides download + conform: publish, materialization, checks
MIN_BATCH_SECONDS = 20.0  # balancing never makes a run smaller than this (a run costs ~2-3 s to start)
ROUNDS_PER_SLOT = 2  # balancing aims at this many runs per slot: batches are even, each run costs ~4 slot-s


@dataclass(frozen=True)
class Batch:
    keys: tuple[str, ...]

    @property
    def start(self) -> str:
        return self.keys[0]

    @property
    def end(self) -> str:
        return self.keys[-1]


def plan_batches(partition_keys: Iterable[str], selected: Iterable[str] | None = None, *,
                 expected_seconds: Mapping[str, float] | None = None,
                 target_seconds: float = DEFAULT_TARGET_SECONDS, max_entries: int = DEFAULT_MAX_ENTRIES,
                 guess_seconds: float = DEFAULT_GUESS_SECONDS, entry_overhead_seconds: float = 0.0,
                 slots: int = 1, min_batch_seconds: float = MIN_BATCH_SECONDS) -> list[Batch]:
    """Contiguous batches of `partition_keys` (in their order) covering exactly the `selected` keys.

    An entry is expected to take its `expected_seconds` (else `guess_seconds`) plus `entry_overhead_seconds`.
    A batch breaks at an unselected key (a range must not sweep in entries nobody asked for), at
    `max_entries`, and when adding the next entry would exceed the budget: `target_seconds`, lowered for
    `slots` > 1 to spread the set over whole rounds of `slots` runs, up to `ROUNDS_PER_SLOT` rounds as long as a run
    keeps `min_batch_seconds` of work.
    """
    keys_ = list(partition_keys)
    chosen = None if selected is None else set(selected)
    expected = expected_seconds or {}

    def estimate(key: str) -> float:
        return float(expected.get(key) or guess_seconds) + entry_overhead_seconds

    if slots > 1:
        estimates = [estimate(k) for k in keys_ if chosen is None or k in chosen]
        total = sum(estimates)
        wanted = min(slots * ROUNDS_PER_SLOT, int(total // max(min_batch_seconds, 1e-9)))
        count = max(math.ceil(total / target_seconds), math.ceil(len(estimates) / max_entries), wanted, 1)
        count = math.ceil(count / slots) * slots  # whole rounds
        # + the largest entry: packing in order then needs at most `count` batches
        share = total / count + max(estimates, default=0.0)
        target_seconds = min(target_seconds, share)
    batches: list[Batch] = []
    current: list[str] = []
    budget = 0.0

    def close() -> None:
        nonlocal current, budget
        if current:
            batches.append(Batch(tuple(current)))
        current, budget = [], 0.0

    for key in keys_:
        if chosen is not None and key not in chosen:
            close()
            continue
        seconds = estimate(key)
        if current and (len(current) >= max_entries or budget + seconds > target_seconds):
            close()
        current.append(key)
        budget += seconds
    close()
    return batches


@dataclass
class SetProgress:
    """A set as one unit: what the UI's `set_progress` asset and `sets/<id>/summary.json` show."""

    set_id: str
    catalog_id: str = ""
    started: float = 0.0
    total: dict[str, int] = field(default_factory=dict)  # per layer
    done: dict[str, int] = field(default_factory=dict)  # materialized (promoted, held or skipped)
    failed: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)
    features: dict[str, int] = field(default_factory=dict)
    runs_requested: int = 0
    runs_finished: int = 0
    finished: float | None = None
    cursors: dict[str, int] = field(default_factory=dict)  # last storage id counted, per layer and kind

    def pending(self) -> int:
        return max(0, sum(self.total.values()) - sum(self.done.values()) - sum(self.failed.values()))

    def add(self, bucket: str, layer: str, n: int = 1) -> None:
        counts: dict[str, int] = getattr(self, bucket)
        counts[layer] = counts.get(layer, 0) + n

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SetProgress:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def headline(self) -> str:
        state = "finished" if self.finished else "running"
        return (f"set {self.set_id} {state}: {sum(self.done.values()):,} done, {sum(self.failed.values()):,} "
                f"failed, {self.pending():,} pending of {sum(self.total.values()):,}; "
                f"{sum(self.features.values()):,} features")
