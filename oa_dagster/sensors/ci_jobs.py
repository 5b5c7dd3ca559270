"""`ci_jobs_sensor`: turns stored webhook deliveries into CI job runs (`ci/triggers.py` says which).

For each job the sensor lists the changed files (pull request files, or the comparison of a push), plans the
job (`ci/plan.py`), stores the plan at `jobs/<key>/plan.json`, adds the `ci_jobs` partition, sets the `pending`
status and requests the run. Nothing to run: the final status at once (no source file: "No source changes").
A newer head of a pull request supersedes its job still queued or running: that run is canceled and its commit
gets `error` "Superseded by <sha7>" (no status stays `pending`). A push to the default branch requests
`launch_changed_entries_job` at the pushed commit instead of a CI job.

The cursor is the last delivery id handled. GitHub failing while a job is planned sets `error` (best effort,
re-sent by `ci_reports_sensor` when GitHub is back) and moves on: a re-run comment or the next push retries it.
The output store failing stops the tick before that delivery, so the next tick tries it again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import dagster as dg

from oa_dagster.assets.ci_jobs import CI_PARTITIONS, job_commit, plan_key, superseded_key, write_job_record
from oa_dagster.ci.github_api import ChangedFile, GitHubClient, GitHubError
from oa_dagster.ci.plan import SHORT_SHA, job_key, plan_job
from oa_dagster.ci.reporting import error_description, final_status, pending_description
from oa_dagster.ci.triggers import PR_ACTIONS, is_null_sha, is_rerun_request, may_request_rerun, push_target
from oa_dagster.jobs.catalog import launch_changed_entries_job
from oa_dagster.jobs.ci_jobs import ci_job_job
from oa_dagster.platform.store import OutputStore, put_json
from oa_dagster.resources.github import CiSettings, GitHubResource
from oa_dagster.resources.store import OutputStoreResource
from oa_dagster.run_tags import (
    CI_JOB_TAG,
    CI_PR_TAG,
    CI_PRIORITY,
    CI_PUSH_TAG,
    MAX_RUNTIME_TAG,
    PRIORITY_TAG,
    RETRY_ON_FAILURE_TAG,
)

if TYPE_CHECKING:
    from oa_dagster.ci.report_sender import ReportSender
    from oa_dagster.webhook.deliveries import Delivery, DeliveryStore

PAGE = 100
MAX_RUNTIME_GRACE_SECONDS = 300
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


@dataclass
class _Tick:
    """One evaluation: the resources, and the run requests gathered so far."""

    context: dg.SensorEvaluationContext
    github: GitHubResource
    ci: CiSettings
    store: OutputStore
    client: GitHubClient
    sender: ReportSender
    deliveries: DeliveryStore
    requests: list[dg.RunRequest] = field(default_factory=list)

    @property
    def log(self) -> dg.DagsterLogManager:
        return self.context.log

    @property
    def repo(self) -> str:
        return self.github.repo

    def status(self, key: str, sha: str, state: str, description: str) -> None:
        error = self.sender.status(self.repo, sha, key, state, description, self.github.context_for(key))
        if error:
            self.log.error(f"{key}: could not set the {state} status (kept to send again): {error}")

    def in_flight(self, **tags: str) -> list[dg.DagsterRun]:
        """CI job runs queued or running with `tags` (by tag, not job name: a run launched from the UI counts)."""
        return list(self.context.instance.get_runs(filters=dg.RunsFilter(statuses=IN_FLIGHT, tags=tags)))


def _start_job(
    tick: _Tick,
    key: str,
    *,
    sha: str,
    base: str | None,
    number: int | None,
    files: Callable[[], list[ChangedFile]],
    run_key: str,
) -> None:
    """Plan `key`, store its record, set `pending` and request its run (or report at once when empty)."""
    try:
        plan = plan_job(tick.client, tick.repo, head_sha=sha, base_sha=base, files=files())
    except GitHubError as exc:
        tick.log.error(f"{key}: could not plan the job: {exc}")
        tick.status(key, sha, "error", error_description("GitHub could not be read"))
        return
    if plan.empty:  # nothing to run: tell GitHub now (no source file: "No source changes")
        state, description = final_status([], plan)
        tick.status(key, sha, state, description)
        return
    write_job_record(tick.store, key, tick.repo, number, plan)
    tick.store.delete(superseded_key(key))  # a head checked again (pushed back to, or a re-run): it reports again
    tick.status(key, sha, "pending", pending_description(plan))
    tags = {
        PRIORITY_TAG: CI_PRIORITY,
        # a backstop: the run's own cap stops it first and says so; this one ends a run stuck past it
        MAX_RUNTIME_TAG: str(tick.ci.job_max_runtime_seconds + MAX_RUNTIME_GRACE_SECONDS),
        RETRY_ON_FAILURE_TAG: "false",  # a crashed worker is retried; a failed step would only fail again
        CI_JOB_TAG: key,
    }
    if number:
        tags[CI_PR_TAG] = str(number)
    tick.requests.append(dg.RunRequest(run_key=run_key, partition_key=key, tags=tags, job_name=ci_job_job.name))


def _supersede(tick: _Tick, number: int, new_key: str, new_sha: str) -> None:
    """Cancel the pull request's other jobs still queued or running; their commits get `error`, not `pending`."""
    for run in tick.in_flight(**{CI_PR_TAG: str(number)}):
        old_key = run.tags.get(CI_JOB_TAG, "")
        if not old_key or old_key == new_key:
            continue
        at = datetime.now(UTC).isoformat(timespec="seconds")
        put_json(tick.store, superseded_key(old_key), {"by": new_key, "run_id": run.run_id, "at": at})
        tick.context.instance.run_coordinator.cancel_run(run.run_id)
        tick.log.info(f"{old_key}: superseded by {new_key}, run {run.run_id} canceled")
        commit = job_commit(tick.store, old_key)
        if commit is not None:
            tick.status(
                old_key, commit[1], "error", f"Superseded by {new_sha[:SHORT_SHA]}: the newer commit is checked"
            )


