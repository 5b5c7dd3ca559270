"""Building the results index: read the store, write state.txt, licenses.json, index.json, then index.html.

The page is written last, so whoever opens it finds the documents it links to. Each file is written whole (atomic
per key), with its Content-Type on S3 so a public bucket serves the page as HTML, not as a download.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from oa_dagster.platform import store_layout as layout
from oa_dagster.platform.store import OutputStore, get_json

from .collections_found import Collection, find_collections, find_coverage_files, find_maps
from .documents import index_document, licenses_document, state_txt
from .entry_status import STATUSES, EntryStatus, entry_statuses
from .keys import CONTENT_TYPES, INDEX_HTML, INDEX_JSON, LICENSES_JSON, STATE_TXT
from .page import render_page


@dataclass
class ResultsIndex:
    """What was written, for the asset's metadata."""

    generated: str
    catalog_id: str | None
    rows: list[EntryStatus]
    collections: list[Collection]
    maps: dict[str, str]
    coverage_files: dict[str, str]
    licence_groups: int
    warnings: list[str] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)  # key -> bytes written

    def status_counts(self) -> dict[str, int]:
        counts = Counter(row.status for row in self.rows)
        return {status: counts.get(status, 0) for status in STATUSES}

    def features(self) -> int:
        return sum(row.feature_count or 0 for row in self.rows if row.files.get("output"))


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def build_results_index(
    store: OutputStore, *, scan_runs: bool = True, workers: int = 16, generated: str | None = None
) -> ResultsIndex:
    """Read everything the index shows from `store` and write the four files; see `entry_statuses` for
    `scan_runs`. Works on an empty store (no catalog, collections or maps: an index that says so)."""
    generated = generated or _now()
    catalog: dict[str, Any] | None = get_json(store, layout.CURRENT_CATALOG)
    rows = entry_statuses(store, catalog, scan_runs=scan_runs, workers=workers)
    found = find_collections(store)
    licences = licenses_document(rows)
    # what the index shows, passed alike to index.json, the page and the asset's result
    shown: dict[str, Any] = {
        "rows": rows,
        "collections": found.collections,
        "maps": find_maps(store),
        "coverage_files": find_coverage_files(store),
    }
    index = index_document(store, generated=generated, catalog=catalog, **shown)
    page = render_page(generated=generated, commit=(catalog or {}).get("commit"), **shown)
    result = ResultsIndex(
        generated=generated,
        catalog_id=(catalog or {}).get("id"),
        licence_groups=len(licences["licenses"]),
        warnings=found.warnings,
        **shown,
    )
    documents = {
        STATE_TXT: state_txt(rows, store),
        LICENSES_JSON: _json(licences),
        INDEX_JSON: _json(index),
        INDEX_HTML: page.encode("utf-8"),  # last: the page links to the others
    }
    for key, data in documents.items():
        store.put_bytes(key, data, content_type=CONTENT_TYPES[key], cache_control="no-cache")  # new every build
        result.sizes[key] = len(data)
    return result


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
