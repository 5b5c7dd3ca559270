"""Every real source of the sources snapshot loads and validates (skipped when the snapshot is absent)."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from oa_dagster.sources import LAYERS, iter_source_files, load_catalog
from tests.sources_snapshot import require_snapshot

# the survey of the pinned snapshot
EXPECTED_SOURCES = 2833
EXPECTED_LAYERS = {"addresses": 2745, "parcels": 1374, "buildings": 579, "centerlines": 164}


@pytest.mark.sweep
def test_every_snapshot_source_loads_and_validates() -> None:
    snapshot = require_snapshot()
    start = time.perf_counter()
    sources, invalid = load_catalog(snapshot)
    seconds = time.perf_counter() - start
    per_layer = Counter(entry.layer for source in sources for entry in source.entries)
    print(
        f"\n{len(sources)} sources valid, {len(invalid)} invalid, in {seconds:.1f} s; entries per layer: "
        + ", ".join(f"{layer} {per_layer[layer]}" for layer in LAYERS)
    )

    assert invalid == {}
    assert len(sources) == len(list(iter_source_files(snapshot))) == EXPECTED_SOURCES
    assert dict(per_layer) == EXPECTED_LAYERS
    keys = [(entry.layer, entry.key) for source in sources for entry in source.entries]
    assert len(keys) == len(set(keys)), "partition keys must be unique within a layer"
    assert not any("," in key or "..." in key for _, key in keys)
    assert sum(source.upgraded_from_v1 for source in sources) == 0
