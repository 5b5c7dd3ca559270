"""The `cleanup_job`: what killed runs leave behind, on the store, disk and instance (its daily schedule is in
`sensors/cleanup.py`).

The store and work-folder part is plain code in `platform/store_cleanup.py`, shared with `oa-dagster cleanup`. The
Dagster part is runs left in STARTED: a run worker that is killed with the process that watches it (the code
server, `dagster dev`, an in-process `materialize`) leaves its run STARTED, and the default run launcher
cannot tell run monitoring whether a worker is alive, so only `dagster/max_runtime` (set runs) or the
instance's `max_runtime_seconds` backstop would end it, hours later. The cleanup fails such a run when no
event was written for the grace period and the process that started it is gone from this machine; a failed
run is then retried like any crash (set runs: `dagster/max_retries`).

CI retention (`CiSettings.retention_days`, `OA_CI_RETENTION_DAYS`): the folders of closed or superseded CI jobs
(`ci/retention.py` says which), with their Dagster runs, the runs' compute logs and the jobs' `ci_jobs` partitions;
deliveries received and reports sent before it. Nothing else: set history and production outputs stay.
"""

import time
from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg

from oa_dagster.ci.retention import expired_jobs, remove_job_folder
from oa_dagster.platform.store import OutputStore
from oa_dagster.platform.store_cleanup import DEFAULT_GRACE_HOURS, CleanupReport, cleanup, pid_alive
from oa_dagster.resources.github import CiSettings, GitHubResource
from oa_dagster.resources.processing import ProcessingSettings
from oa_dagster.resources.store import OutputStoreResource

# each kind of removal, and the output metadata entry counting it
COUNTED = {
    "temp file": "temp_files",
    "unfinished upload": "unfinished_uploads",
    "incomplete run": "incomplete_runs",
    "work folder": "work_folders",
    "stuck run": "stuck_runs",
    "ci job": "ci_jobs",
    "delivery": "deliveries",
    "sent report": "sent_reports",
}
CI_PARTITIONS_NAME = "ci_jobs"  # assets/ci_jobs.py's CI_PARTITIONS (not imported: that module loads the CI asset)


@dataclass(frozen=True)
class StuckRun:
    run_id: str
    job_name: str
    pid: int | None  # the process that started it (its RUN_START event)
    idle_seconds: float  # since its last event


def stuck_runs(instance: dg.DagsterInstance, *, grace_seconds: float, now: float | None = None) -> list[StuckRun]:
    """Runs in STARTED with no event for `grace_seconds` whose starting process is not alive here.

    A run whose worker ran on another machine looks dead from here: the grace period (far above the time
    any run goes without writing an event: one per entry) is what protects it.
    """
    moment = time.time() if now is None else now
    found = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        run = record.dagster_run
        last = instance.get_records_for_run(run.run_id, limit=1, ascending=False).records
        last_time = last[0].event_log_entry.timestamp if last else (record.start_time or 0.0)
        if moment - last_time < grace_seconds:
            continue
        start = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.RUN_START, limit=1).records
        event = start[0].event_log_entry.dagster_event if start else None
        pid = event.pid if event is not None else None
        if pid is not None and pid_alive(pid):
            continue
        found.append(StuckRun(run.run_id, run.job_name, pid, moment - last_time))
    return found


def fail_stuck_runs(instance: dg.DagsterInstance, report: CleanupReport, *, now: float | None = None) -> None:
    """Mark the stuck runs failed (unless a dry run) and add them to the report."""
    for stuck in stuck_runs(instance, grace_seconds=report.grace_seconds, now=now):
        if not report.dry_run:
            run = instance.get_run_by_id(stuck.run_id)
            if run is None or run.is_finished:
                continue
            instance.report_run_failed(
                run,
                f"oa-dagster cleanup: no event for {stuck.idle_seconds / 3600:.1f} h and its process "
                f"({stuck.pid or 'unknown'}) is gone: the run worker was killed",
            )
        report.add("stuck run", f"{stuck.job_name} {stuck.run_id}")


