"""Which collections need building: the change detection, run before launching anything.

A collection (area × layer × licence class) needs building when its entries' latest good runs differ from the last
build's record, the build format moved on, its files are gone, or it has no entries left but still has a record
(the build then removes it). The triggers plan with `stale_collections` so that one run builds exactly the area ×
layer partitions that changed, and no run starts when none did; the build checks the same `unchanged` again.
Pointers are read once per layer (every source is in `global`) and split by area, not once per partition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from oa_dagster.platform.store import OutputStore, get_json

from . import keys
from .areas import AREA_IDS, in_area
from .inputs import AreaInputs, gather_inputs
from .keys import LICENCES, Licence

BUILD_FORMAT = 1  # bump when what goes into the files changes: every collection is then rebuilt once
ALL_SOURCES_AREA = "global"


def unchanged(store: OutputStore, previous: Mapping[str, Any] | None, inputs: dict[str, str], layer: str) -> bool:
    """The last build had exactly these inputs, in this format, and its files are still there."""
    if not previous or previous.get("inputs") != inputs or previous.get("format") != BUILD_FORMAT:
        return False
    wanted = [previous["zip"]["key"], previous["parquet"]["key"]]
    wanted += keys.classic_keys(layer, previous["area"], previous["licence"])
    return all(store.exists(key) for key in wanted)


def needs_build(store: OutputStore, inputs: AreaInputs, licence: Licence) -> bool:
    """What `build_collection` would do something about (other than rewriting the record's missing list)."""
    previous = get_json(store, keys.record_key(inputs.layer, inputs.area, licence))
    if not inputs.entries[licence]:
        return previous is not None  # no entries left: the build removes the old collection
    return not unchanged(store, previous, inputs.inputs(licence), inputs.layer)


def within(everything: AreaInputs, area: str) -> AreaInputs:
    """The entries of one area, taken from the inputs of every source (the plan's only pointer reads)."""
    entries = {
        licence: [entry for entry in everything.entries[licence] if in_area(area, entry.source_key)]
        for licence in LICENCES
    }
    return replace(everything, area=area, entries=entries)


def stale_collections(store: OutputStore, catalog: Mapping[str, Any], layers: list[str]) -> list[tuple[str, str]]:
    """(area, layer) of every collection partition a build would change, in layer then area order."""
    stale = []
    for layer in layers:
        everything = gather_inputs(store, catalog, layer, ALL_SOURCES_AREA)
        for area in AREA_IDS:
            inputs = everything if area == ALL_SOURCES_AREA else within(everything, area)
            if any(needs_build(store, inputs, licence) for licence in LICENCES):
                stale.append((area, layer))
    return stale
