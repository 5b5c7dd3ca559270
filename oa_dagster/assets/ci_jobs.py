"""The `ci_job` asset: one partition per CI job (`pr-<number>-<sha7>`), added by the CI sensor.

A run reads the job's record (`jobs/<key>/plan.json`, written by the sensor, so a retried run finds it again),
processes every planned entry with `platform.entry_processing` under the store root `jobs/<key>/` (so production
`latest/` pointers are never touched) with downloads limited to public addresses (plus `OA_CI_ALLOW_HOSTS`),
then tells GitHub: the final commit status and the one results comment. A contributor's broken source is a
`failure` status, not a failed run; GitHub being unreachable while reporting is logged and kept in the metadata,
not a failed run either (the outputs are there, and a re-run would only repeat the work). A crash sets `error`.
"""

import dataclasses
from collections.abc import Mapping
from typing import Any

import dagster as dg

from oa_dagster.ci.github_api import GitHubError
from oa_dagster.ci.plan import JobPlan, PlannedEntry
from oa_dagster.ci.reporting import EntryOutcome, error_description, final_status, results_comment
from oa_dagster.platform.entry_processing import EntryOptions, EntryResult, process_entry
from oa_dagster.platform.store import OutputStore, get_json, put_json
from oa_dagster.platform.store_layout import job_prefix
from oa_dagster.resources.github import CiSettings, GitHubResource
from oa_dagster.resources.processing import ProcessingSettings
from oa_dagster.resources.store import OutputStoreResource
from oa_dagster.sources.model import SourceInvalid

from . import OWNERS

CI_PARTITIONS = dg.DynamicPartitionsDefinition(name="ci_jobs")
POOL = "oa_ci_jobs"  # its own pool: a weekly set filling `oa_layer_runs` never starves a pull request


def plan_key(job_key: str) -> str:
    """Where the sensor stores a job's record: the plan and where to report (repo, number, head sha)."""
    return f"{job_prefix(job_key)}/plan.json"


def write_job_record(store: OutputStore, job_key: str, repo: str, number: int | None, plan: JobPlan) -> None:
    put_json(store, plan_key(job_key), {"repo": repo, "number": number, "plan": plan.to_dict()})


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
    job_key: str, plan: JobPlan, store: OutputStore, options: EntryOptions, run_id: str, log: Any
) -> list[EntryOutcome]:
    """Every planned entry, one after the other, published under `jobs/<key>/`; never raises for an entry."""
    outcomes = []
    for entry in plan.entries:
        try:
            entry.layer_entry()  # the strict rule again: the record in the store could have been edited
        except SourceInvalid as exc:
            outcomes.append(EntryOutcome(entry.layer, entry.partition_key, problem=f"invalid source: {exc}"))
            continue
        result = process_entry(
            _one_entry_catalog(job_key, entry),
            entry.layer,
            entry.partition_key,
            store,
            options,
            run_id=run_id,
            root=job_prefix(job_key),
        )
        for level, message in result.log_lines:
            log.log(level, message)
        outcomes.append(_outcome(result, store))
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
            ]
        ),
    )


def _report(context: dg.AssetExecutionContext, repo: str, sha: str, calls: Mapping[str, Any]) -> list[str]:
    """Run each GitHub call; an error is logged and returned, never raised (the job's results stand)."""
    errors = []
    for what, call in calls.items():
        try:
            call()
        except (GitHubError, OSError) as exc:
            context.log.error(f"GitHub: could not {what} on {repo}@{sha[:7]}: {exc}")
            errors.append(f"{what}: {exc}")
    return errors


def _report_unreadable(
    context: dg.AssetExecutionContext, github: GitHubResource, store: OutputStore, job_key: str, problem: str
) -> None:
    """An unreadable plan: `failure` naming the file, when the record still says which commit (best effort)."""
    try:
        record = get_json(store, plan_key(job_key))
        repo, sha = record["repo"], record["plan"]["head_sha"]
    except Exception:
        context.log.error(f"{job_key}: {problem}; no commit to report it on")
        return
    client = github.client()
    _report(
        context,
        repo,
        sha,
        {"set the failure status": lambda: client.set_status(repo, sha, "failure", problem, github.status_context)},
    )


@dg.asset(
    name="ci_job",
    partitions_def=CI_PARTITIONS,
    pool=POOL,
    group_name="ci",
    kinds={"python", "github"},
    owners=OWNERS,
    description="A pull request's changed entries, processed under jobs/<job key>/ in the store (never latest/), "
    "with the commit status and results comment on GitHub. Partitions are added by ci_jobs_sensor.",
)
def ci_job(
    context: dg.AssetExecutionContext,
    store: OutputStoreResource,
    processing: ProcessingSettings,
    github: GitHubResource,
    ci: CiSettings,
) -> dg.MaterializeResult:
    job_key = context.partition_key
    output_store = store.get_store()
    try:
        repo, number, plan = read_job_record(output_store, job_key)
    except ValueError as exc:
        _report_unreadable(context, github, output_store, job_key, str(exc))
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    settings = github.settings()
    client = settings.client()
    run_url = settings.run_url(context.run.run_id)
    sha = plan.head_sha
    try:
        outcomes = run_ci_job(
            job_key, plan, output_store, ci_entry_options(processing, ci), context.run.run_id, context.log
        )
    except BaseException as exc:
        reason = error_description(f"{type(exc).__name__} in the run")
        _report(
            context,
            repo,
            sha,
            {
                "set the error status": lambda: client.set_status(
                    repo, sha, "error", reason, github.status_context, run_url
                )
            },
        )
        raise
    state, description = final_status(outcomes, plan)
    calls: dict[str, Any] = {
        "set the final status": lambda: client.set_status(repo, sha, state, description, github.status_context, run_url)
    }
    if number:
        body = results_comment(job_key, sha, plan, outcomes, run_url)
        calls["update the results comment"] = lambda: client.upsert_comment(repo, int(number), body)
    errors = _report(context, repo, sha, calls)
    metadata: dict[str, Any] = {
        "state": state,
        "description": description,
        "head_sha": sha,
        "entries": _entries_table(outcomes),
        "feature_count": sum(o.feature_count or 0 for o in outcomes),
        "invalid_files": dg.MetadataValue.json({path: list(e) for path, e in plan.invalid.items()}),
        "github_errors": dg.MetadataValue.json(errors),
    }
    if number:
        metadata["pull_request"] = dg.MetadataValue.url(github.pull_request_url(repo, int(number)))
    return dg.MaterializeResult(metadata=metadata)


CI_ASSETS = [ci_job]
