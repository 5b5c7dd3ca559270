"""Sets: how a set's entries are packed into runs, and what its summary says.

A run subprocess costs seconds of Dagster overhead (import, code location load, event writes), while many
sources process in under a second, so a set packs consecutive partitions into one run (a partition range):
entries that took long last time run alone, small ones are packed up to a time budget. Ranges follow the
dynamic partitions' insertion order, so a batch is a contiguous slice of that order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

DEFAULT_TARGET_SECONDS = 120.0  # work per run: overhead of a few seconds stays small against it
DEFAULT_MAX_ENTRIES = 50  # also bounds what one failure message lists and what a crash loses
DEFAULT_GUESS_SECONDS = 5.0  # an entry never run before


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
                 guess_seconds: float = DEFAULT_GUESS_SECONDS) -> list[Batch]:
    """Contiguous batches of `partition_keys` (in their order) covering exactly the `selected` keys.

    A batch breaks at an unselected key (a range must not sweep in entries nobody asked for), at
    `max_entries`, and when adding the next entry would exceed `target_seconds`.
    """
    chosen = None if selected is None else set(selected)
    expected = expected_seconds or {}
    batches: list[Batch] = []
    current: list[str] = []
    budget = 0.0

    def close() -> None:
        nonlocal current, budget
        if current:
            batches.append(Batch(tuple(current)))
        current, budget = [], 0.0

    for key in partition_keys:
        if chosen is not None and key not in chosen:
            close()
            continue
        seconds = float(expected.get(key) or guess_seconds)
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
