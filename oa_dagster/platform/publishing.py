"""Publishing one run to the store: files, then the manifest, then (if the gate allows) the latest pointer.

The order is the atomicity guarantee: readers only follow pointers, a pointer names a run whose manifest
exists, and a manifest is written after every file it lists. A crash at any point leaves the previous
latest good output in place.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import store_layout as layout
from .output_stats import OutputStats, output_stats
from .quality_gate import DEFAULT_MAX_DROP, GateDecision, decide
from .store import OutputStore, get_json, put_json


def entry_hash(raw: dict[str, Any], engine_version: str) -> str:
    """What a run's result depends on besides the data: the entry's JSON and the engine version.

    Dagster's `code_version` is per asset, not per partition, so this hash is recorded on every
    materialization (metadata and data version) and compared to find changed entries.
    """
    canonical = json.dumps(raw, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(f"{engine_version}\n{canonical}".encode()).hexdigest()[:16]


@dataclass
class PublishedRun:
    prefix: str  # where the run's files are
    manifest: dict[str, Any]
    decision: GateDecision | None  # None when there was no output to judge (failed or skipped)
    previous_good: dict[str, Any] | None  # the latest good pointer before this run
    file_keys: dict[str, str] = field(default_factory=dict)  # role (output, sample, ...) -> key

    @property
    def promoted(self) -> bool:
        return bool(self.decision and self.decision.promote)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def publish_run(
    store: OutputStore,
    state: dict[str, Any],
    output_dir: Path,
    run_id: str,
    *,
    entry_key: str,
    entry_version: str,
    root: str = "",
    max_drop: float = DEFAULT_MAX_DROP,
    sample_rows: list[dict[str, str]] | None = None,
    refresh: str | None = None,
) -> PublishedRun:
    """Upload a run's files and manifest; promote it to latest good if it has output and passes the gate.

    `root` prefixes every key (CI jobs use `jobs/<job key>/` so they never touch production pointers).
    The manifest and pointer keep the download's fingerprint and the upstream's validators (workers keep no
    cache between runs: the next set asks the upstream with these, `platform/change_detection.py`), the
    output's first rows (`sample_rows`, shown again when the output is carried over to a later set) and why
    the entry was processed (`refresh`, e.g. `forced: output older than 28 days`).
    """
    layer = state["layer"]
    prefix = root + layout.run_prefix(layer, entry_key, run_id)
    file_keys: dict[str, str] = {}
    sizes: dict[str, int] = {}
    for role, name in sorted((state.get("files") or {}).items()):
        if name and (output_dir / name).is_file():
            file_keys[role] = f"{prefix}/{name}"
            sizes[role] = (output_dir / name).stat().st_size
            store.put_file(file_keys[role], output_dir / name)
    stats: OutputStats | None = None
    if file_keys.get("output"):
        stats = output_stats(output_dir / state["files"]["output"], layer)
    file_keys["state"] = f"{prefix}/state.json"
    store.put_bytes(file_keys["state"], (json.dumps(state, indent=2, ensure_ascii=False) + "\n").encode())
    manifest = {
        "partition_key": entry_key,
        "layer": layer,
        "run_id": run_id,
        "created": _now(),
        "entry_version": entry_version,
        "engine_version": state.get("engine_version"),
        "feature_count": state.get("feature_count"),
        "skipped": bool(state.get("skipped")),
        "source_problem": state.get("source_problem"),
        "stats": stats.to_dict() if stats else None,
        "filled": stats.filled if stats else {},
        "files": file_keys,
        "sizes": sizes,
        "prefix": prefix,
        "seconds": round(float(state.get("cache_seconds") or 0) + float(state.get("process_seconds") or 0), 3),
        "peak_memory_mb": state.get("peak_memory_mb"),  # with "seconds": how big a task the next run gets
        "fingerprint": state.get("fingerprint"),
        "upstream": state.get("upstream") or {},
        "output_sample": list(sample_rows or []),
        "refresh": refresh or "",
    }
    put_json(store, f"{prefix}/{layout.MANIFEST}", manifest)  # last: the run is now complete

    previous = get_json(store, root + layout.latest_key(layer, entry_key))
    decision = None
    if stats is not None and not state.get("skipped"):
        decision = decide(manifest, previous, max_drop=max_drop)
        pointer = {**_pointer(manifest), "decided": decision.describe()}
        if decision.promote:
            # the held run goes first: this one supersedes it, and were the pointer written first, a store failing
            # in between would leave an older held run that an operator's accept would promote over this one
            store.delete(root + layout.held_key(layer, entry_key))
            put_json(store, root + layout.latest_key(layer, entry_key), pointer)
        else:
            put_json(store, root + layout.held_key(layer, entry_key), {**pointer, "reasons": decision.reasons})
    return PublishedRun(prefix, manifest, decision, previous, file_keys)


def _pointer(manifest: dict[str, Any]) -> dict[str, Any]:
    return {
        k: manifest[k]
        for k in (
            "fingerprint",
            "upstream",
            "partition_key",
            "layer",
            "run_id",
            "prefix",
            "feature_count",
            "filled",
            "entry_version",
            "engine_version",
            "files",
            "sizes",
            "created",
            "seconds",
            "peak_memory_mb",
        )
    }


def accept_held(
    store: OutputStore, layer: str, entry_key: str, *, root: str = "", accepted_by: str = "operator"
) -> dict[str, Any]:
    """Promote the held run of an entry (the operator's accept action); returns the new pointer.

    Raises LookupError when nothing is held, so a mistyped key is an error rather than a silent no-op.
    """
    held = get_json(store, root + layout.held_key(layer, entry_key))
    if held is None:
        raise LookupError(f"no held run for {layer} {entry_key}")
    pointer = {k: v for k, v in held.items() if k != "reasons"}
    pointer.update(
        accepted_by=accepted_by, accepted_at=_now(), decided="accepted: " + "; ".join(held.get("reasons") or [])
    )
    put_json(store, root + layout.latest_key(layer, entry_key), pointer)
    store.delete(root + layout.held_key(layer, entry_key))
    return pointer


def latest_good(store: OutputStore, layer: str, entry_key: str, *, root: str = "") -> dict[str, Any] | None:
    return get_json(store, root + layout.latest_key(layer, entry_key))
