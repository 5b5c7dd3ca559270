"""The `ci_job` asset: one partition per CI job (`pr-<number>-<sha7>`, `push-<sha7>`), added by the CI sensor.

A run reads the job's record (`jobs/<key>/plan.json`, written by the sensor, so a retried run finds it again),
processes every planned entry with `platform.entry_processing` under the store root `jobs/<key>/` (so production
`latest/` pointers are never touched) with downloads limited to public addresses (plus `OA_CI_ALLOW_HOSTS`)
and the whole job held to a wall-clock cap, writes `jobs/<key>/result.json`, then tells GitHub: the final
commit status and the one results comment. A contributor's broken source is a `failure` status, not a failed
run; GitHub being unreachable while reporting is not a failed run either (the outputs are there): the reports
wait in the outbox (`ci/outbox.py`) and `ci_reports_sensor` sends them when GitHub is back. A crash sets
`error`; a job superseded by a newer head (`jobs/<key>/superseded.json`, written by the sensor) reports nothing.
"""

import dataclasses
import threading
import time
from typing import TYPE_CHECKING, Any

import dagster as dg

from oa_dagster.assets.links import link_metadata
from oa_dagster.ci.plan import JobPlan, PlannedEntry
from oa_dagster.ci.reporting import LINK_ORDER, EntryOutcome, error_description, final_status, results_comment
from oa_dagster.platform.entry_processing import Cancelled, EntryOptions, EntryResult, process_entry
from oa_dagster.platform.store import OutputStore, get_json, put_json
from oa_dagster.platform.store_layout import job_prefix
from oa_dagster.resources.github import CiSettings, GitHubResource
from oa_dagster.resources.processing import ProcessingSettings
from oa_dagster.resources.store import OutputStoreResource
from oa_dagster.sources.model import SourceInvalid

from . import OWNERS

if TYPE_CHECKING:
    from oa_dagster.ci.report_sender import ReportSender

CI_PARTITIONS = dg.DynamicPartitionsDefinition(name="ci_jobs")
POOL = "oa_ci_jobs"  # its own pool: a weekly set filling `oa_layer_runs` never starves a pull request


def plan_key(job_key: str) -> str:
    """Where the sensor stores a job's record: the plan and where to report (repo, number, head sha)."""
    return f"{job_prefix(job_key)}/plan.json"


def superseded_key(job_key: str) -> str:
    """Written by the sensor when a newer head of the pull request replaces this job (its run is canceled)."""
    return f"{job_prefix(job_key)}/superseded.json"


def result_key(job_key: str) -> str:
    """The job's outcome as the run saw it: state, description, one row per entry (kept whatever GitHub does)."""
    return f"{job_prefix(job_key)}/result.json"


def write_job_record(store: OutputStore, job_key: str, repo: str, number: int | None, plan: JobPlan) -> None:
    put_json(store, plan_key(job_key), {"repo": repo, "number": number, "plan": plan.to_dict()})


def job_commit(store: OutputStore, job_key: str) -> tuple[str, str] | None:
    """(repo, head sha) of a job from its record, even one whose plan no longer parses; None without them."""
    record = get_json(store, plan_key(job_key))
    plan = record.get("plan") if isinstance(record, dict) else None
    repo, sha = (record or {}).get("repo"), plan.get("head_sha") if isinstance(plan, dict) else None
    return (repo, sha) if isinstance(repo, str) and isinstance(sha, str) and repo and sha else None


