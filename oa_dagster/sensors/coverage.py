"""`coverage_after_collections`: once a batch of collection runs has ended, one `coverage_job` run.

A batch is the runs sharing the tag that requested them (`oa/after_set` or `oa/collections_schedule`; a run
launched by hand is a batch of its own). The sensor looks at the newest collections run; when every run of its
batch has ended and the batch is not the one handled last (the cursor), it requests coverage, maps and the results
index once, after all of them (a trigger is one collections run for every partition that changed, so its batch is
that run). A batch that a `coverage_job` run created after its end already covered (the quickstart runs one
itself; so may a user from the UI) is marked handled without another run, unless that run failed or was canceled.
"""

import dagster as dg

from oa_dagster.jobs.collections import collections_job
from oa_dagster.jobs.coverage import coverage_job
from oa_dagster.run_tags import AFTER_COLLECTIONS_TAG, AFTER_SET_TAG, DOWNLOADS_PRIORITY, PRIORITY_TAG, SCHEDULE_TAG

BATCH_TAGS = (AFTER_SET_TAG, SCHEDULE_TAG)


def batch_of(run: dg.DagsterRun) -> tuple[str, dict[str, str]]:
    """The batch a collections run belongs to: (its name, the tag filter that finds its runs)."""
    for tag in BATCH_TAGS:
        if run.tags.get(tag):
            return f"{tag.split('/')[-1]}:{run.tags[tag]}", {tag: run.tags[tag]}
    return f"run:{run.run_id}", {}


def covered_after(instance: dg.DagsterInstance, runs: list[dg.DagsterRun]) -> dg.DagsterRun | None:
    """The newest `coverage_job` run, if it was created after every run of the batch ended and did not fail or get
    canceled: it reads what the batch wrote, so another run would only repeat it."""
    records = instance.get_run_records(filters=dg.RunsFilter(job_name=coverage_job.name), limit=1)
    if not records or records[0].dagster_run.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
        return None
    ended = [r.end_time for r in instance.get_run_records(filters=dg.RunsFilter(run_ids=[run.run_id for run in runs]))]
    if not ended or any(end is None for end in ended):  # no end time to compare with: cover it again
        return None
    last_end = max(end for end in ended if end is not None)
    return records[0].dagster_run if records[0].create_timestamp.timestamp() >= last_end else None


@dg.sensor(
    name="coverage_after_collections",
    job=coverage_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Runs coverage, the maps and the results index once every run of a collections batch has ended.",
)
def coverage_after_collections(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    instance = context.instance
    newest = instance.get_runs(filters=dg.RunsFilter(job_name=collections_job.name), limit=1)
    if not newest:
        return dg.SkipReason("no collections run yet")
    batch, tags = batch_of(newest[0])
    if batch == context.cursor:
        return dg.SkipReason(f"{batch} already handled")
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=collections_job.name, tags=tags)) if tags else newest
    running = [run for run in runs if not run.is_finished]
    if running:
        return dg.SkipReason(f"{batch}: {len(running)} of {len(runs)} collections runs still to end")
    covering = covered_after(instance, runs)
    if covering is not None:
        return dg.SensorResult(
            skip_reason=f"{batch}: already covered by {coverage_job.name} run {covering.run_id}", cursor=batch
        )
    context.log.info(f"{batch}: all {len(runs)} collections runs ended; building coverage and the results index")
    request = dg.RunRequest(
        run_key=f"after-{batch}", tags={AFTER_COLLECTIONS_TAG: batch, PRIORITY_TAG: DOWNLOADS_PRIORITY}
    )
    return dg.SensorResult(run_requests=[request], cursor=batch)


COVERAGE_SENSORS = [coverage_after_collections]
