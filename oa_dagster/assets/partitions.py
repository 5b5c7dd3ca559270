"""One dynamic partitions definition per layer; a key is `<source key>/<entry name>` (contract)."""

from __future__ import annotations

import dagster as dg

from oa_dagster.sources.model import LAYERS

LAYER_PARTITIONS: dict[str, dg.DynamicPartitionsDefinition] = {
    layer: dg.DynamicPartitionsDefinition(name=layer) for layer in LAYERS}

# Run tags shared by the schedule, the sensor and the assets.
SET_TAG = "oa/set"  # the set a run belongs to
LAUNCH_TAG = "oa/launch"  # on a catalog run: which entries the set sensor launches (all | changed)
CATALOG_TAG = "oa/catalog"  # on a layer run: the catalog id its entries come from