def read_job_record(store: OutputStore, job_key: str) -> tuple[str, int | None, JobPlan]:
    """(repo, pull request number, plan); ValueError naming the file when it is missing or unreadable."""
    key = plan_key(job_key)
    record = get_json(store, key)
    if not isinstance(record, dict):
        raise ValueError(f"{key} is missing or not a JSON object")
    try:
        return str(record["repo"]), record.get("number"), JobPlan.from_dict(record["plan"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{key} is not a valid job plan: {type(exc).__name__}: {exc}") from None


def ci_entry_options(processing: ProcessingSettings, ci: CiSettings) -> EntryOptions:
    """The layer runs' options, but downloads reach public addresses only (and the allowlist), and no shared
    content cache: a contributor's URL must not fill or read the production cache."""
    options = processing.entry_options()
    fetch = dataclasses.replace(
        options.fetch_options, cache_dir=None, public_hosts_only=True, allowed_hosts=ci.allowed()
    )
    return dataclasses.replace(options, fetch_options=fetch)


def _one_entry_catalog(job_key: str, entry: PlannedEntry) -> dict[str, Any]:
    """The smallest catalog `process_entry` reads: the planned entry and its source, nothing from production."""
    return {
        "id": f"ci-{job_key}",
        "entries": {
            entry.layer: {
                entry.partition_key: {"source": entry.source_key, "name": entry.name, "version": entry.version}
            }
        },
        "sources": {entry.source_key: {"data": dict(entry.source_data)}},
    }


def _outcome(result: EntryResult, store: OutputStore) -> EntryOutcome:
    state = result.state
    problem = None
    if not result.has_output:
        problem = f"{result.source_problem or 'no output'}" + (
            f": {result.problem_detail}" if result.problem_detail else ""
        )
    files = result.published.file_keys if result.published else {}
    return EntryOutcome(
        result.layer,
        result.key,
        feature_count=int(state.feature_count or 0) if state and result.has_output else None,
        problem=problem,
        links={role: store.url(key) for role, key in files.items() if role in ("preview", "sample", "output")},
    )


def run_ci_job(
    job_key: str,
    plan: JobPlan,
    store: OutputStore,
    options: EntryOptions,
    run_id: str,
    log: Any,
    *,
    max_seconds: float | None = None,
) -> list[EntryOutcome]:
    """Every planned entry, one after the other, published under `jobs/<key>/`; never raises for an entry.

    `max_seconds` caps the whole job's wall clock: the entry in hand is stopped at its next progress callback
    (a download chunk, a conform batch) and the entries after it are not started, each saying why.
    """
    outcomes = []
    out_of_time = threading.Event()
    timer = threading.Timer(max_seconds, out_of_time.set) if max_seconds else None
    started = time.monotonic()
    cap = f"the job's time cap of {max_seconds:g} s was reached" if max_seconds else ""
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        for entry in plan.entries:
            if out_of_time.is_set():
                outcomes.append(EntryOutcome(entry.layer, entry.partition_key, problem=f"not run: {cap}"))
                continue
            try:
                entry.layer_entry()  # the strict rule again: the record in the store could have been edited
            except SourceInvalid as exc:
                outcomes.append(EntryOutcome(entry.layer, entry.partition_key, problem=f"invalid source: {exc}"))
                continue
            try:
                result = process_entry(
                    _one_entry_catalog(job_key, entry),
                    entry.layer,
                    entry.partition_key,
                    store,
                    options,
                    run_id=run_id,
                    root=job_prefix(job_key),
                    cancelled=out_of_time,
                )
            except Cancelled:
                seconds = time.monotonic() - started
                log.error(f"{entry.partition_key}: stopped after {seconds:.0f} s: {cap}")
                outcomes.append(EntryOutcome(entry.layer, entry.partition_key, problem=f"stopped: {cap}"))
                continue
            for level, message in result.log_lines:
                log.log(level, message)
            outcomes.append(_outcome(result, store))
    finally:
        if timer is not None:
            timer.cancel()
    return outcomes


def _entries_table(outcomes: list[EntryOutcome]) -> dg.TableMetadataValue:
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord(
                {
                    "layer": o.layer,
                    "entry": o.key,
                    "features": o.feature_count if o.feature_count is not None else -1,
                    "problem": o.problem or "",
                    **{role: o.links.get(role, "") for role in LINK_ORDER},
                }
            )
            for o in outcomes
        ],
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn("layer", "string"),
                dg.TableColumn("entry", "string"),
                dg.TableColumn("features", "int", description="-1: no output"),
                dg.TableColumn("problem", "string"),
                *[
                    dg.TableColumn(role, "string", description=f"the {role} through the download app")
                    for role in LINK_ORDER
                ],
            ]
        ),
    )


def _log_errors(context: dg.AssetExecutionContext, job_key: str, errors: dict[str, str | None]) -> list[str]:
    failed = [f"{what}: {error}" for what, error in errors.items() if error]
    for line in failed:
        context.log.error(f"{job_key}: GitHub could not take the {line} (kept; sent again when GitHub is back)")
    return failed


