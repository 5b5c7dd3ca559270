"""Jobs on the source catalog: refresh it, or refresh it and then run every changed entry."""

import dagster as dg

from oa_dagster.run_tags import LAUNCH_CHANGED, LAUNCH_TAG

source_catalog_job = dg.define_asset_job(
    "source_catalog_job",
    selection=["source_catalog"],
    description="Read, validate and store the sources; sync the layers' partitions.",
)
launch_changed_entries_job = dg.define_asset_job(
    "launch_changed_entries_job",
    selection=["source_catalog"],
    tags={LAUNCH_TAG: LAUNCH_CHANGED},
    description="Refresh the catalog, then the set_launcher sensor runs every entry whose JSON or the engine "
    "version changed since its last good run.",
)

CATALOG_JOBS = [source_catalog_job, launch_changed_entries_job]
