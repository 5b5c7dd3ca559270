"""Change detection: whether an entry may be carried over from its latest good output instead of processed again.

An entry is **unchanged** when its entry version (its JSON and the engine version) is the latest good output's
and its upstream answers that the data is what the validators recorded with that output describe
(`fetch/upstream.py`). Then nothing is downloaded or converted; the output is carried over to the set.

Never publishing stale data by mistake comes before saving work, so an entry is processed in full:
- when it has no good output, no recorded signal, a different entry or engine version;
- when its output is older than `full_refresh_days` (default 28): validators can be wrong in ways nothing else
  shows, and a bounded age bounds how stale an output can get;
- when the set was launched with `oa/launch=full` (`RefreshPolicy.force_full`);
- when its server was caught lying: a full refresh of an entry whose upstream said "unchanged" that downloads
  different bytes (a fingerprint unlike the output's) means its validators cannot be trusted. That is recorded in
  the store (`upstream/<layer>/<partition>.json`) and the entry is always processed from then on.

A forced refresh still asks the upstream first (same entry version only): that answer is what a lie is judged by.
Plain rules on plain values: no Dagster, no network (the caller probes).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .store import OutputStore, get_json, put_json

DEFAULT_FULL_REFRESH_DAYS = 28.0


@dataclass(frozen=True)
class RefreshPolicy:
    """How a run treats entries whose upstream has not changed (None in `process_entry`: process everything)."""

    full_refresh_days: float = DEFAULT_FULL_REFRESH_DAYS
    force_full: bool = False  # `oa/launch=full`: every entry processed (validators still checked for honesty)


@dataclass(frozen=True)
class RefreshPlan:
    """What to do with one entry before asking its upstream anything."""

    probe: bool  # ask the upstream (to carry the output over, or to judge its honesty at a full refresh)
    may_carry_over: bool  # an "unchanged" answer carries the output over
    reason: str  # why the entry is processed in full whatever the upstream says ("" when it may be carried over)


def trust_key(layer: str, partition_key: str) -> str:
    """Where an entry's caught-lying record lives (next to nothing readers use: downloads never look here)."""
    return f"upstream/{layer}/{partition_key}.json"


def distrust(store: OutputStore, layer: str, partition_key: str, *, root: str = "") -> dict[str, Any] | None:
    """The record saying the entry's validators are not to be trusted, or None."""
    record = get_json(store, root + trust_key(layer, partition_key))
    return record if record and record.get("trust_validators") is False else None


def record_lie(
    store: OutputStore,
    layer: str,
    partition_key: str,
    *,
    run_id: str,
    signal: str,
    before: str | None,
    now: str | None,
    root: str = "",
) -> dict[str, Any]:
    """Keep in the store that this entry's upstream said "unchanged" and sent different data: never trust it again."""
    record = {
        "trust_validators": False,
        "detected_in": run_id,
        "detected_at": _now().isoformat(timespec="seconds"),
        "signal": signal,
        "fingerprint_before": before,
        "fingerprint_now": now,
    }
    put_json(store, root + trust_key(layer, partition_key), record)
    return record


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def output_age_days(pointer: Mapping[str, Any], now: dt.datetime) -> float | None:
    """Days since the pointer's output was produced (its `created`), None when unknown."""
    try:
        created = dt.datetime.fromisoformat(str(pointer["created"]))
    except (KeyError, ValueError):
        return None
    if created.tzinfo is None:
        created = created.replace(tzinfo=dt.UTC)
    return (now - created).total_seconds() / 86400


def plan_refresh(
    pointer: Mapping[str, Any] | None,
    *,
    entry_version: str,
    engine_version: str,
    policy: RefreshPolicy,
    distrusted: Mapping[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> RefreshPlan:
    """The rule above, for one entry and its latest good pointer."""
    if pointer is None:
        return RefreshPlan(False, False, "no good output yet")
    run = pointer.get("run_id", "?")
    if distrusted is not None:
        return RefreshPlan(
            False,
            False,
            f"validators not trusted since {distrusted.get('detected_in')}: the server changed data "
            "without changing them",
        )
    if not pointer.get("upstream"):
        return RefreshPlan(False, False, f"no upstream signal recorded with {run}")
    if pointer.get("engine_version") != engine_version:  # the entry version holds it too; said plainly here
        return RefreshPlan(False, False, f"engine version {pointer.get('engine_version')} -> {engine_version}")
    if pointer.get("entry_version") != entry_version:
        return RefreshPlan(False, False, "the entry changed")
    if policy.force_full:
        return RefreshPlan(True, False, "full refresh requested (oa/launch=full)")
    age = output_age_days(pointer, now or _now())
    if age is None or age >= policy.full_refresh_days:
        known = f"{age:.0f} days" if age is not None else "of unknown age"
        return RefreshPlan(True, False, f"forced: output {known} old (full refresh every {policy.full_refresh_days:g})")
    return RefreshPlan(True, True, "")


def caught_lying(
    plan: RefreshPlan, said_unchanged: bool, pointer: Mapping[str, Any] | None, fingerprint: str | None
) -> bool:
    """A full refresh of an entry whose upstream said "unchanged" brought different bytes than the output's."""
    if not (plan.probe and said_unchanged and pointer and fingerprint):
        return False
    before = pointer.get("fingerprint")
    return bool(before) and before != fingerprint
