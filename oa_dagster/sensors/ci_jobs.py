"""`ci_jobs_sensor`: turns stored webhook deliveries into CI job runs (`ci/triggers.py` says which).

For each job the sensor lists the changed files (pull request files, or the comparison of a push), plans the
job (`ci/plan.py`), stores the plan at `jobs/<key>/plan.json`, adds the `ci_jobs` partition, sets the `pending`
status and requests the run. Nothing to run: the final status at once (no source file: "No source changes").
A newer head of a pull request supersedes its job still queued or running (or requested earlier in the same
tick): that run is canceled and its commit gets `error` "Superseded by <sha7>" (no status stays `pending`). A
push to the default branch requests `launch_changed_entries_job` at the pushed commit instead of a CI job.

A job is done only once its run exists: a stored plan without a run (a tick that failed after `pending`) is
planned and requested again, under the same run key. The cursor is the last delivery id finished; a tick spends
at most `TICK_BUDGET_SECONDS` (Dagster ends an evaluation at 60 s) and leaves the rest for the next, and a job
whose planning passes the budget is tried again first thing next tick (with the whole budget: if it still does
not fit, it gets `error`). GitHub failing while a job is planned, or answering something malformed, or a change
that cannot be planned, sets `error` with the reason and moves on: a re-run comment or the next push retries it.
The output store failing stops the tick before that delivery, so the next tick tries it again.

The sweep, after the deliveries: a `pending` status this platform set more than `SWEEP_GRACE_SECONDS` ago with no
run queued or running behind it gets its run requested (when none was created since), or `error` saying why.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import dagster as dg

from oa_dagster.assets.ci_jobs import (
    CI_PARTITIONS,
    is_superseded,
    job_commit,
    plan_key,
    read_job_record,
    superseded_key,
    write_job_record,
)
from oa_dagster.ci.github_api import ChangedFile, GitHubClient, GitHubError, GitHubUnavailable
from oa_dagster.ci.plan import SHORT_SHA, PlanningTimedOut, job_key, plan_job
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
    WILL_RETRY_TAG,
)

if TYPE_CHECKING:
    from oa_dagster.ci.outbox import PendingReport
    from oa_dagster.ci.report_sender import ReportSender
    from oa_dagster.webhook.deliveries import Delivery, DeliveryStore

PAGE = 100
MAX_RUNTIME_GRACE_SECONDS = 300
TICK_BUDGET_SECONDS = 25.0  # no delivery starts, and no planning goes on, past this: the sensor limit is 60 s
CALL_TIMEOUT_SECONDS = 5.0  # one GitHub call from the tick (connect or a read), and the longest wait it accepts
CALL_RETRIES = 1  # so one call ends within ~11 s: the budget plus a call and a status stay under the limit
SWEEP_GRACE_SECONDS = 120.0  # a pending status younger than this may still have its run being created
SWEEP_PAGE = 50
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
    deadline: float  # time.monotonic() past which nothing new starts
    requests: list[dg.RunRequest] = field(default_factory=list)
    finished: int = 0  # deliveries finished in this tick

    def out_of_time(self) -> bool:
        return time.monotonic() > self.deadline

    def requested(self, key: str) -> bool:
        """Whether this tick already requested a run of job `key`."""
        return any(request.tags.get(CI_JOB_TAG) == key for request in self.requests)

    def has_run(self, key: str) -> bool:
        """Whether job `key` was requested in this tick or has a run (in any state): its planning is done."""
        if self.requested(key):
            return True
        return bool(self.context.instance.get_run_ids(filters=dg.RunsFilter(tags={CI_JOB_TAG: key}), limit=1))

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
    """Plan `key`, store its record, set `pending` and request its run (or report at once when empty).

    Raises `PlanningTimedOut` when planning passed the tick's budget and other deliveries were finished before it
    in this tick: the delivery is tried again first thing next tick."""
    try:
        plan = plan_job(tick.client, tick.repo, head_sha=sha, base_sha=base, files=files(), deadline=tick.deadline)
    except PlanningTimedOut:
        if tick.finished:
            raise
        tick.log.error(f"{key}: planning did not fit in a tick ({TICK_BUDGET_SECONDS:g} s)")
        reason = f"planning took over {TICK_BUDGET_SECONDS:g} s (GitHub slow, or too many files)"
        tick.status(key, sha, "error", error_description(reason))
        return
    except GitHubUnavailable as exc:
        tick.log.error(f"{key}: could not plan the job: {exc}")
        tick.status(key, sha, "error", error_description("GitHub could not be read"))
        return
    except GitHubError as exc:  # a 4xx, a malformed answer, a path refused before it was asked for
        tick.log.error(f"{key}: could not plan the job: {exc}")
        tick.status(key, sha, "error", error_description(f"GitHub's answer could not be used: {exc.message}"))
        return
    except (ValueError, TypeError, AttributeError, LookupError, RecursionError) as exc:  # malformed, not transient
        tick.log.error(f"{key}: could not plan the job: {exc!r}")
        tick.status(key, sha, "error", error_description(f"the change could not be planned: {type(exc).__name__}"))
        return
    if plan.empty:  # nothing to run: tell GitHub now (no source file: "No source changes")
        state, description = final_status([], plan)
        tick.status(key, sha, state, description)
        return
    write_job_record(tick.store, key, tick.repo, number, plan)
    tick.store.delete(superseded_key(key))  # a head checked again (pushed back to, or a re-run): it reports again
    tick.status(key, sha, "pending", pending_description(plan))
    _request_run(tick, key, number, run_key)


def _request_run(tick: _Tick, key: str, number: int | None, run_key: str) -> None:
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
    """Cancel the pull request's other jobs still queued or running, or requested earlier in this tick; their
    commits get `error`, not `pending`."""
    for request in [r for r in tick.requests if r.tags.get(CI_PR_TAG) == str(number)]:
        old_key = request.tags.get(CI_JOB_TAG, "")
        if old_key and old_key != new_key:
            tick.requests.remove(request)
            tick.log.info(f"{old_key}: superseded by {new_key} before its run was created")
            _superseded_error(tick, old_key, new_sha)
    for run in tick.in_flight(**{CI_PR_TAG: str(number)}):
        old_key = run.tags.get(CI_JOB_TAG, "")
        if not old_key or old_key == new_key:
            continue
        at = datetime.now(UTC).isoformat(timespec="seconds")
        put_json(tick.store, superseded_key(old_key), {"by": new_key, "run_id": run.run_id, "at": at})
        tick.context.instance.run_coordinator.cancel_run(run.run_id)
        tick.log.info(f"{old_key}: superseded by {new_key}, run {run.run_id} canceled")
        _superseded_error(tick, old_key, new_sha)


def _superseded_error(tick: _Tick, old_key: str, new_sha: str) -> None:
    commit = job_commit(tick.store, old_key)
    if commit is not None:
        tick.status(old_key, commit[1], "error", f"Superseded by {new_sha[:SHORT_SHA]}: the newer commit is checked")


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
    if tick.store.exists(plan_key(key)) and not tick.store.exists(superseded_key(key)) and tick.has_run(key):
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
    if tick.requested(key) or tick.in_flight(**{CI_JOB_TAG: key}):
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
    if tick.store.exists(plan_key(key)) and tick.has_run(key):
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


def _sweep(tick: _Tick) -> None:
    """Every `pending` status older than the grace period whose job has no run queued or running: request the run,
    or set `error` saying why (see `_sweep_one`)."""
    outbox = tick.sender.outbox
    if outbox is None:
        return
    from oa_dagster.webhook.database import StoreUnavailable

    older_than = datetime.now(UTC) - timedelta(seconds=SWEEP_GRACE_SECONDS)
    try:
        stale = outbox.pending_statuses(older_than, SWEEP_PAGE)
    except StoreUnavailable as exc:
        tick.log.error(f"pending statuses could not be read, the sweep waits for the next tick: {exc}")
        return
    for pending in stale:
        if tick.out_of_time():
            break
        report = pending.report
        if report.repo.lower() == tick.repo.lower() and report.sha and not tick.requested(report.job_key):
            _sweep_one(tick, pending)


def _sweep_one(tick: _Tick, pending: PendingReport) -> None:
    """One stale `pending`: runs created since it was set decide. One in flight: its end reports. One ended (and
    no retry coming) longer than the grace period ago: it ended without reporting, `error`. None: the run was
    never created (a tick that failed after `pending`, a run deleted while queued): request it again from the
    stored plan, or `error` when the plan cannot be read."""
    key, sha = pending.report.job_key, str(pending.report.sha)
    records = tick.context.instance.get_run_records(
        filters=dg.RunsFilter(tags={CI_JOB_TAG: key}, created_after=pending.updated_at), limit=5
    )
    if any(not record.dagster_run.is_finished for record in records):
        return
    if records:
        newest = records[0]
        ended = newest.end_time or newest.update_timestamp.timestamp()
        if newest.dagster_run.tags.get(WILL_RETRY_TAG) == "true" or time.time() - ended < SWEEP_GRACE_SECONDS:
            return  # its retry, or the failure sensors, come first
        run = newest.dagster_run
        reason = f"its run {run.run_id[:8]} ended ({run.status.value.lower()}) without reporting"
        tick.log.warning(f"{key}: pending since {pending.updated_at:%H:%M:%S} but {reason}: error set")
        tick.status(key, sha, "error", error_description(reason))
        return
    if is_superseded(tick.store, key):
        tick.status(key, sha, "error", "Superseded: a newer commit is checked")
        return
    try:
        _repo, number, _plan = read_job_record(tick.store, key)
    except ValueError as exc:
        tick.log.error(f"{key}: pending without a run, and {exc}: error set")
        tick.status(key, sha, "error", error_description("its plan could not be read"))
        return
    tick.log.warning(f"{key}: pending since {pending.updated_at:%H:%M:%S} without a run: requested again")
    _request_run(tick, key, number if isinstance(number, int) else None, f"{key}:sweep:{pending.version}")


def _handle_deliveries(tick: _Tick, cursor: int) -> int:
    """Handle the deliveries after `cursor` within the tick's budget; returns the new cursor (the last finished)."""
    from oa_dagster.webhook.database import StoreUnavailable

    for delivery in tick.deliveries.deliveries_after(cursor, PAGE, with_payload=False):
        if tick.out_of_time():
            tick.log.info(f"the tick's {TICK_BUDGET_SECONDS:g} s are spent: delivery {delivery.id} and later wait")
            break
        handler = HANDLERS.get(delivery.event)
        if handler is not None and (delivery.repository or "").lower() == tick.repo.lower():
            try:
                handler(tick, delivery)
            except PlanningTimedOut:  # only after other deliveries: this one gets the whole next tick
                tick.log.info(f"delivery {delivery.delivery_id}: planning passed the tick's budget, next tick first")
                break
            except (ValueError, LookupError, TypeError, AttributeError) as exc:  # this delivery's data: skipped
                tick.log.error(f"delivery {delivery.delivery_id}: skipped, it cannot be handled: {exc!r}")
            except StoreUnavailable:
                raise
            except Exception as exc:  # the output store, most likely: keep the cursor before this delivery
                tick.log.error(f"delivery {delivery.delivery_id}: not handled, retried next tick: {exc}")
                break
        cursor = delivery.id
        tick.finished += 1
    return cursor


