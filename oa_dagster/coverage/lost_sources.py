"""The sum-up's "lost sources": entries with no good output today, their best count ever and when last good.

The machine listed sources with 0 or no addresses in the newest set with their historic maximum and the time of
the last set that had them. Here the history is the entry's stored runs (their manifests) and its `latest/`
pointer; at most `max_runs` manifests are read per lost entry, newest first, so the work stays bounded however
long the store's history is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from oa_dagster.platform.store import OutputStore, get_json

from .entry_status import EntryStatus

MAX_RUNS_READ = 50


@dataclass(frozen=True)
class LostEntry:
    source: str
    layer: str
    entry: str  # partition key
    max_features: int  # the best feature count of any run read (0: never good as far as the store knows)
    last_good: str | None  # ISO time of the newest good run
    problem: str | None  # why the newest run has no output
    runs_read: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lost_entry(store: OutputStore, status: EntryStatus, max_runs: int = MAX_RUNS_READ) -> LostEntry:
    best = status.features if status.pointer else 0
    last_good = status.last_good
    read = 0
    for run in status.runs[:max_runs]:
        if run.manifest_key in status.manifests:  # read already, to judge the newest run
            manifest = status.manifests[run.manifest_key]
        else:
            manifest = get_json(store, run.manifest_key)
        read += 1
        if not manifest or not (manifest.get("files") or {}).get("output") or manifest.get("skipped"):
            continue
        best = max(best, int(manifest.get("feature_count") or 0))
        created = manifest.get("created")
        if created and (last_good is None or str(created) > last_good):
            last_good = str(created)
    return LostEntry(status.source, status.layer, status.key, best, last_good, status.problem, read)


def lost_entries(store: OutputStore, statuses: Iterable[EntryStatus], max_runs: int = MAX_RUNS_READ) -> list[LostEntry]:
    """Every entry failing today (not skipped), the biggest losses first."""
    lost = [lost_entry(store, s, max_runs) for s in statuses if not s.good and not s.skipped]
    return sorted(lost, key=lambda row: (-row.max_features, row.layer, row.entry))
