"""What every entry of the current catalog looks like today: its served output, its newest run and its problem.

Read from the store only (no Dagster): the catalog, the `latest/` and `held/` pointers, one listing of each layer's
`runs/` for the newest run of every entry (manifests are written last, so a listed manifest is a complete run),
and then one `state.json` per entry (fingerprint and times), plus the manifest of a newest run that failed (its
problem and log). Reads go in parallel: on S3 the cost is latency, not bandwidth. A pointer or state file that
cannot be read becomes that entry's problem; the other entries are unaffected.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from oa_dagster.collections.licences import SourceLicence, licence_of
from oa_dagster.coverage.entry_status import list_runs
from oa_dagster.platform import store_layout as layout
from oa_dagster.platform.store import OutputStore
from oa_dagster.sources.model import LAYERS

# Status of an entry, worst news last so a sort "glass half full" is a sort on this order.
GOOD, HELD, FAILING, FAILED, NOT_RUN, SKIPPED = "good", "held", "failing", "failed", "not run", "skipped"
STATUSES = (GOOD, HELD, FAILING, FAILED, NOT_RUN, SKIPPED)
STATUS_MEANING = {
    GOOD: "its newest run is its latest good output",
    HELD: "its newest run is held by the quality gate (the last good output, if any, is still served)",
    FAILING: "its newest run failed; its last good output is still served",
    FAILED: "it has never had a good output",
    NOT_RUN: "no run of it is in the store yet",
    SKIPPED: "the source marks it skip: true",
}


@dataclass
class EntryStatus:
    """One row of state.txt and of the page's entry table."""

    layer: str
    partition_key: str  # `<source key>/<entry name>`
    source: str
    name: str
    status: str = NOT_RUN
    feature_count: int | None = None  # of the served (latest good) output
    fingerprint: str | None = None  # of the newest run's download
    run_id: str | None = None  # newest run
    last_run: str | None = None  # when the newest run was published (ISO)
    good_run_id: str | None = None
    last_good: str | None = None  # when the served output was published (ISO)
    cache_seconds: float | None = None  # newest run
    process_seconds: float | None = None
    problem: str | None = None
    problem_detail: str | None = None
    files: dict[str, str] = field(default_factory=dict)  # role -> key, of the served output
    last_run_log: str | None = None  # key of the newest run's log (where a failure is explained)
    licence: SourceLicence | None = None


@dataclass(frozen=True)
class _Read:
    value: Any = None
    error: str | None = None


def _read_json(store: OutputStore, key: str) -> _Read:
    """A JSON object, None if absent, or why it could not be read (never raised: one bad file is one row's problem)."""
    try:
        raw = store.get_bytes(key)
        value = None if raw is None else json.loads(raw)
        if value is not None and not isinstance(value, dict):
            return _Read(error=f"{key} could not be read: a JSON object was expected, not {type(value).__name__}")
        return _Read(value)
    except (ValueError, OSError) as exc:
        return _Read(error=f"{key} could not be read: {exc}")
    except Exception as exc:  # a store error (boto's ClientError...) is this key's problem, not the index's
        return _Read(error=f"{key} could not be read: {type(exc).__name__}: {exc}")


def read_many(store: OutputStore, keys: Iterable[str], workers: int) -> dict[str, _Read]:
    wanted = list(dict.fromkeys(keys))
    if not wanted:
        return {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(wanted, pool.map(lambda key: _read_json(store, key), wanted), strict=True))


def _held_keys(store: OutputStore, layer: str) -> list[str]:
    base = f"held/{layer}/"
    return [key[len(base) : -len(".json")] for key in store.list(base) if key.endswith(".json")]


def _licence(catalog: Mapping[str, Any], source: str, layer: str, name: str) -> SourceLicence | None:
    data = ((catalog.get("sources") or {}).get(source) or {}).get("data")
    return licence_of(data, layer, name) if isinstance(data, Mapping) else None


