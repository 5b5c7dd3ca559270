"""The regression report of a finished set: what broke, what got fixed, what came and went, what the quality gate
held, which outputs shrank, and what was carried over unchanged, each against the entries' previous outcomes.

The comparison base is kept in the store, not in Dagster: `sets/<id>/entries.json` is every catalog entry's latest
known outcome after the set (an entry the set did not run, in a `changed` launch, keeps its earlier one), and
`sets/last.json` names the last finished set. The report itself is `sets/<id>/report.json`; the UI shows the same
lists as markdown tables (`report_markdown`). Plain data in, plain data out: no Dagster here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from oa_dagster.run_tags import LAUNCH_ALL

from .set_planning import launched_entries
from .store import OutputStore, get_json, put_json

DROP_SHARE = 0.10  # a feature count down more than this from the previous outcome is listed
GOOD = frozenset({"promoted", "unchanged"})  # an entry with a published output from this set
LAST_SET_KEY = "sets/last.json"
TABLE_ROWS = 50  # rows of a list shown in the UI; report.json has them all
LISTS = ("newly_broken", "fixed", "added", "removed", "held", "count_drops", "unchanged")


def entries_key(set_id: str) -> str:
    return f"sets/{set_id}/entries.json"


def report_key(set_id: str) -> str:
    return f"sets/{set_id}/report.json"


@dataclass(frozen=True)
class EntryOutcome:
    """One entry's outcome in a set, as its latest event of the set recorded it."""

    layer: str
    key: str
    status: str  # promoted | held | unchanged | failed
    feature_count: int | None = None
    problem: str = ""  # failed: the source problem and its detail; held: the quality gate's reasons
    unchanged_since: str = ""
    signal: str = ""  # what the upstream answered (unchanged entries)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("layer", "key")}


def _entry_keys(catalog: Mapping[str, Any]) -> set[tuple[str, str]]:
    """Every entry a set of this catalog would run (entries marked `skip: true` have no outcome)."""
    return {
        (layer, key) for layer in catalog.get("entries") or {} for key in launched_entries(catalog, layer, LAUNCH_ALL)
    }


def _row(layer: str, key: str, **fields: Any) -> dict[str, Any]:
    return {"layer": layer, "entry": key, **fields}


