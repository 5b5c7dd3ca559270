"""`ci_jobs_sensor`: turns stored webhook deliveries into CI job runs.

Handled now: `pull_request` opened, synchronize, reopened and ready_for_review on the sources repository. The
sensor lists the pull request's files, plans the job (`ci/plan.py`), stores the plan at `jobs/<key>/plan.json`,
adds the `ci_jobs` partition, sets the `pending` status and requests the run. A pull request with no source
change gets `success` "No source changes" at once and no run. Ignored for now (they advance the cursor): closed
pull requests, pushes, re-run comments and every other event; pushes and re-run comments come next.

The cursor is the last delivery id handled. GitHub failing while a job is planned sets `error` (best effort) and
moves on: a redelivery or the next push retries it. The output store failing stops the tick before that
delivery, so the next tick tries it again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

from oa_dagster.assets.ci_jobs import CI_PARTITIONS, plan_key, write_job_record
from oa_dagster.ci.github_api import GitHubError
from oa_dagster.ci.plan import job_key, plan_job
from oa_dagster.ci.reporting import error_description, final_status, pending_description
from oa_dagster.jobs.ci_jobs import ci_job_job
from oa_dagster.platform.store import OutputStore
from oa_dagster.resources.github import CiSettings, GitHubResource
from oa_dagster.resources.store import OutputStoreResource
from oa_dagster.run_tags import CI_JOB_TAG, CI_PRIORITY, MAX_RUNTIME_TAG, PRIORITY_TAG

if TYPE_CHECKING:
    from oa_dagster.webhook.deliveries import Delivery

PR_ACTIONS = frozenset({"opened", "synchronize", "reopened", "ready_for_review"})
PAGE = 100


def _request(
    log: dg.DagsterLogManager,
    delivery: Delivery,
    github: GitHubResource,
    ci: CiSettings,
    store: OutputStore,
) -> dg.RunRequest | None:
    """Plan one pull request delivery; a RunRequest when there is work. Store failures propagate (not handled)."""
    repo, number, sha = github.repo, delivery.pr_number, delivery.head_sha
    if not number or not sha:
        log.warning(f"delivery {delivery.delivery_id}: pull_request without a number or head sha, ignored")
        return None
    try:
        key = job_key("pr", sha, number)
    except ValueError as exc:
        log.warning(f"delivery {delivery.delivery_id}: {exc}; ignored")
        return None
    if store.exists(plan_key(key)):  # a redelivery, or ready_for_review after opened at the same commit
        log.info(f"{key}: already planned, not requested again")
        return None
    client = github.client()
    try:
        files = client.pull_request_files(repo, number)
        plan = plan_job(client, repo, head_sha=sha, base_sha=delivery.base_sha, files=files)
    except GitHubError as exc:
        log.error(f"{key}: could not plan the job: {exc}")
        try:
            client.set_status(repo, sha, "error", error_description("GitHub could not be read"), github.status_context)
        except GitHubError as status_exc:
            log.error(f"{key}: could not set the error status either: {status_exc}")
        return None
    if plan.empty:  # nothing to run: tell GitHub now (no files: "No source changes")
        state, description = final_status([], plan)
        _status(log, github, key, sha, state, description)
        return None
    write_job_record(store, key, repo, number, plan)
    _status(log, github, key, sha, "pending", pending_description(plan))
    tags = {PRIORITY_TAG: CI_PRIORITY, MAX_RUNTIME_TAG: str(ci.job_max_runtime_seconds), CI_JOB_TAG: key}
    return dg.RunRequest(run_key=key, partition_key=key, tags=tags)


def _status(log: dg.DagsterLogManager, github: GitHubResource, key: str, sha: str, state: str, text: str) -> None:
    try:
        github.client().set_status(github.repo, sha, state, text, github.status_context)
    except GitHubError as exc:
        log.error(f"{key}: could not set the {state} status: {exc}")


@dg.sensor(
    name="ci_jobs_sensor",
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    job=ci_job_job,
    description="Plans a CI job for each pull request opened or updated (stored webhook deliveries), sets its "
    "pending status and launches ci_job for it.",
)
def ci_jobs_sensor(
    context: dg.SensorEvaluationContext, github: GitHubResource, ci: CiSettings, store: OutputStoreResource
) -> dg.SensorResult | dg.SkipReason:
    if not ci.deliveries_url:
        return dg.SkipReason("CI jobs are off: no webhook secret is configured (OA_WEBHOOK_SECRET)")
    if not github.token:
        return dg.SkipReason("CI jobs are off: no GitHub token is configured (GITHUB_TOKEN)")
    # imported here: SQLAlchemy costs a quarter second, and every run process loads the code location
    from oa_dagster.webhook.deliveries import DeliveryStore, StoreUnavailable

    cursor = int(context.cursor or 0)
    deliveries = DeliveryStore(ci.deliveries_url)
    try:
        page = deliveries.deliveries_after(cursor, PAGE, with_payload=False)
    except StoreUnavailable as exc:
        return dg.SkipReason(f"the deliveries database is unavailable: {exc}")
    finally:
        deliveries.close()
    output_store = store.get_store()
    requests: list[dg.RunRequest] = []
    for delivery in page:
        wanted = (
            delivery.event == "pull_request"
            and delivery.action in PR_ACTIONS
            and (delivery.repository or "").lower() == github.repo.lower()
        )
        if wanted:
            try:
                request = _request(context.log, delivery, github, ci, output_store)
            except Exception as exc:  # the store (or a bug): keep the cursor before this delivery, try again
                context.log.error(f"delivery {delivery.delivery_id}: not handled, retried next tick: {exc}")
                break
            if request is not None:
                requests.append(request)
        cursor = delivery.id
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[CI_PARTITIONS.build_add_request([r.partition_key for r in requests])]
        if requests
        else [],
        cursor=str(cursor),
    )


CI_SENSORS = [ci_jobs_sensor]
