"""`coverage_job`: coverage statistics, the coverage maps and the results index, in one run and in that order.

They are unpartitioned and read what the collections and the layers left in the store, so one run after a batch
of collection runs (`sensors/coverage.py`) brings every download page up to date.
"""

import dagster as dg

coverage_job = dg.define_asset_job(
    "coverage_job",
    selection=dg.AssetSelection.assets("coverage", "coverage_maps", "results_index"),
    executor_def=dg.in_process_executor,
    description="Coverage statistics and maps, then the results index (index.html, index.json, state.txt, "
    "licenses.json) from what the store holds.",
)

COVERAGE_JOBS = [coverage_job]
