"""`ci_job_job`: what the CI sensor launches, one run per CI job partition (`pr-<number>-<sha7>`)."""

import dagster as dg

from oa_dagster.platform.task_sizing import CI_TASK

ci_job_job = dg.define_asset_job(
    "ci_job_job",
    selection=dg.AssetSelection.assets("ci_job"),
    executor_def=dg.in_process_executor,
    description="Check a pull request's changed entries (one step, in the run process).",
    tags=CI_TASK.tags(),  # a few capped entries: the small ECS task (`platform/task_sizing.py`)
)

CI_JOBS = [ci_job_job]