def build_report(
    set_id: str,
    catalog: Mapping[str, Any],
    outcomes: Iterable[EntryOutcome],
    previous: Mapping[str, Any] | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(report, entries) for the set; `previous` is the last finished set's entries.json (None: the first set).

    Without a previous set there is nothing to regress from: only held, unchanged and failed entries are listed.
    """
    before: dict[str, dict[str, Any]] = dict((previous or {}).get("entries") or {})
    now = {(o.layer, o.key): o for o in outcomes}
    current = _entry_keys(catalog)
    entries: dict[str, dict[str, Any]] = {}
    for layer, key in sorted(current):
        name = f"{layer}/{key}"
        if (layer, key) in now:
            entries[name] = {**now[(layer, key)].to_dict(), "set": set_id}
        elif name in before:
            entries[name] = dict(before[name])
    lists: dict[str, list[dict[str, Any]]] = {name: [] for name in LISTS}
    failed: list[dict[str, Any]] = []
    for (layer, key), outcome in sorted(now.items()):
        old = before.get(f"{layer}/{key}") if previous is not None else None
        if outcome.status == "failed":
            failed.append(_row(layer, key, problem=outcome.problem))
            if old is not None and old.get("status") in GOOD:
                lists["newly_broken"].append(_row(layer, key, problem=outcome.problem, last_good=old.get("set", "")))
            continue
        if outcome.status == "held":
            lists["held"].append(_row(layer, key, reasons=outcome.problem, feature_count=outcome.feature_count))
        if outcome.status == "unchanged":
            lists["unchanged"].append(_row(layer, key, since=outcome.unchanged_since, signal=outcome.signal))
        if old is not None and old.get("status") == "failed" and outcome.status in GOOD:
            lists["fixed"].append(_row(layer, key, was=old.get("problem", "")))
        was, count = (old or {}).get("feature_count"), outcome.feature_count
        if was and count is not None and (was - count) / was > DROP_SHARE:
            lists["count_drops"].append(
                _row(layer, key, previous=was, current=count, drop=f"{(was - count) / was:.0%}")
            )
    if previous is not None:
        known = {tuple(name.split("/", 1)) for name in before}
        lists["added"] = [_row(layer, key) for layer, key in sorted(current - known)]  # type: ignore[operator]
        lists["removed"] = [
            _row(layer, key, last_status=before[f"{layer}/{key}"].get("status", ""))
            for layer, key in sorted(known - current)  # type: ignore[operator]
        ]
    report = {
        "set": set_id,
        "catalog_id": catalog.get("id", ""),
        "compared_with": (previous or {}).get("set"),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "counts": {name: len(rows) for name, rows in lists.items()} | {"failed": len(failed), "ran": len(now)},
        **lists,
        "failed": failed,
    }
    return report, {"set": set_id, "catalog_id": catalog.get("id", ""), "entries": entries}


def publish_set_report(
    store: OutputStore, set_id: str, catalog: Mapping[str, Any], outcomes: Iterable[EntryOutcome]
) -> dict[str, Any]:
    """Build the report against the last finished set, store it (report, entries, `sets/last.json`); return it.

    `sets/last.json` also keeps the set this one was compared with: when recording the report fails after it was
    stored, the sensor publishes it again (last.json already names this set), and the retry compares with the same
    set, so it reproduces the report instead of one with nothing newly broken or fixed.
    """
    last = get_json(store, LAST_SET_KEY) or {}
    base = last.get("set")
    if base == set_id:  # a retry of this set's report
        if "compared_with" in last:
            base = last["compared_with"]
        else:  # a last.json written before it kept the base: the stored report names it
            base = (get_json(store, report_key(set_id)) or {}).get("compared_with")
    previous = get_json(store, entries_key(base)) if base else None
    report, entries = build_report(set_id, catalog, outcomes, previous)
    put_json(store, entries_key(set_id), entries)
    put_json(store, report_key(set_id), report)
    put_json(store, LAST_SET_KEY, {"set": set_id, "finished": report["created"], "compared_with": base})
    return report


TITLES = {
    "newly_broken": "Newly broken (good in the last set, failed now)",
    "fixed": "Fixed (failed in the last set, good now)",
    "added": "Newly added entries",
    "removed": "Removed entries",
    "held": "Held by the quality gate",
    "count_drops": f"Feature count down more than {DROP_SHARE:.0%}",
    "unchanged": "Unchanged (carried over, nothing downloaded)",
}


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")[:300]


def markdown_table(rows: list[dict[str, Any]], limit: int = TABLE_ROWS) -> str:
    """A markdown table of the first `limit` rows, saying how many more report.json holds."""
    if not rows:
        return "_none_"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows[:limit]]
    if len(rows) > limit:
        lines.append(f"\n… and {len(rows) - limit:,} more in report.json")
    return "\n".join(lines)


def report_markdown(report: Mapping[str, Any]) -> dict[str, str]:
    """One markdown section per list (title, then its table), keyed by the list's name."""
    return {name: f"**{TITLES[name]}: {len(report[name]):,}**\n\n{markdown_table(report[name])}" for name in LISTS}


def headline(report: Mapping[str, Any]) -> str:
    counts = report["counts"]
    against = f" against {report['compared_with']}" if report.get("compared_with") else " (no earlier set to compare)"
    return (
        f"{report['set']}{against}: {counts['newly_broken']} newly broken, {counts['fixed']} fixed, "
        f"{counts['added']} added, {counts['removed']} removed, {counts['held']} held, "
        f"{counts['count_drops']} with fewer features, {counts['unchanged']} unchanged"
    )