def _report_unreadable(
    context: dg.AssetExecutionContext,
    sender: "ReportSender",
    github: GitHubResource,
    store: OutputStore,
    job_key: str,
    problem: str,
) -> None:
    """An unreadable plan: `failure` naming the file, when the record still says which commit (best effort)."""
    commit = job_commit(store, job_key)
    if commit is None:
        context.log.error(f"{job_key}: {problem}; no commit to report it on")
        return
    repo, sha = commit
    error = sender.status(repo, sha, job_key, "failure", problem, github.context_for(job_key))
    _log_errors(context, job_key, {"failure status": error})


def is_superseded(store: OutputStore, job_key: str) -> bool:
    return store.exists(superseded_key(job_key))


def _result(state: str, description: str, sha: str, run_id: str, outcomes: list[EntryOutcome]) -> dict[str, Any]:
    return {
        "state": state,
        "description": description,
        "head_sha": sha,
        "run_id": run_id,
        "entries": [dataclasses.asdict(outcome) for outcome in outcomes],
    }


@dg.asset(
    name="ci_job",
    partitions_def=CI_PARTITIONS,
    pool=POOL,
    group_name="ci",
    kinds={"python", "github"},
    owners=OWNERS,
    description="A pull request's (or a pushed branch's) changed entries, processed under jobs/<job key>/ in the "
    "store (never latest/), with the commit status and results comment on GitHub. Partitions are added by "
    "ci_jobs_sensor.",
)
def ci_job(
    context: dg.AssetExecutionContext,
    store: OutputStoreResource,
    processing: ProcessingSettings,
    github: GitHubResource,
    ci: CiSettings,
) -> dg.MaterializeResult:
    sender = ci.report_sender(github.client())  # SQLAlchemy imported here: in CI runs only
    try:
        return _check(context, store.get_store(), processing, github, ci, sender)
    finally:
        sender.close()


def _check(
    context: dg.AssetExecutionContext,
    output_store: OutputStore,
    processing: ProcessingSettings,
    github: GitHubResource,
    ci: CiSettings,
    sender: "ReportSender",
) -> dg.MaterializeResult:
    job_key = context.partition_key
    try:
        repo, number, plan = read_job_record(output_store, job_key)
    except ValueError as exc:
        _report_unreadable(context, sender, github, output_store, job_key, str(exc))
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    run_id = context.run.run_id
    run_url = github.settings().run_url(run_id)
    sha = plan.head_sha
    try:
        outcomes = run_ci_job(
            job_key,
            plan,
            output_store,
            ci_entry_options(processing, ci),
            run_id,
            context.log,
            max_seconds=ci.job_max_runtime_seconds,
        )
    except BaseException as exc:
        if not is_superseded(output_store, job_key):  # superseded: the sensor has said so already
            reason = error_description(f"{type(exc).__name__} in the run")
            error = sender.status(repo, sha, job_key, "error", reason, github.context_for(job_key), run_url)
            _log_errors(context, job_key, {"error status": error})
            try:  # so the failure sensor knows this run reported
                put_json(output_store, result_key(job_key), _result("error", reason, sha, run_id, []))
            except Exception as store_exc:
                context.log.error(f"{job_key}: could not record the error result: {store_exc}")
        raise
    state, description = final_status(outcomes, plan)
    put_json(output_store, result_key(job_key), _result(state, description, sha, run_id, outcomes))
    errors: dict[str, str | None] = {}
    superseded = is_superseded(output_store, job_key)
    if superseded:
        context.log.info(f"{job_key}: superseded by a newer head; its result is kept, GitHub is not told")
    else:
        status_context = github.context_for(job_key)
        errors["final status"] = sender.status(repo, sha, job_key, state, description, status_context, run_url)
        if number:
            body = results_comment(job_key, sha, plan, outcomes, run_url)
            errors["results comment"] = sender.comment(repo, int(number), job_key, body)
    failed = _log_errors(context, job_key, errors)
    metadata: dict[str, Any] = {
        "state": state,
        "description": description,
        "head_sha": sha,
        "entries": _entries_table(outcomes),
        "feature_count": sum(o.feature_count or 0 for o in outcomes),
        "invalid_files": dg.MetadataValue.json({path: list(e) for path, e in plan.invalid.items()}),
        "github_errors": dg.MetadataValue.json(failed),
        "superseded": superseded,
        "result": link_metadata(output_store.url(result_key(job_key))),
    }
    if number:
        metadata["pull_request"] = link_metadata(github.pull_request_url(repo, int(number)))
    return dg.MaterializeResult(metadata=metadata)


CI_ASSETS = [ci_job]
