"""`ci_job_job`: what the CI sensor launches, one run per CI job partition (`pr-<number>-<sha7>`)."""

import dagster as dg

ci_job_job = dg.define_asset_job(
    "ci_job_job",
    selection=dg.AssetSelection.assets("ci_job"),
    executor_def=dg.in_process_executor,
    description="Check a pull request's changed entries (one step, in the run process).",
)

CI_JOBS = [ci_job_job]
