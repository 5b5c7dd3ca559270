"""Which entries go into a collection: the current catalog's entries of an area, each by its latest good pointer.

An entry that fails today still has the pointer of its last good run, so it is collected with that output; a run
the quality gate held never moves the pointer (it sits under `held/`), so its previous good output is what goes
in. Entries with no pointer were never good: they are listed as missing. Entries marked `skip` are retired on
purpose and left out (counted apart). The licence of each entry comes from the catalog's copy of its source.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from oa_dagster.platform import store_layout as layout
from oa_dagster.platform.store import OutputStore

from .areas import in_area
from .keys import LICENCES, Licence
from .licences import SourceLicence, licence_of

POINTER_READERS = 16  # pointers are small: reading them is latency, so a few at once


@dataclass(frozen=True)
class EntryInput:
    """One entry's latest good output, as the collection will read it."""

    partition_key: str
    source_key: str
    name: str
    run_id: str
    output_key: str
    feature_count: int | None
    size: int | None
    licence: SourceLicence


@dataclass
class AreaInputs:
    """Everything a build of one area and layer reads, split by licence class."""

    layer: str
    area: str
    entries: dict[Licence, list[EntryInput]] = field(default_factory=lambda: {lic: [] for lic in LICENCES})
    missing: dict[Licence, list[str]] = field(default_factory=lambda: {lic: [] for lic in LICENCES})
    skipped: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # pointers that could not be used, with the cause

    def inputs(self, licence: Licence) -> dict[str, str]:
        """partition key -> run id: what the change detection compares with the last build's record."""
        return {entry.partition_key: entry.run_id for entry in self.entries[licence]}


def licence_class(licence: SourceLicence) -> Licence:
    return "share-alike" if licence.share_alike else "free"


def entry_licence(catalog: Mapping[str, Any], layer: str, info: Mapping[str, Any]) -> SourceLicence:
    """The licence of a catalog entry, read from the entry's JSON in the stored source."""
    source = (catalog.get("sources") or {}).get(info["source"]) or {}
    data = source.get("data") or {}
    entries = (data.get("layers") or {}).get(layer) or []
    index = info.get("index")
    raw = entries[index] if isinstance(index, int) and 0 <= index < len(entries) else {}
    licence = licence_of(raw)
    if licence.website is None and data.get("website"):
        licence = replace(licence, website=str(data["website"]))
    return licence


def _pointer(store: OutputStore, layer: str, key: str) -> tuple[dict[str, Any] | None, str | None]:
    """The latest good pointer of an entry, or None; a pointer that cannot be parsed is a problem, not a crash."""
    raw = store.get_bytes(layout.latest_key(layer, key))
    if raw is None:
        return None, None
    try:
        pointer = json.loads(raw)
    except ValueError as exc:
        return None, f"{layer} {key}: latest pointer is not JSON ({exc})"
    output = (pointer.get("files") or {}).get("output") if isinstance(pointer, dict) else None
    if not output or not pointer.get("run_id"):
        return None, f"{layer} {key}: latest pointer names no output file or run id"
    return pointer, None


def gather_inputs(
    store: OutputStore,
    catalog: Mapping[str, Any],
    layer: str,
    area: str,
    *,
    log: Callable[[str], None] | None = None,
) -> AreaInputs:
    """The inputs of one area and layer from the catalog's entries and the store's `latest/` pointers."""
    result = AreaInputs(layer, area)
    members: list[tuple[str, Mapping[str, Any]]] = []
    for key, info in sorted(((catalog.get("entries") or {}).get(layer) or {}).items()):
        if not in_area(area, info["source"]):
            continue
        if info.get("skip"):
            result.skipped.append(key)
        else:
            members.append((key, info))
    with ThreadPoolExecutor(POINTER_READERS) as pool:
        pointers = list(pool.map(lambda item: _pointer(store, layer, item[0]), members))
    for (key, info), (pointer, problem) in zip(members, pointers, strict=True):
        licence = entry_licence(catalog, layer, info)
        klass = licence_class(licence)
        if problem:
            result.problems.append(problem)
            if log:
                log(problem)
        if pointer is None:
            result.missing[klass].append(key)
            continue
        result.entries[klass].append(
            EntryInput(
                partition_key=key,
                source_key=info["source"],
                name=info["name"],
                run_id=str(pointer["run_id"]),
                output_key=pointer["files"]["output"],
                feature_count=pointer.get("feature_count"),
                size=(pointer.get("sizes") or {}).get("output"),
                licence=licence,
            )
        )
    return result