def _classify(
    row: EntryStatus, skip: bool, pointer: Mapping[str, Any] | None, held: Mapping[str, Any] | None, newest: str | None
) -> None:
    if pointer:
        row.good_run_id, row.last_good = pointer.get("run_id"), pointer.get("created")
        row.feature_count = pointer.get("feature_count")
        row.files = {role: key for role, key in (pointer.get("files") or {}).items() if isinstance(key, str)}
    if skip:
        row.status, row.problem = SKIPPED, "Source says to skip"
    elif held and newest in (None, held.get("run_id")):  # promoting a run removes its held pointer: this is newer
        row.status, row.run_id, row.last_run = HELD, held.get("run_id"), held.get("created")
        reasons = "; ".join(str(r) for r in held.get("reasons") or []) or "no reason recorded"
        row.problem = f"held by the quality gate: {reasons}"
    elif pointer and newest in (None, pointer.get("run_id")):
        row.status, row.run_id, row.last_run = GOOD, pointer.get("run_id"), pointer.get("created")
    elif newest is not None:
        row.status, row.run_id = (FAILING if pointer else FAILED), newest


def entry_statuses(
    store: OutputStore, catalog: Mapping[str, Any] | None, *, scan_runs: bool = True, workers: int = 16
) -> list[EntryStatus]:
    """Every entry of `catalog` (None: no catalog yet, no entries), sorted by source, layer and name.

    `scan_runs=False` skips the listing of `runs/` (one LIST per 1,000 stored files on S3): entries are then judged
    by their pointers alone, so one whose newest run failed still shows its last good output as good.
    """
    rows: list[EntryStatus] = []
    for layer in LAYERS:
        entries: Mapping[str, Any] = ((catalog or {}).get("entries") or {}).get(layer) or {}
        if entries:
            rows += _layer_statuses(store, catalog or {}, layer, entries, scan_runs, workers)
    return sorted(rows, key=lambda r: (r.source, r.layer, r.name))


def _layer_statuses(
    store: OutputStore,
    catalog: Mapping[str, Any],
    layer: str,
    entries: Mapping[str, Any],
    scan_runs: bool,
    workers: int,
) -> list[EntryStatus]:
    pointers = read_many(store, (layout.latest_key(layer, key) for key in entries), workers)
    held_wanted = [key for key in _held_keys(store, layer) if key in entries]
    held = read_many(store, (layout.held_key(layer, key) for key in held_wanted), workers)
    runs = list_runs(store, layer, entries) if scan_runs else {}
    rows: list[EntryStatus] = []
    followups: dict[str, tuple[EntryStatus, Callable[[EntryStatus, Mapping[str, Any]], None]]] = {}
    for key, info in entries.items():
        source = info.get("source") or layout.split_partition_key(key)[0]
        name = info.get("name") or layout.split_partition_key(key)[1]
        row = EntryStatus(layer, key, source, name, licence=_licence(catalog, source, layer, name))
        pointer_read = pointers[layout.latest_key(layer, key)]
        held_read = held.get(layout.held_key(layer, key), _Read())
        newest = runs[key][0] if key in runs else None
        _classify(row, bool(info.get("skip")), pointer_read.value, held_read.value, newest.run_id if newest else None)
        _add_problems(row, pointer_read.error, held_read.error)
        rows.append(row)
        if row.status in (FAILING, FAILED) and newest:
            followups[f"{newest.prefix}/state.json"] = (row, _from_state)
            followups[newest.manifest_key] = (row, _from_manifest)
        else:
            files = (held_read.value or {}).get("files") if row.status == HELD else row.files
            state_key = (files or {}).get("state")
            if isinstance(state_key, str):
                followups[state_key] = (row, _from_state)
    for key, read in read_many(store, followups, workers).items():
        row, apply = followups[key]
        if read.error:
            _add_problems(row, read.error)
        else:
            apply(row, read.value or {})
    return rows


def _add_problems(row: EntryStatus, *problems: str | None) -> None:
    row.problem = "; ".join(p for p in (row.problem, *problems) if p) or None


def _from_state(row: EntryStatus, state: Mapping[str, Any]) -> None:
    row.fingerprint = state.get("fingerprint")
    row.cache_seconds, row.process_seconds = state.get("cache_seconds"), state.get("process_seconds")
    if row.status in (FAILING, FAILED):
        row.problem = row.problem or state.get("source_problem")
        row.problem_detail = state.get("problem_detail")


def _from_manifest(row: EntryStatus, manifest: Mapping[str, Any]) -> None:
    row.last_run = manifest.get("created")
    row.problem = (
        row.problem
        or manifest.get("source_problem")
        or "its newest run is not its latest good output (no problem recorded)"
    )
    log = (manifest.get("files") or {}).get("log")
    row.last_run_log = log if isinstance(log, str) else None
