"""The collections and maps that exist in the store, read from what their assets leave behind.

A collection is listed from its record, `collections/<layer>/<area>[-sa].json` (written last by the collections
asset, after its zip and GeoParquet file), and each file it names is checked to exist, so the page never links to
a missing file. Nothing here requires the collections or coverage assets to have run: an empty store gives no
collections and no maps. A record that cannot be read is skipped with a warning naming it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from oa_dagster.collections.areas import AREAS
from oa_dagster.coverage.keys import COVERAGE_FILES
from oa_dagster.platform.store import OutputStore

from .keys import COLLECTIONS_PREFIX, MAPS

# The machine's areas in its page's order, with its labels (spec §1.6); an area not listed here sorts after them.
AREA_LABELS = {area: label for area, (label, _, _) in AREAS.items()}
RECORD = re.compile(r"^collections/(?P<layer>[^/]+)/(?P<area>[a-z0-9_]+)(?P<sa>-sa)?\.json$")


@dataclass(frozen=True)
class CollectionFile:
    format: str  # "zip" | "parquet"
    key: str
    size: int


@dataclass(frozen=True)
class Collection:
    """One built collection (area × licence × layer) with the files people download."""

    layer: str
    area: str
    licence: str  # "free" | "share-alike"
    files: tuple[CollectionFile, ...]
    entries: int
    features: int
    missing: int
    built: str | None
    record_key: str

    @property
    def area_label(self) -> str:
        return AREA_LABELS.get(self.area, self.area)

    def sort_key(self) -> tuple[Any, ...]:
        order = list(AREA_LABELS)
        return (self.layer, order.index(self.area) if self.area in order else len(order), self.area, self.licence)


@dataclass
class FoundCollections:
    collections: list[Collection] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _collection(
    store: OutputStore, key: str, record: Mapping[str, Any], listed: set[str], warnings: list[str]
) -> Collection | None:
    match = RECORD.match(key)
    assert match is not None
    licence = "share-alike" if match["sa"] else "free"
    if record.get("licence", licence) != licence or record.get("area", match["area"]) != match["area"]:
        warnings.append(f"{key}: its area/licence ({record.get('area')}, {record.get('licence')}) contradict its name")
        return None
    files = []
    for fmt in ("zip", "parquet"):
        info = record.get(fmt)
        if not isinstance(info, Mapping) or not isinstance(info.get("key"), str):
            continue
        # the listing of collections/ answers for its own files; a key elsewhere is asked for
        stored = info["key"] in listed if info["key"].startswith(COLLECTIONS_PREFIX) else store.exists(info["key"])
        if not stored:
            warnings.append(f"{key}: its {fmt} file {info['key']} is not in the store")
            continue
        files.append(CollectionFile(fmt, info["key"], _int(info.get("size"))))
    if not files:
        warnings.append(f"{key}: no file of the collection is in the store")
        return None
    missing = record.get("missing")
    return Collection(
        layer=match["layer"],
        area=match["area"],
        licence=licence,
        files=tuple(files),
        entries=_int(record.get("entries")),
        features=_int(record.get("features")),
        missing=len(missing) if isinstance(missing, list) else 0,
        built=record.get("built") if isinstance(record.get("built"), str) else None,
        record_key=key,
    )


def find_collections(store: OutputStore) -> FoundCollections:
    found = FoundCollections()
    listed = set(store.list(COLLECTIONS_PREFIX))
    for key in sorted(listed):
        if not RECORD.match(key):
            continue
        try:
            raw = store.get_bytes(key)
            record = json.loads(raw) if raw is not None else None
        except ValueError as exc:
            found.warnings.append(f"{key}: not a collection record ({exc})")
            continue
        if not isinstance(record, Mapping):
            found.warnings.append(f"{key}: not a collection record (a JSON object was expected)")
            continue
        collection = _collection(store, key, record, listed, found.warnings)
        if collection is not None:
            found.collections.append(collection)
    found.collections.sort(key=Collection.sort_key)
    return found


def find_maps(store: OutputStore) -> dict[str, str]:
    """Map name (world, usa, europe) -> key, for the rendered maps in the store."""
    return {name: key for name, key in MAPS.items() if store.exists(key)}


def find_coverage_files(store: OutputStore) -> dict[str, str]:
    """The coverage asset's documents (GeoJSON, statistics, lost sources) that exist."""
    return {name: key for name, key in COVERAGE_FILES.items() if store.exists(key)}