def _start_pull_request_job(tick: _Tick, key: str, *, number: int, sha: str, base: str | None, run_key: str) -> None:
    """A pull request's job for its head `sha`: older heads' jobs superseded, files from the pull request."""
    _supersede(tick, number, key, sha)
    files = partial(tick.client.pull_request_files, tick.repo, number)
    _start_job(tick, key, sha=sha, base=base, number=number, files=files, run_key=run_key)


def _on_pull_request(tick: _Tick, delivery: Delivery) -> None:
    if delivery.action not in PR_ACTIONS:
        return  # closed (merged or not), edited, labeled...: nothing to check
    number, sha = delivery.pr_number, delivery.head_sha
    if not number or not sha:
        tick.log.warning(f"delivery {delivery.delivery_id}: pull_request without a number or head sha, ignored")
        return
    key = job_key("pr", sha, number)
    if tick.store.exists(plan_key(key)) and not tick.store.exists(superseded_key(key)):
        tick.log.info(f"{key}: already planned, not requested again")  # a redelivery, or ready_for_review
        return
    # a head superseded and then pushed back to is checked again, as a new run
    run_key = f"{key}:{delivery.delivery_id}"
    _start_pull_request_job(tick, key, number=number, sha=sha, base=delivery.base_sha, run_key=run_key)


def _on_comment(tick: _Tick, delivery: Delivery) -> None:
    number = delivery.pr_number
    if not number or not is_rerun_request(delivery.comment_body, delivery.action):
        return
    try:
        pull = tick.client.pull_request(tick.repo, number)
    except GitHubError as exc:
        tick.log.error(f"pull request #{number}: re-run asked, but the pull request could not be read: {exc}")
        return
    if pull.get("state") != "open":
        tick.log.info(f"pull request #{number}: re-run asked on a {pull.get('state')} pull request, ignored")
        return
    if not may_request_rerun(delivery.author_association, delivery.comment_author, pull.get("author")):
        tick.log.info(
            f"pull request #{number}: re-run asked by {delivery.comment_author} "
            f"({delivery.author_association}), who is neither its author nor has write access: ignored"
        )
        return
    sha = str(pull.get("head_sha") or "")
    key = job_key("pr", sha, number)
    if tick.in_flight(**{CI_JOB_TAG: key}):
        tick.log.info(f"{key}: re-run asked while it is queued or running: its result is coming")
        return
    rerun_key = f"{key}:rerun:{delivery.delivery_id}"
    _start_pull_request_job(tick, key, number=number, sha=sha, base=pull.get("base_sha"), run_key=rerun_key)


def _default_branch(tick: _Tick, delivery: Delivery) -> str | None:
    """The repository's default branch, as the push's own payload says (GitHub sends it with every push)."""
    try:
        payload = json.loads(tick.deliveries.payload(delivery.id) or "{}")
    except ValueError:
        return None
    branch = (payload.get("repository") or {}).get("default_branch") if isinstance(payload, dict) else None
    return branch if isinstance(branch, str) else None


