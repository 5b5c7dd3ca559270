"""What GitHub is told about a CI job: commit status descriptions and the one results comment per pull request.

Pure functions of the plan and the per-entry outcomes, so the wording is tested without Dagster or GitHub.
Descriptions stay within GitHub's 140 characters (longer ones are refused, failing the report itself); the
comment stays within GitHub's 65,536 characters. Contributor-controlled text (entry names, problems, schema
errors) is escaped so it cannot break the table or inject HTML such as a fake results marker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from oa_dagster.sources.model import LAYERS
from oa_dagster.wording import plural

from .github_api import RESULTS_MARKER, STATUS_DESCRIPTION_LIMIT, status_description
from .plan import SHORT_SHA, JobPlan

COMMENT_LIMIT = 65_536  # GitHub refuses longer comment bodies
LINK_ORDER = ("preview", "sample", "output")
NO_SOURCE_CHANGES = "No source changes"


@dataclass(frozen=True)
class EntryOutcome:
    """One entry's result in a CI job: features written, the problem that stopped or failed it, its files."""

    layer: str
    key: str  # the partition key
    feature_count: int | None = None
    problem: str | None = None
    links: Mapping[str, str] = field(default_factory=dict)  # preview / sample / output -> URL


def _with_suffix(head: str, suffix: str = "") -> str:
    """`head` trimmed so that `suffix` (a count of others) always survives within the limit."""
    suffix = " ".join(suffix.split())
    if not suffix:
        return status_description(head)
    return status_description(head, STATUS_DESCRIPTION_LIMIT - len(suffix) - 1) + " " + suffix


def _files_phrase(files: Iterable[str]) -> str:
    files = list(files)
    return files[0] if len(files) == 1 else plural(len(files), "file")


def pending_description(plan: JobPlan) -> str:
    """The `pending` status when the job is requested: `Checking <n> entries in <files>`."""
    if not plan.files:
        return NO_SOURCE_CHANGES
    return status_description(f"Checking {plural(len(plan.entries), 'entry')} in {_files_phrase(plan.files)}")


def final_status(outcomes: Iterable[EntryOutcome], plan: JobPlan | None = None) -> tuple[str, str]:
    """(state, description) once the job is done: `success`, or `failure` naming the first problem.

    An invalid file (from `plan`) comes first, then the first entry with a problem; the description counts the
    others. No entries and nothing invalid is `success` "No source changes".
    """
    outcomes = list(outcomes)
    invalid = dict(plan.invalid) if plan is not None else {}
    failed = [outcome for outcome in outcomes if outcome.problem]
    problems = len(invalid) + len(failed)
    if problems:
        if invalid:
            path, errors = next(iter(invalid.items()))
            first = f"{path}: {errors[0] if errors else 'invalid source'}"
        else:
            first = f"{failed[0].layer} {failed[0].key}: {failed[0].problem}"
        others = problems - 1
        return "failure", _with_suffix(first, f"(and {plural(others, 'other')})" if others else "")
    if not outcomes:
        if plan is not None and plan.files:
            return "success", status_description(f"No changed entries in {_files_phrase(plan.files)}")
        if plan is not None and plan.removed:
            return "success", status_description(f"Removes {_files_phrase(plan.removed)}: nothing to check")
        return "success", NO_SOURCE_CHANGES
    features = sum(outcome.feature_count or 0 for outcome in outcomes)
    return "success", status_description(f"{plural(len(outcomes), 'entry')} processed: {plural(features, 'feature')}")


def error_description(reason: str) -> str:
    """The `error` status: the job could not be built or its run crashed (not the contributor's fault)."""
    return status_description(f"The check could not run: {reason}")