def prune_ci(
    instance: dg.DagsterInstance,
    store: OutputStore,
    ci: CiSettings,
    repo: str,
    report: CleanupReport,
    *,
    now: float | None = None,
) -> None:
    """Remove what CI left longer ago than `ci.retention_days` (see the module docstring); a job with a run still
    queued or running is left for a later day."""
    moment = time.time() if now is None else now
    older_than = moment - ci.retention_days * 86400
    cutoff = datetime.fromtimestamp(older_than, UTC)
    closed = {}
    if ci.deliveries_url:
        from oa_dagster.webhook.deliveries import DeliveryStore  # SQLAlchemy: only when webhooks are on

        deliveries = DeliveryStore(ci.deliveries_url)
        try:
            closed = {number: at.timestamp() for number, at in deliveries.closed_pull_requests(repo).items()}
        finally:
            deliveries.close()
    partitions = set(instance.get_dynamic_partitions(CI_PARTITIONS_NAME))
    for job in expired_jobs(store, older_than=older_than, closed=closed):
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/partition": job.key}))
        if any(not run.is_finished for run in runs):
            report.kept_in_use += 1
            continue
        if not report.dry_run:
            for run in runs:
                instance.compute_log_manager.delete_logs(prefix=[run.run_id])
                instance.delete_run(run.run_id)
            if job.key in partitions:
                instance.delete_dynamic_partition(CI_PARTITIONS_NAME, job.key)
            remove_job_folder(store, job)
        report.add("ci job", f"{job.key} ({job.why}, {len(runs)} runs)", job.size)
    if ci.deliveries_url and not report.dry_run:
        deliveries = DeliveryStore(ci.deliveries_url)
        try:
            for _ in range(deliveries.prune(cutoff)):
                report.add("delivery", f"received before {cutoff:%Y-%m-%d %H:%M}")
        finally:
            deliveries.close()
        outbox = ci.outbox()
        assert outbox is not None
        try:
            for _ in range(outbox.prune(cutoff)):
                report.add("sent report", f"sent before {cutoff:%Y-%m-%d %H:%M}")
        finally:
            outbox.close()


class CleanupConfig(dg.Config):
    grace_hours: float = DEFAULT_GRACE_HOURS  # nothing changed more recently than this is touched
    dry_run: bool = False  # report only
    runs: bool = True  # also fail runs left in STARTED by a killed process
    ci: bool = True  # also remove closed CI jobs, old deliveries and sent reports (`OA_CI_RETENTION_DAYS`)


@dg.op(
    description="Remove store debris (half-written files, run folders without a manifest) and stale work "
    "folders older than the grace period; fail runs left STARTED by a killed process; remove closed CI jobs "
    "(folders, runs, partitions), deliveries and sent reports older than OA_CI_RETENTION_DAYS."
)
def cleanup_op(
    context: dg.OpExecutionContext,
    config: CleanupConfig,
    store: OutputStoreResource,
    processing: ProcessingSettings,
    ci: CiSettings,
    github: GitHubResource,
) -> dg.Output[None]:
    output_store = store.get_store()
    report = cleanup(output_store, [processing.work_root()], grace_hours=config.grace_hours, dry_run=config.dry_run)
    if config.runs:
        fail_stuck_runs(context.instance, report)
    if config.ci:
        prune_ci(context.instance, output_store, ci, github.repo, report)
    for item in report.removed:
        context.log.info(
            f"{'would remove' if config.dry_run else 'removed'} {item.kind}: {item.where} ({item.size:,} bytes)"
        )
    context.log.info(report.summary())
    counts = report.counts()
    return dg.Output(
        None,
        metadata={
            "summary": report.summary(),
            "dry_run": config.dry_run,
            "bytes_freed": report.bytes_freed,
            **{name: counts.get(kind, 0) for kind, name in COUNTED.items()},
            "kept_recent": report.kept_recent,
            "kept_in_use": report.kept_in_use,
            "removed": dg.MetadataValue.json([vars(item) for item in report.removed[:1000]]),
        },
    )


@dg.job(
    description="Remove what killed runs leave behind and what CI jobs left longer ago than OA_CI_RETENTION_DAYS "
    "(config: grace_hours, dry_run, runs, ci). Also `oa-dagster cleanup` (without the CI part).",
)
def cleanup_job() -> None:
    cleanup_op()
