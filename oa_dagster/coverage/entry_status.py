"""Each catalog entry's state today, read from the store: good now or failing, and its last good output.

"Good now" is the machine's "among the successful runs": the entry's newest run has output. Its last good output
(the `latest/` pointer) is what collections deliver, so its feature count is counted even when the entry fails
today. The newest run is found from one listing of `runs/<layer>/` per layer (the manifests, newest by time);
a manifest is read only when the newest run is not the one the pointer names. An entry with no run recorded is
good if it has a pointer (older runs cleaned up), and failing otherwise (never run, or never good).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from oa_dagster.platform import store_layout as layout
from oa_dagster.platform.store import OutputStore, StoredObject, get_json

MANIFEST_SUFFIX = "/" + layout.MANIFEST
SAME_TIME_SECONDS = 1.0  # S3 times have one-second resolution: manifests this close are compared by their content


@dataclass(frozen=True)
class RunRef:
    """One stored run of an entry, as the listing shows it."""

    run_id: str
    manifest_key: str
    modified: float

    @property
    def prefix(self) -> str:
        """The run's folder, `runs/<layer>/<partition key>/<run id>`."""
        return self.manifest_key[: -len(MANIFEST_SUFFIX)]


@dataclass(frozen=True)
class EntryStatus:
    layer: str
    key: str  # partition key `<source key>/<name>`
    source: str
    good: bool  # the newest run has output
    skipped: bool = False  # `skip: true` in the catalog: neither good nor failing
    features: int = 0  # of the latest good output (0 when there is none)
    last_good: str | None = None  # when the latest good output was made (ISO time)
    problem: str | None = None  # the newest run's source problem, when it failed
    newest_run: str | None = None
    pointer: dict[str, Any] | None = field(default=None, repr=False)
    runs: tuple[RunRef, ...] = field(default=(), repr=False)  # every stored run, newest first
    # the manifests already read to judge the newest run, by key (None: listed, then removed), for lost_sources
    manifests: Mapping[str, dict[str, Any] | None] = field(default_factory=dict, repr=False, compare=False)

    @property
    def output_key(self) -> str | None:
        return ((self.pointer or {}).get("files") or {}).get("output")


def list_runs(store: OutputStore, layer: str, wanted: Iterable[str]) -> dict[str, list[RunRef]]:
    """Runs per partition key (newest first) from one listing of `runs/<layer>/`; keys not `wanted` are ignored."""
    keys = set(wanted)
    found: dict[str, list[RunRef]] = {}
    prefix = f"runs/{layer}/"
    for item in store.list_objects(prefix):
        ref = _run_ref(item, prefix)
        if ref is not None and ref[0] in keys:
            found.setdefault(ref[0], []).append(ref[1])
    for runs in found.values():
        runs.sort(key=lambda run: (run.modified, run.run_id), reverse=True)
    return found


def _run_ref(item: StoredObject, prefix: str) -> tuple[str, RunRef] | None:
    if not item.key.endswith(MANIFEST_SUFFIX):
        return None
    parts = item.key[len(prefix) :].split("/")
    if len(parts) < 4:  # <source key...>/<name>/<run id>/manifest.json
        return None
    return "/".join(parts[:-2]), RunRef(parts[-2], item.key, item.modified)


def _has_output(manifest: Mapping[str, Any]) -> bool:
    return bool((manifest.get("files") or {}).get("output")) and not manifest.get("skipped")


def entry_status(store: OutputStore, layer: str, key: str, info: Mapping[str, Any], runs: list[RunRef]) -> EntryStatus:
    source = str(info.get("source") or layout.split_partition_key(key)[0])
    pointer = get_json(store, layout.latest_key(layer, key))
    common = {
        "layer": layer,
        "key": key,
        "source": source,
        "features": int((pointer or {}).get("feature_count") or 0),
        "last_good": (pointer or {}).get("created"),
        "pointer": pointer,
        "runs": tuple(runs),
    }
    if info.get("skip"):
        return EntryStatus(good=False, skipped=True, **common)
    if not runs:
        return EntryStatus(good=pointer is not None, problem=None if pointer else "never run", **common)
    newest_close = [run for run in runs if runs[0].modified - run.modified < SAME_TIME_SECONDS]
    if pointer and len(newest_close) == 1 and pointer.get("run_id") == runs[0].run_id:
        return EntryStatus(good=True, newest_run=runs[0].run_id, **common)
    # the newest run is among those stored within a second of the newest listed one: read their manifests
    read = {run.manifest_key: get_json(store, run.manifest_key) for run in newest_close}
    common["manifests"] = read
    manifests = [m for m in read.values() if m is not None]
    if not manifests:  # listed, then removed by a cleanup: judge by the pointer
        return EntryStatus(good=pointer is not None, **common)
    manifest = max(manifests, key=lambda m: str(m.get("created") or ""))  # runs this close: ordered by `created`
    good = _has_output(manifest)
    problem = None if good else str(manifest.get("source_problem") or "no output")
    return EntryStatus(good=good, problem=problem, newest_run=manifest.get("run_id"), **common)


def entry_statuses(store: OutputStore, catalog: Mapping[str, Any]) -> list[EntryStatus]:
    """The state of every entry of the stored catalog, layer by layer."""
    statuses: list[EntryStatus] = []
    for layer, entries in sorted((catalog.get("entries") or {}).items()):
        runs = list_runs(store, layer, entries)
        statuses += [entry_status(store, layer, key, info, runs.get(key, [])) for key, info in sorted(entries.items())]
    return statuses


def newest_set(store: OutputStore) -> dict[str, Any] | None:
    """The newest finished set's summary (`sets/<id>/summary.json`), or None before the first set finishes."""
    summaries = [item for item in store.list_objects("sets/") if item.key.endswith("/summary.json")]
    if not summaries:
        return None
    return get_json(store, max(summaries, key=lambda item: (item.modified, item.key)).key)