def _cell(text: object) -> str:
    """Text safe inside a markdown table cell: one line, no pipes, no HTML, and no links, images or @-mentions
    made from a contributor's text (a zero-width space after `@` keeps GitHub from notifying anyone)."""
    line = " ".join(str(text).split())
    return (
        line.replace("\\", "\\\\")
        .replace("|", "\\|")
        .replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("`", "'")
        .replace("[", "\\[")
        .replace("]", "\\]")
        .replace("@", "@&#8203;")
    )


def _links(links: Mapping[str, str]) -> str:
    names = [name for name in LINK_ORDER if links.get(name)] + sorted(n for n in links if n not in LINK_ORDER)
    return " · ".join(f"[{_cell(name)}]({links[name].replace(' ', '%20').replace(')', '%29')})" for name in names)


def _layer_table(layer: str, rows: list[EntryOutcome]) -> list[str]:
    lines = [f"#### {layer}", "", "| Entry | Features | Problem | Links |", "| --- | ---: | --- | --- |"]
    for row in rows:
        features = f"{row.feature_count:,}" if row.feature_count is not None else "–"
        problem = f"❌ {_cell(row.problem)}" if row.problem else "✅"
        lines.append(f"| {_cell(row.key)} | {features} | {problem} | {_links(row.links) or '–'} |")
    return [*lines, ""]


def results_comment(
    job_key: str, head_sha: str, plan: JobPlan, outcomes: Iterable[EntryOutcome], run_url: str | None = None
) -> str:
    """The results comment's markdown (with `RESULTS_MARKER`): a table per layer, invalid and removed files.

    Planned entries without an outcome (the run stopped early) are listed as having no result. Cut at a line
    boundary with a note when over GitHub's limit.
    """
    outcomes = list(outcomes)
    seen = {(outcome.layer, outcome.key) for outcome in outcomes}
    rows = outcomes + [
        EntryOutcome(entry.layer, entry.partition_key, problem="no result (the run did not finish this entry)")
        for entry in plan.entries
        if (entry.layer, entry.partition_key) not in seen
    ]
    state, description = final_status(rows, plan)
    mark = {"success": "✅", "failure": "❌"}.get(state, "⚠️")
    lines = [
        RESULTS_MARKER,
        f"### {mark} oa-dagster check `{_cell(job_key)}` at {_cell(head_sha[:SHORT_SHA])}",
        "",
        _cell(description) + (f" · [run]({run_url})" if run_url else ""),
        "",
    ]
    by_layer: dict[str, list[EntryOutcome]] = {}
    for row in rows:
        by_layer.setdefault(row.layer, []).append(row)
    for layer in [*LAYERS, *sorted(set(by_layer) - set(LAYERS))]:
        if by_layer.get(layer):
            lines += _layer_table(layer, by_layer[layer])
    if plan.invalid:
        lines += ["#### Invalid source files", ""]
        for path, errors in plan.invalid.items():
            lines.append(f"- {_cell(path)}")
            lines += [f"  - {_cell(error)}" for error in errors]
        lines.append("")
    if plan.removed:
        lines += ["#### Removed source files", "", *[f"- {_cell(path)}" for path in plan.removed], ""]
    notes = []
    if plan.unchanged:
        notes.append(f"{plural(plan.unchanged, 'entry')} unchanged")
    if plan.skipped:
        notes.append(f"{plural(len(plan.skipped), 'entry')} marked `skip` not run")
    if notes:
        lines += [", ".join(notes) + ".", ""]
    return _truncate("\n".join(lines).rstrip() + "\n", run_url)


def _truncate(body: str, run_url: str | None, limit: int = COMMENT_LIMIT) -> str:
    """`body` within `limit` characters, cut at a line boundary with a note saying so."""
    if len(body) <= limit:
        return body
    note = "\n\n_The results were cut to fit GitHub's comment size limit" + (
        f"; see [the run]({run_url}) for all of them._\n" if run_url else "._\n"
    )
    cut = body[: max(0, limit - len(note))]
    if "\n" in cut:
        cut = cut[: cut.rindex("\n")]
    return cut + note