def _on_push(tick: _Tick, delivery: Delivery) -> None:
    sha = delivery.head_sha
    default = _default_branch(tick, delivery)
    target = push_target(delivery.ref, sha, delivery.deleted, default)
    if target.kind == "ignored" or not sha:
        tick.log.info(f"delivery {delivery.delivery_id}: {target.reason or 'push without a commit'}, ignored")
        return
    if target.kind == "default":
        tick.log.info(f"push to {target.branch} at {sha[:SHORT_SHA]}: production entries it changes are run")
        tick.requests.append(
            dg.RunRequest(
                run_key=f"default-branch-{sha}",
                job_name=launch_changed_entries_job.name,
                run_config={"ops": {"source_catalog": {"config": {"ref": sha}}}},
                tags={CI_PUSH_TAG: sha},
            )
        )
        return
    key = job_key("push", sha)
    if tick.store.exists(plan_key(key)):
        tick.log.info(f"{key}: already planned, not requested again")
        return
    base = default if is_null_sha(delivery.before_sha) else delivery.before_sha  # a new branch: its fork point
    if not base:
        tick.log.warning(f"{key}: a new branch and no default branch in the payload to compare with, ignored")
        return
    _start_job(
        tick,
        key,
        sha=sha,
        base=base,
        number=None,
        files=lambda: tick.client.compare_files(tick.repo, base, sha),
        run_key=key,
    )


HANDLERS: dict[str, Callable[[_Tick, Any], None]] = {
    "pull_request": _on_pull_request,
    "push": _on_push,
    "issue_comment": _on_comment,
}


@dg.sensor(
    name="ci_jobs_sensor",
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    jobs=[ci_job_job, launch_changed_entries_job],
    description="Turns webhook deliveries into CI jobs: pull requests opened or updated, pushes to branches and "
    "re-run comments get a ci_job run with a pending status; a push to the default branch runs the production "
    "entries it changes.",
)
def ci_jobs_sensor(
    context: dg.SensorEvaluationContext, github: GitHubResource, ci: CiSettings, store: OutputStoreResource
) -> dg.SensorResult | dg.SkipReason:
    if not ci.deliveries_url:
        return dg.SkipReason("CI jobs are off: no webhook secret is configured (OA_WEBHOOK_SECRET)")
    if not github.has_credentials():
        return dg.SkipReason("CI jobs are off: no GitHub token or App is configured (GITHUB_TOKEN, OA_GITHUB_APP_ID)")
    # imported here: SQLAlchemy costs a quarter second, and every run process loads the code location
    from oa_dagster.webhook.deliveries import DeliveryStore, StoreUnavailable

    cursor = int(context.cursor or 0)
    deliveries = DeliveryStore(ci.deliveries_url)
    client = github.client()
    tick = _Tick(context, github, ci, store.get_store(), client, ci.report_sender(client), deliveries)
    try:
        page = deliveries.deliveries_after(cursor, PAGE, with_payload=False)
        for delivery in page:
            handler = HANDLERS.get(delivery.event)
            if handler is not None and (delivery.repository or "").lower() == github.repo.lower():
                try:
                    handler(tick, delivery)
                except StoreUnavailable:
                    raise
                except (ValueError, KeyError, TypeError) as exc:  # this delivery's data: it would fail every tick
                    context.log.error(f"delivery {delivery.delivery_id}: skipped, it cannot be handled: {exc!r}")
                except Exception as exc:  # the store, most likely: keep the cursor before this delivery, try again
                    context.log.error(f"delivery {delivery.delivery_id}: not handled, retried next tick: {exc}")
                    break
            cursor = delivery.id
    except StoreUnavailable as exc:
        if not tick.requests and cursor == int(context.cursor or 0):
            return dg.SkipReason(f"the deliveries database is unavailable: {exc}")
        context.log.error(f"the deliveries database failed mid-tick, the rest waits for the next tick: {exc}")
    finally:
        deliveries.close()
        tick.sender.close()
    partitions = [r.partition_key for r in tick.requests if r.partition_key]
    return dg.SensorResult(
        run_requests=tick.requests,
        dynamic_partitions_requests=[CI_PARTITIONS.build_add_request(partitions)] if partitions else [],
        cursor=str(cursor),
    )


CI_SENSORS = [ci_jobs_sensor]
