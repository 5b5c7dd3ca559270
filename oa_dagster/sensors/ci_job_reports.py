"""Sensors that keep GitHub told about CI jobs whatever becomes of their runs: no status may stay `pending`.

- `ci_job_failure_sensor`, `ci_job_canceled_sensor`: a `ci_job` run that failed (a crash, `dagster/max_runtime`,
  a lost worker) or was canceled from the UI ends its commit's `pending` with `error`, unless its retry is
  coming (`dagster/will_retry`), the job was superseded by a newer head (the CI sensor has said so), or the
  run's own end already reported (`jobs/<key>/result.json` names this run).
- `ci_reports_sensor`: sends again what GitHub could not take (the outbox, `ci/outbox.py`), newest state of each
  status and comment only, with a backoff per report.
"""

from __future__ import annotations

import dagster as dg

from oa_dagster.assets.ci_jobs import is_superseded, job_commit, result_key
from oa_dagster.ci.reporting import error_description
from oa_dagster.jobs.ci_jobs import ci_job_job
from oa_dagster.platform.store import get_json
from oa_dagster.resources.github import CiSettings, GitHubResource
from oa_dagster.resources.store import OutputStoreResource
from oa_dagster.run_tags import CI_JOB_TAG, WILL_RETRY_TAG

RESEND_PAGE = 50
RESEND_TIMEOUT_SECONDS = 10.0  # a sensor tick has a minute: GitHub being down must not use it up


def close_pending_status(
    log: dg.DagsterLogManager,
    run: dg.DagsterRun,
    reason: str,
    github: GitHubResource,
    ci: CiSettings,
    store: OutputStoreResource,
) -> str:
    """Set `error` on the commit of a CI job run that ended without reporting; returns what was done."""
    key = run.tags.get(CI_JOB_TAG)
    if not key:
        return "not a CI job run"
    if run.tags.get(WILL_RETRY_TAG) == "true":
        return f"{key}: run {run.run_id} will be retried; its retry reports"
    output_store = store.get_store()
    if is_superseded(output_store, key):
        return f"{key}: superseded by a newer head; the CI sensor reported it"
    result = get_json(output_store, result_key(key)) or {}
    if result.get("run_id") == run.run_id:
        return f"{key}: run {run.run_id} reported its own result"
    commit = job_commit(output_store, key)
    if commit is None:
        return f"{key}: no job record to find the commit in"
    repo, sha = commit
    sender = ci.report_sender(github.client())  # SQLAlchemy: only when a run ended badly
    try:
        run_url = github.settings().run_url(run.run_id)
        error = sender.status(repo, sha, key, "error", error_description(reason), github.context_for(key), run_url)
    finally:
        sender.close()
    if error:
        log.error(f"{key}: could not set the error status (kept to send again): {error}")
    return f"{key}: error status set on {sha[:7]} ({reason})"


def _failure_reason(context: dg.RunFailureSensorContext, ci: CiSettings) -> str:
    message = (context.failure_event.message or "") if context.failure_event else ""
    if "maximum runtime" in message:
        return f"the job ran past its time cap ({ci.job_max_runtime_seconds:,} s)"
    return "its run failed"


@dg.run_failure_sensor(
    name="ci_job_failure_sensor",
    monitored_jobs=[ci_job_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=15,
    description="Sets error on the commit of a ci_job run that failed without reporting (no pending status stays).",
)
def ci_job_failure_sensor(
    context: dg.RunFailureSensorContext, github: GitHubResource, ci: CiSettings, store: OutputStoreResource
) -> None:
    done = close_pending_status(context.log, context.dagster_run, _failure_reason(context, ci), github, ci, store)
    context.log.info(done)


@dg.run_status_sensor(
    name="ci_job_canceled_sensor",
    run_status=dg.DagsterRunStatus.CANCELED,
    monitored_jobs=[ci_job_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=15,
    description="Sets error on the commit of a ci_job run canceled before it reported (no pending status stays).",
)
def ci_job_canceled_sensor(
    context: dg.RunStatusSensorContext, github: GitHubResource, ci: CiSettings, store: OutputStoreResource
) -> None:
    done = close_pending_status(context.log, context.dagster_run, "its run was canceled", github, ci, store)
    context.log.info(done)


@dg.sensor(
    name="ci_reports_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Sends again the commit statuses and results comments GitHub could not take (kept in the outbox).",
)
def ci_reports_sensor(context: dg.SensorEvaluationContext, github: GitHubResource, ci: CiSettings) -> dg.SkipReason:
    if not ci.deliveries_url or not github.has_credentials():
        return dg.SkipReason("CI jobs are off: no webhook secret or GitHub token is configured")
    from oa_dagster.webhook.database import StoreUnavailable

    sender = ci.report_sender(github.settings().client(retries=0, timeout=RESEND_TIMEOUT_SECONDS))
    try:
        resent = sender.resend_due(RESEND_PAGE)
    except StoreUnavailable as exc:
        return dg.SkipReason(f"the CI reports database is unavailable: {exc}")
    finally:
        sender.close()
    if not resent:
        return dg.SkipReason("no report is waiting for GitHub")
    failed = [item for item in resent if item.error]
    for item in resent:
        report, attempts = item.pending.report, item.pending.attempts + 1
        if item.error:
            context.log.warning(f"{report.job_key}: {report.kind} still not sent (try {attempts}): {item.error}")
        else:
            context.log.info(f"{report.job_key}: {report.kind} sent on try {attempts}")
    return dg.SkipReason(f"{len(resent) - len(failed)} report(s) sent, {len(failed)} still waiting for GitHub")


CI_REPORT_SENSORS = [ci_job_failure_sensor, ci_job_canceled_sensor, ci_reports_sensor]
