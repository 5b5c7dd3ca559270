"""The quality gate: whether a new run may replace an entry's latest good output.

Today's service publishes any successful run, so feature-count collapses reach downloads and collections
silently (batch-spec §6.1). Here a run is promoted only when it does not fall by more than `max_drop`
from the latest good count and fills every field the latest good output filled; otherwise it is stored
and held until an operator accepts it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_MAX_DROP = 0.5  # share of features a run may lose before it is held
WARN_DROP = 0.1  # the asset check warns at this drop from the previous materialization
# Fields that are legitimately sparse: losing them says nothing about the source.
IGNORED_FIELDS = frozenset({"hash", "unit", "district", "id", "accuracy"})


@dataclass
class GateDecision:
    promote: bool
    reasons: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return "promoted" if self.promote else "held: " + "; ".join(self.reasons)


def drop_share(previous: int | None, current: int | None) -> float | None:
    """Share of features lost (0.25 = a quarter fewer); None without a usable previous count."""
    if not previous:
        return None
    return (previous - (current or 0)) / previous


def decide(
    current: dict[str, Any], latest_good: dict[str, Any] | None, *, max_drop: float = DEFAULT_MAX_DROP
) -> GateDecision:
    """Compare a run's stats with the latest good pointer (both carry `feature_count` and `filled`).

    The first good run of an entry is always promoted: there is nothing to regress from.
    """
    if latest_good is None:
        return GateDecision(True)
    reasons: list[str] = []
    previous, count = latest_good.get("feature_count"), current.get("feature_count")
    drop = drop_share(previous, count)
    if drop is not None and drop > max_drop:
        reasons.append(
            f"feature count fell {drop:.0%} ({previous:,} -> {count or 0:,}), more than the allowed {max_drop:.0%}"
        )
    before, now = latest_good.get("filled") or {}, current.get("filled") or {}
    lost = sorted(name for name, n in before.items() if n and name not in IGNORED_FIELDS and not now.get(name))
    if lost:
        reasons.append("lost field(s) the latest good output filled: " + ", ".join(lost))
    return GateDecision(not reasons, reasons)