@dg.sensor(
    name="ci_jobs_sensor",
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    jobs=[ci_job_job, launch_changed_entries_job],
    description="Turns webhook deliveries into CI jobs: pull requests opened or updated, pushes to branches and "
    "re-run comments get a ci_job run with a pending status; a push to the default branch runs the production "
    "entries it changes. Also requests again, or closes with error, a pending status left without a run.",
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

    deadline = time.monotonic() + TICK_BUDGET_SECONDS
    start = cursor = int(context.cursor or 0)
    deliveries = DeliveryStore(ci.deliveries_url)
    # short calls: a tick has a minute, and a slow GitHub must not use it up in one call
    retries = min(github.retries, CALL_RETRIES)
    client = github.settings().client(retries=retries, timeout=CALL_TIMEOUT_SECONDS, max_wait=CALL_TIMEOUT_SECONDS)
    tick = _Tick(context, github, ci, store.get_store(), client, ci.report_sender(client), deliveries, deadline)
    try:
        try:
            cursor = _handle_deliveries(tick, cursor)
        except StoreUnavailable as exc:
            if not tick.requests and not tick.finished:
                return dg.SkipReason(f"the deliveries database is unavailable: {exc}")
            context.log.error(f"the deliveries database failed mid-tick, the rest waits for the next tick: {exc}")
        _sweep(tick)
    finally:
        deliveries.close()
        tick.sender.close()
    partitions = list(dict.fromkeys(r.partition_key for r in tick.requests if r.partition_key))
    context.log.info(f"deliveries {start + 1}..{cursor} handled, {len(tick.requests)} run(s) requested")
    return dg.SensorResult(
        run_requests=tick.requests,
        dynamic_partitions_requests=[CI_PARTITIONS.build_add_request(partitions)] if partitions else [],
        cursor=str(cursor),
    )


CI_SENSORS = [ci_jobs_sensor]
