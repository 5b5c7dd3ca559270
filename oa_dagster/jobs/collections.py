"""`collections_job`: builds collection partitions (area × layer); what the set sensor and the schedule launch."""

import dagster as dg

from oa_dagster.assets.collections import COLLECTIONS

collections_job = dg.define_asset_job(
    "collections_job",
    selection=dg.AssetSelection.assets(COLLECTIONS),
    executor_def=dg.in_process_executor,
    description="Build the collections of one area and layer (both licence classes); unchanged ones take seconds. "
    "Launchpad config `ops: {collections: {config: {force: true}}}` rebuilds regardless.",
)

COLLECTION_JOBS = [collections_job]
