"""The machine-readable parts of the results index: state.txt, licenses.json and index.json (spec §4).

Shapes follow the machine's so its users' scripts keep working where they can: state.txt is tab-separated with a
header row (Excel's tab dialect, CRLF), licenses.json groups sources by licence and attribution, and index.json
keeps the machine's `*_url` names and its `collections: {area: {"" | "sa": {url, content_length, license}}}` for
address collections, beside what is new (every layer's collections, relative keys).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from typing import Any

from oa_dagster.collections.keys import LICENCE_LABELS
from oa_dagster.platform.store import OutputStore

from .collections_found import Collection
from .entry_status import STATUS_MEANING, STATUSES, EntryStatus
from .keys import INDEX_HTML, INDEX_JSON, LICENSES_JSON, STATE_TXT

URL_ROLES = ("output", "sample", "preview", "log", "cache", "state")  # of the served (latest good) output
STATE_COLUMNS = (
    "source",
    "layer",
    "name",
    "status",
    "feature count",
    "fingerprint",
    "run id",
    "last run",
    "good run id",
    "last good",
    "cache seconds",
    "process seconds",
    "problem",
    "problem detail",
    *URL_ROLES,
    "last run log",
    "license",
    "attribution required",
    "attribution name",
    "share-alike",
    "website",
)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def state_row(row: EntryStatus, store: OutputStore) -> list[str]:
    licence = row.licence
    values: list[Any] = [
        row.source,
        row.layer,
        row.name,
        row.status,
        row.feature_count,
        row.fingerprint,
        row.run_id,
        row.last_run,
        row.good_run_id,
        row.last_good,
        row.cache_seconds,
        row.process_seconds,
        row.problem,
        row.problem_detail,
        *(store.url(row.files[role]) if row.files.get(role) else None for role in URL_ROLES),
        store.url(row.last_run_log) if row.last_run_log else None,
        licence.describe() if licence else None,
        licence.attribution_required if licence else None,
        licence.attribution_name if licence else None,
        licence.share_alike if licence else None,
        licence.website if licence else None,
    ]
    return [_cell(v) for v in values]


def state_txt(rows: Iterable[EntryStatus], store: OutputStore) -> bytes:
    """One header line, then one line per entry (rows come sorted by source, layer, name)."""
    out = io.StringIO()
    writer = csv.writer(out, dialect="excel-tab")
    writer.writerow(STATE_COLUMNS)
    for row in rows:
        writer.writerow(state_row(row, store))
    return out.getvalue().encode("utf-8")


def licenses_document(rows: Iterable[EntryStatus]) -> dict[str, Any]:
    """Sources with data to download (a latest good output), grouped by licence, attribution and share-alike.

    Each group: `license` (text and/or URL, or Unknown), `attribution` (the name to credit, `Yes` when the source
    asks for credit without a name, `No` when it says none is needed), `attribution_required`, `share_alike`, and
    `sources`: sorted `[source key, website]` pairs (a source with entries under two licences is in both groups).
    """
    groups: dict[tuple[str, str, bool], dict[str, Any]] = {}
    for row in rows:
        if row.licence is None or not row.files.get("output"):
            continue
        licence = row.licence
        group_key = (licence.describe(), licence.attribution_line(), licence.share_alike)
        group = groups.setdefault(
            group_key,
            {
                "license": group_key[0],
                "url": licence.url,
                "attribution": group_key[1],
                "attribution_required": licence.attribution_required,
                "share_alike": licence.share_alike,
                "sources": set(),
                "layers": set(),
            },
        )
        group["sources"].add((row.source, licence.website or ""))
        group["layers"].add(row.layer)
    ordered = sorted(groups.values(), key=lambda g: (g["license"], g["attribution"], g["share_alike"]))
    return {
        "licenses": [
            {**g, "sources": [list(pair) for pair in sorted(g["sources"])], "layers": sorted(g["layers"])}
            for g in ordered
        ]
    }


def _link(store: OutputStore, key: str) -> dict[str, str]:
    return {"key": key, "url": store.url(key)}


def _collection_entry(store: OutputStore, collection: Collection) -> dict[str, Any]:
    return {
        "area": collection.area,
        "label": collection.area_label,
        "licence": collection.licence,
        "entries": collection.entries,
        "features": collection.features,
        "missing_entries": collection.missing,
        "built": collection.built,
        "record": collection.record_key,
        **{f.format: {**_link(store, f.key), "size": f.size} for f in collection.files},
    }


def index_document(
    store: OutputStore,
    *,
    generated: str,
    catalog: Mapping[str, Any] | None,
    rows: list[EntryStatus],
    collections: list[Collection],
    maps: Mapping[str, str],
    coverage_files: Mapping[str, str],
) -> dict[str, Any]:
    """index.json: where everything is, as store keys (relative to the store root) and download URLs."""
    counts = {status: sum(1 for r in rows if r.status == status) for status in STATUSES}
    by_layer: dict[str, dict[str, dict[str, Any]]] = {}
    classic: dict[str, dict[str, dict[str, Any]]] = {}
    for collection in collections:
        by_layer.setdefault(collection.layer, {}).setdefault(collection.area, {})[collection.licence] = (
            _collection_entry(store, collection)
        )
        zip_file = next((f for f in collection.files if f.format == "zip"), None)
        if collection.layer == "addresses" and zip_file:
            variant = "sa" if collection.licence == "share-alike" else ""
            classic.setdefault(collection.area, {})[variant] = {
                "url": store.url(zip_file.key),
                "content_length": zip_file.size,
                "license": LICENCE_LABELS[collection.licence],
            }
    return {
        "generated": generated,
        "catalog": {k: (catalog or {}).get(k) for k in ("id", "commit", "ref", "origin")},
        "entries": {"total": len(rows), **counts},
        "statuses": STATUS_MEANING,
        "index_html": _link(store, INDEX_HTML),
        "index_json": _link(store, INDEX_JSON),
        "state": _link(store, STATE_TXT),
        "licenses": _link(store, LICENSES_JSON),
        "maps": {name: _link(store, key) for name, key in maps.items()},
        "coverage": {name: _link(store, key) for name, key in coverage_files.items()},
        "collections_by_layer": by_layer,
        # the machine's names, for its users' scripts
        "run_states_url": store.url(STATE_TXT),
        "licenses_url": store.url(LICENSES_JSON),
        **{f"render_{name}_url": store.url(key) for name, key in maps.items()},
        **({"render_geojson_url": store.url(coverage_files["geojson"])} if "geojson" in coverage_files else {}),
        "collections": classic,
    }
