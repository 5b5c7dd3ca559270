"""What a CI job runs: the layer entries a pull request or push adds or changes, and the files it breaks.

No Dagster and no checkout: the changed `sources/**.json` files come from the GitHub API and are fetched one by
one at the head (and base) commit, then validated with the platform's strict rule (no local tree, so a `data`
without a URL scheme, a `file://` URL or an absolute path is refused). An entry runs when it is new or its
version, computed exactly as the catalog computes it, differs from the same file's entry at the base.

Every problem found while planning one file (a schema error, a URL that does not parse, text that is not UTF-8, a
path with `.` or `..` segments) is that file's error in the plan, never an exception that leaves the pull request
without a status. The files are fetched concurrently (`concurrency` calls at once) and planning stops at a
`deadline` (`PlanningTimedOut`), so a sensor tick can bound its own time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from oa_dagster import __version__
from oa_dagster.platform.publishing import entry_hash
from oa_dagster.sources.load import SUFFIX, parse_source_json, source_from_dict
from oa_dagster.sources.local_data import SOURCES_DIR, data_errors
from oa_dagster.sources.model import LayerEntry, Source, SourceInvalid

from .github_api import ChangedFile, GitHubClient, GitHubError, GitHubUnavailable, path_problem

JOB_KINDS = ("pr", "push")
CONCURRENCY = 8  # GitHub calls at once while planning one job (GitHub asks clients to keep this small)
SHORT_SHA = 7
_SHA = re.compile(r"[0-9a-f]{7,64}")
_PREFIX = SOURCES_DIR + "/"


def job_key(kind: str, sha: str, number: int | None = None) -> str:
    """`pr-<number>-<sha7>` or `push-<sha7>`: the CI job's dynamic partition key and its store root's name.

    Validated because the key becomes a partition key and a store prefix: a bad sha or number must fail here,
    not as a strange path later.
    """
    sha = sha.strip().lower()
    if not _SHA.fullmatch(sha):
        raise ValueError(f"not a commit sha: {sha!r}")
    if kind == "pr":
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise ValueError(f"a pull request job needs a positive pull request number, not {number!r}")
        return f"pr-{number}-{sha[:SHORT_SHA]}"
    if kind == "push":
        if number is not None:
            raise ValueError("a push job has no pull request number")
        return f"push-{sha[:SHORT_SHA]}"
    raise ValueError(f"job kind {kind!r} is not one of {', '.join(JOB_KINDS)}")


class PlanningTimedOut(Exception):
    """Planning passed its deadline; nothing of the job was reported."""


def is_source_file(path: str) -> bool:
    """Whether a repository path is a source file: `sources/**.json` (at any depth below the top `sources/`).
    Says nothing about whether the path is safe to use: see `path_problem`."""
    return path.startswith(_PREFIX) and path.endswith(SUFFIX) and len(path) > len(_PREFIX) + len(SUFFIX)


def printable_path(path: str) -> str:
    """`path` as text that can be stored and sent (a lone surrogate escaped), for messages and plan keys."""
    return path.encode("utf-8", "backslashreplace").decode("utf-8")


def source_key_of(path: str) -> str:
    """The source key of `sources/<key>.json`, relative to the top `sources/` as the catalog keys it."""
    return path[len(_PREFIX) : -len(SUFFIX)]


@dataclass(frozen=True)
class PlannedEntry:
    """One layer entry a CI job runs, with the upgraded source JSON it is rebuilt from in the run."""

    layer: str
    partition_key: str
    source_key: str
    name: str
    version: str
    path: str  # the file at the head commit, for messages
    source_data: Mapping[str, Any] = field(repr=False, compare=False)

    def layer_entry(self) -> LayerEntry:
        """The `LayerEntry` to process, validated again under the same strict rule as when planned."""
        return _strict_source(self.source_data, self.source_key).entry(self.layer, self.name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "partition_key": self.partition_key,
            "source_key": self.source_key,
            "name": self.name,
            "version": self.version,
            "path": self.path,
            "source_data": dict(self.source_data),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PlannedEntry:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__})


@dataclass(frozen=True)
class JobPlan:
    """Everything a CI job needs to know about what changed; `entries` is what it runs.

    `invalid` maps a file path to its `<json path>: <message>` errors (any makes the job fail); `removed` lists
    source files the change deletes (or renames out of `sources/`); `unchanged` counts entries of the changed
    files whose version equals the base's; `skipped` lists new or changed entries marked `skip`, not run.
    """

    head_sha: str
    base_sha: str | None
    entries: tuple[PlannedEntry, ...] = ()
    invalid: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    removed: tuple[str, ...] = ()
    unchanged: int = 0
    skipped: tuple[str, ...] = ()
    files: tuple[str, ...] = ()  # the changed source files considered at the head

    @property
    def empty(self) -> bool:
        """Nothing to run and nothing wrong: the job succeeds at once."""
        return not self.entries and not self.invalid

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for a run's config or the job's record in the store."""
        return {
            "head_sha": self.head_sha,
            "base_sha": self.base_sha,
            "entries": [entry.to_dict() for entry in self.entries],
            "invalid": {path: list(errors) for path, errors in self.invalid.items()},
            "removed": list(self.removed),
            "unchanged": self.unchanged,
            "skipped": list(self.skipped),
            "files": list(self.files),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobPlan:
        return cls(
            head_sha=data["head_sha"],
            base_sha=data.get("base_sha"),
            entries=tuple(PlannedEntry.from_dict(entry) for entry in data.get("entries") or ()),
            invalid={path: tuple(errors) for path, errors in (data.get("invalid") or {}).items()},
            removed=tuple(data.get("removed") or ()),
            unchanged=int(data.get("unchanged") or 0),
            skipped=tuple(data.get("skipped") or ()),
            files=tuple(data.get("files") or ()),
        )


def _strict_source(data: Any, key: str) -> Source:
    """A source validated as the platform loads an archive: no tree, so scheme-less `data` is refused too."""
    source = source_from_dict(data, key, allow_local_files=False)
    if errors := data_errors(
        source.data, source_dir=None, sources_root=None, allow_local_files=False, require_tree=True
    ):
        raise SourceInvalid(key, errors)
    return source


def _load(client: GitHubClient, repo: str, path: str, ref: str) -> Source | None:
    """The validated source at `ref`, None when the file is not there; `SourceInvalid` when it is no source.

    An unreadable file (over the size cap, refused by GitHub) is reported as invalid; GitHub being unavailable
    is not the file's fault and propagates, so the job errors instead of failing the contributor.
    """
    key = source_key_of(path)
    try:
        raw = client.file_at(repo, path, ref)
    except GitHubUnavailable:
        raise
    except GitHubError as error:
        raise SourceInvalid(key, [f"$: cannot read the file at {ref[:SHORT_SHA]}: {error.message}"]) from None
    if raw is None:
        return None
    return _strict_source(parse_source_json(raw, key), key)


def _versions(source: Source | None) -> dict[tuple[str, str], str]:
    """(layer, entry name) -> version, the catalog's rule; empty for no source."""
    if source is None:
        return {}
    return {(entry.layer, entry.name): entry_hash(entry.raw, __version__) for entry in source.entries}


@dataclass
class _FilePlan:
    """What one changed file adds to the plan."""

    path: str
    entries: list[PlannedEntry] = field(default_factory=list)
    errors: tuple[str, ...] = ()
    skipped: list[str] = field(default_factory=list)
    unchanged: int = 0


def _plan_file(
    client: GitHubClient,
    repo: str,
    path: str,
    base_path: str | None,
    head_sha: str,
    base_sha: str | None,
    check_time: Callable[[], None],
) -> _FilePlan:
    """One file's entries to run, or its errors: any problem with its content is the file's, never raised.
    GitHub being unavailable and the deadline are not the file's fault and propagate."""
    planned = _FilePlan(printable_path(path))
    try:
        check_time()
        head = _load(client, repo, path, head_sha)
        if head is None:
            planned.errors = (f"$: the file is not in commit {head_sha[:SHORT_SHA]} although the change lists it",)
            return planned
        base: Source | None = None
        if base_path is not None and base_sha:
            check_time()
            try:
                base = _load(client, repo, base_path, base_sha)
            except (SourceInvalid, ValueError, TypeError, AttributeError, LookupError, RecursionError):
                base = None  # an invalid base has no versions to compare with: everything is new
        before = _versions(base)
        for entry in head.entries:
            version = entry_hash(entry.raw, __version__)
            if before.get((entry.layer, entry.name)) == version:
                planned.unchanged += 1
            elif entry.skip:
                planned.skipped.append(f"{entry.layer}/{entry.key}")
            else:
                planned.entries.append(
                    PlannedEntry(entry.layer, entry.key, head.key, entry.name, version, path, head.data)
                )
    except (GitHubUnavailable, PlanningTimedOut):
        raise
    except SourceInvalid as exc:
        planned.errors = tuple(exc.errors)
    except (ValueError, TypeError, AttributeError, LookupError, RecursionError) as exc:
        # a bug in validation meeting hostile input: still this file's problem, said in its words
        planned.errors = (f"$: the file could not be checked: {type(exc).__name__}: {exc}",)
    if planned.errors:
        planned.entries, planned.skipped, planned.unchanged = [], [], 0
    return planned


def _considered(files: list[ChangedFile]) -> tuple[dict[str, str | None], list[str], dict[str, tuple[str, ...]]]:
    """(head path -> base path to compare with, removed source files, refused paths with their error)."""
    removed: list[str] = []
    refused: dict[str, tuple[str, ...]] = {}
    considered: dict[str, str | None] = {}
    for changed in files:
        previous = changed.previous_filename
        named = [changed.filename] + ([previous] if previous else [])
        if any(is_source_file(path) or path.startswith(_PREFIX) for path in named):
            problems = [(path, problem) for path in named if (problem := path_problem(path))]
            if problems:  # refused before any API call: a server would resolve it to another file or endpoint
                path, problem = problems[0]
                refused[printable_path(changed.filename)] = (f"$: path {printable_path(path)!r} refused: {problem}",)
                continue
        if changed.status == "removed":
            if is_source_file(changed.filename):
                removed.append(changed.filename)
            continue
        if (
            changed.status == "renamed"
            and previous
            and is_source_file(previous)
            and not is_source_file(changed.filename)
        ):
            removed.append(previous)  # moved out of sources/: gone from the catalog
            continue
        if not is_source_file(changed.filename):
            continue
        if changed.status == "renamed":
            base_path = previous if previous and is_source_file(previous) else None
        elif changed.status == "added" or changed.status == "copied":
            base_path = None
        else:
            base_path = changed.filename
        considered.setdefault(changed.filename, base_path)
    return considered, removed, refused


def plan_job(
    client: GitHubClient,
    repo: str,
    *,
    head_sha: str,
    base_sha: str | None,
    files: list[ChangedFile],
    deadline: float | None = None,
    concurrency: int = CONCURRENCY,
    clock: Callable[[], float] = time.monotonic,
) -> JobPlan:
    """The plan of a pull request or push from its changed files (`pull_request_files` / `compare_files`).

    Entries are matched to the base by layer and entry name within the same file (a renamed file is compared
    with its previous name), so a pure rename runs nothing; a base file that is missing or invalid makes every
    entry new. A path under `sources/` with an empty, `.` or `..` segment is refused (an invalid file) before any
    API call. Raises `GitHubUnavailable` when GitHub cannot be read, `PlanningTimedOut` past `deadline` (a
    `clock()` value).
    """
    considered, removed, refused = _considered(files)

    def check_time() -> None:
        if deadline is not None and clock() > deadline:
            raise PlanningTimedOut(f"planning passed its deadline with {len(considered)} files to read")

    def plan_one(item: tuple[str, str | None]) -> _FilePlan:
        return _plan_file(client, repo, item[0], item[1], head_sha, base_sha, check_time)

    pool = ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(considered))), thread_name_prefix="ci-plan")
    try:
        planned = list(pool.map(plan_one, considered.items()))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    invalid = dict(refused)
    invalid.update((file.path, file.errors) for file in planned if file.errors)
    return JobPlan(
        head_sha=head_sha,
        base_sha=base_sha,
        entries=tuple(entry for file in planned for entry in file.entries),
        invalid=invalid,
        removed=tuple(dict.fromkeys(printable_path(path) for path in removed)),
        unchanged=sum(file.unchanged for file in planned),
        skipped=tuple(name for file in planned for name in file.skipped),
        files=tuple(printable_path(path) for path in [*considered, *refused]),
    )
