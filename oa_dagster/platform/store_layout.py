"""The store's key layout (contract: downloads, collections and the results index rely on it).

catalog/current.json                                   the newest catalog (what partitions reflect)
catalog/<catalog id>.json                              every catalog by id (the commit, or a content hash)
runs/<layer>/<source key>/<name>/<run id>/<file>       one run's files; manifest.json is written last
latest/<layer>/<source key>/<name>.json                the latest good pointer (read by downloads, ...)
held/<layer>/<source key>/<name>.json                  a stored run the quality gate did not promote
sets/<set id>/summary.json                             a finished set's summary
sets/<set id>/plan.json, carried.json                  its planning's probe answers; carried-over entries' outputs
sets/<set id>/report.json, entries.json; sets/last.json  its regression report, entry outcomes; the newest set
upstream/<layer>/<source key>/<name>.json              an entry whose upstream's validators are not trusted
jobs/<job key>/...                                     CI jobs (`pr-<n>-<sha7>`, `push-<sha7>`; keys: `ci/plan.py`)
collections/<layer>/...                                collections and their records (`collections/keys.py`)
coverage/...                                           coverage statistics, GeoJSON and maps (`coverage/keys.py`)
index.html, index.json, state.txt, licenses.json       the results index (`results_index/keys.py`)
"""

from __future__ import annotations

MANIFEST = "manifest.json"


def run_prefix(layer: str, partition_key: str, run_id: str) -> str:
    return f"runs/{layer}/{partition_key}/{run_id}"


def latest_key(layer: str, partition_key: str) -> str:
    return f"latest/{layer}/{partition_key}.json"


def held_key(layer: str, partition_key: str) -> str:
    return f"held/{layer}/{partition_key}.json"


def catalog_key(catalog_id: str) -> str:
    return f"catalog/{catalog_id}.json"


CURRENT_CATALOG = "catalog/current.json"


def set_summary_key(set_id: str) -> str:
    return f"sets/{set_id}/summary.json"


def job_prefix(job_key: str) -> str:
    """Where a CI job's runs go: the same layout as production under its own root, never `latest/`."""
    return f"jobs/{job_key}"


def split_partition_key(partition_key: str) -> tuple[str, str]:
    """`us/ca/alameda/county` -> (`us/ca/alameda`, `county`); entry names never contain `/`."""
    source_key, _, name = partition_key.rpartition("/")
    if not source_key or not name:
        raise ValueError(f"not a partition key <source key>/<entry name>: {partition_key!r}")
    return source_key, name
