"""Processing and publishing one layer entry, outside Dagster: download, conform, publish, keep what the UI needs.

A layer run calls this once per partition from its worker thread; the `ci_job` asset calls it for the changed
entries of a pull request or push, publishing under `jobs/<job key>/` (`root`) so they never touch production
pointers. It never raises for a problem with the entry (a source problem, the store unreachable, a bug in one
entry): the problem is in the returned `EntryResult`, so one entry never stops the others. It writes nothing to
the Dagster event log: the entry's INFO lines go to its `log.txt`, and its warnings come back in
`EntryResult.log_lines` for the caller to record.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import logging
import os
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import oa_dagster
from oa_dagster.conform.fields import OUTPUT_ATTRIBUTES
from oa_dagster.process import RunState, run_entry
from oa_dagster.sources import LayerEntry, SourceInvalid, has_coverage

from . import store_layout as layout
from .catalog import entry_from_catalog
from .change_detection import (
    DEFAULT_FULL_REFRESH_DAYS,
    RefreshPlan,
    RefreshPolicy,
    caught_lying,
    distrust,
    plan_refresh,
    record_lie,
)
from .publishing import PublishedRun, latest_good, publish_run
from .quality_gate import GateDecision
from .store import OutputStore, get_json, put_json
from .store_cleanup import WORK_FOLDER_PREFIX  # + the pid: the cleanup spares a live process's folder
from .store_errors import OutputStoreUnavailable

NOT_IN_CATALOG = "Source is not in the catalog"
UNEXPECTED_ERROR = "Could not process or publish the entry"
STORE_UNAVAILABLE = "Output store unavailable"  # an S3 outage outlasted the client's retries
# worth a second attempt in the same run: a server's hiccup may be over after the other entries
TRANSIENT_PROBLEMS = frozenset({"Could not download source data", STORE_UNAVAILABLE})
SAMPLE_ROWS = 10
# The UI cannot show a file:// image: a local store's small previews travel inline (the metadata decides).
INLINE_PREVIEW_BYTES = 48_000

LogLine = tuple[int, str]  # (logging level, message prefixed with the entry key)


class Cancelled(BaseException):
    """Raised inside an entry's processing once its caller stopped waiting (a terminated run).

    A BaseException: nothing that catches errors to record them as a source problem may swallow it.
    """


def raise_if_cancelled(cancelled: threading.Event) -> Callable[..., None]:
    """A progress callback for `run_entry` that stops the entry, removing its temporary files, once cancelled."""

    def progress(*_: Any) -> None:
        if cancelled.is_set():
            raise Cancelled()

    return progress


@dataclass(frozen=True)
class EntryOptions:
    """How to process an entry: plain values (the Dagster resource `ProcessingSettings.entry_options()` makes one)."""

    work_root: Path  # each entry gets an `oa-run-<pid>-*` folder under it, removed once published
    preview: bool = True
    fetch_options: Any = None  # oa_dagster.fetch.FetchOptions; None = defaults
    max_drop: float = 0.5  # the quality gate: hold a run that loses more than this share of its features
    full_refresh_days: float = DEFAULT_FULL_REFRESH_DAYS  # change detection: an older output is processed again

    def refresh_policy(self, *, force_full: bool = False) -> RefreshPolicy:
        """How a set run treats unchanged entries (`process_entry(refresh=...)`)."""
        return RefreshPolicy(self.full_refresh_days, force_full)


@dataclass(frozen=True)
class EntryResult:
    """What became of one entry: its run state, where it was published, and what its event needs.

    `state` is None when the entry never ran (not in the catalog) or its processing raised; `published` is None
    when it was not published. `source_problem` / `problem_detail` are the state's, or what stopped the entry.
    """

    layer: str
    key: str  # the partition key, `<source key>/<entry name>`
    entry_version: str = ""  # the catalog's hash of the entry's JSON and the engine version
    entry: LayerEntry | None = None
    state: RunState | None = None
    published: PublishedRun | None = None
    source_problem: str | None = None
    problem_detail: str | None = None
    sample_rows: tuple[dict[str, str], ...] = ()  # the output's first rows, read before the work folder goes
    preview_png: bytes | None = None  # the preview, when small enough to show inline
    publish_seconds: float = 0.0
    log_lines: tuple[LogLine, ...] = ()  # warnings and errors for the run's log
    # change detection (`process_entry(refresh=...)`; empty for a plain run):
    unchanged_since: str = ""  # the run whose output was carried over: nothing downloaded or converted
    change_signal: str = ""  # what the upstream answered (`HTTP 304 Not Modified (ETag "v1")`, `changed: ...`)
    refresh: str = ""  # why the entry was processed in full although it could have been carried over
    validators_distrusted: bool = False  # this run caught the upstream changing data under the same validators

    @property
    def unchanged(self) -> bool:
        return bool(self.unchanged_since)

    @property
    def has_output(self) -> bool:
        return bool(self.published and self.published.file_keys.get("output"))

    @property
    def skipped(self) -> bool:
        return bool(self.state and self.state.skipped)

    @property
    def worth_retrying(self) -> bool:
        """No output because the download failed or the store was unavailable: the outage may be over after the
        other entries."""
        return not self.has_output and self.source_problem in TRANSIENT_PROBLEMS

    def after(self, earlier_lines: tuple[LogLine, ...]) -> EntryResult:
        """This (second) attempt, keeping the warnings of the first one before its own."""
        return dataclasses.replace(self, log_lines=earlier_lines + self.log_lines)


class EntryWarnings(logging.Handler):
    """Keeps an entry's warnings and errors, prefixed with its key, for the caller to record.

    Only WARNING and above: in a Dagster run each line recorded is an event-log write; INFO stays in `log.txt`.
    """

    def __init__(self, key: str) -> None:
        super().__init__(logging.WARNING)
        self.key = key
        self.lines: list[LogLine] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelno, f"{self.key}: {record.getMessage()}"))


def entry_logger(warnings: EntryWarnings) -> logging.Logger:
    """What `run_entry` forwards to: a logger passing only WARNING and above on to `warnings`."""
    logger = logging.Logger(f"oa_dagster.entry.{warnings.key}", logging.WARNING)  # not registered: no global state
    logger.propagate = False
    logger.addHandler(warnings)
    return logger


@dataclass(frozen=True)
class EntryCheck:
    """What change detection found out about one entry before processing it (`check_entry`).

    `carried_output` is the entry's latest good output when it is unchanged (carried over), as plain data
    (`carried_result` builds its result). Otherwise the plan and the upstream's answer go on to the full
    processing, which judges the upstream's honesty with them.
    """

    plan: RefreshPlan
    pointer: dict[str, Any] | None = None
    unchanged: bool = False  # what the upstream said (also when the entry is processed anyway)
    signal: str = ""
    keep: dict[str, Any] = dataclasses.field(default_factory=dict)  # learnt about the server, kept with the output
    carried_output: dict[str, Any] | None = None  # `carried_output`'s record
    seconds: float = 0.0
    size: Any = None  # fetch.upstream.UpstreamSize, when the upstream's answer told it (planning packs by it)


def _root_prefix(root: str) -> str:
    return root.strip("/") + "/" if root.strip("/") else ""


def check_entry(
    catalog: dict[str, Any],
    layer: str,
    key: str,
    store: OutputStore,
    options: EntryOptions,
    policy: RefreshPolicy,
    *,
    root: str = "",
    answer: Any = None,
) -> EntryCheck:
    """Whether the entry may be carried over from its latest good output (no download, no conform).

    Safe to run for many entries at once (threads): it reads the store and asks the upstream, writing nothing.
    Never raises: any trouble means "process it". `answer` (a `fetch.upstream.UpstreamAnswer`) is what the
    upstream already said when the set was planned: then it is not asked again.
    """
    from oa_dagster.fetch import FetchOptions
    from oa_dagster.fetch.upstream import probe_upstream

    started = time.perf_counter()
    prefix = _root_prefix(root)
    try:
        entry = entry_from_catalog(catalog, layer, key)
        version = catalog["entries"][layer][key]["version"]
        pointer = latest_good(store, layer, key, root=prefix)
        plan = plan_refresh(
            pointer,
            entry_version=version,
            engine_version=str(catalog.get("engine_version") or oa_dagster.__version__),
            policy=policy,
            distrusted=distrust(store, layer, key, root=prefix) if pointer else None,
        )
        if not plan.probe:
            return EntryCheck(plan, pointer, seconds=time.perf_counter() - started)
        assert pointer is not None
        if answer is None:
            answer = probe_upstream(entry, pointer.get("upstream"), options.fetch_options or FetchOptions())
        check = EntryCheck(plan, pointer, answer.unchanged, answer.signal, answer.keep, size=answer.size)
        if plan.may_carry_over and answer.unchanged:
            output = carried_output(entry, version, pointer, answer.signal, store)
            check = dataclasses.replace(check, carried_output=output)
        return dataclasses.replace(check, seconds=time.perf_counter() - started)
    except Exception as exc:  # a store hiccup, a bug: never carry over on doubt
        plan = RefreshPlan(False, False, f"change detection failed ({type(exc).__name__}: {exc})")
        return EntryCheck(plan, seconds=time.perf_counter() - started)


def carried_output(
    entry: LayerEntry, version: str, pointer: dict[str, Any], signal: str, store: OutputStore
) -> dict[str, Any] | None:
    """The latest good output as this set's output for the entry, read back from the store (None if incomplete).

    Plain JSON data, not an `EntryResult`: a set's planning keeps it for the `set_launcher` sensor, which builds
    the entry's events from it (`carried_result`) while the set's runs work, so the planning pays no event
    building nor Dagster serializer for the entries it carries over.
    """
    files = dict(pointer.get("files") or {})
    manifest = get_json(store, f"{pointer['prefix']}/{layout.MANIFEST}")
    stored_state = get_json(store, files["state"]) if files.get("state") else None
    if manifest is None or stored_state is None or not files.get("output"):
        return None
    preview = None
    preview_key = files.get("preview")
    size = (pointer.get("sizes") or {}).get("preview") or 0
    if preview_key and size <= INLINE_PREVIEW_BYTES and store.url(preview_key).startswith("file:"):
        preview = base64.b64encode(store.get_bytes(preview_key)).decode()  # only a local store's shows inline
    return {
        "entry": {"source": entry.source_key, "layer": entry.layer, "name": entry.name, "index": entry.index},
        "raw": entry.raw,
        "version": version,
        "pointer": pointer,
        "manifest": manifest,
        "state": stored_state,
        "preview": preview,
        "signal": signal,
    }


def carried_result(output: dict[str, Any]) -> EntryResult:
    """The `EntryResult` of a carried-over entry from its `carried_output` record: nothing downloaded or converted.

    Its `LayerEntry` serves the event's metadata (licence, attribution, website) only: it has no source directory
    and never fetches.
    """
    described = output["entry"]
    entry = LayerEntry(described["source"], described["layer"], described["name"], described["index"], output["raw"])
    state = RunState.from_dict(output["state"])
    state.cache_seconds = state.process_seconds = 0.0  # nothing downloaded or converted this time
    pointer, manifest = output["pointer"], output["manifest"]
    files = dict(pointer.get("files") or {})
    published = PublishedRun(pointer["prefix"], manifest, GateDecision(True), pointer, files)
    return EntryResult(
        entry.layer,
        entry.key,
        output["version"],
        entry,
        state,
        published,
        sample_rows=tuple(_in_output_order(entry.layer, row) for row in manifest.get("output_sample") or ()),
        preview_png=base64.b64decode(output["preview"]) if output["preview"] else None,
        unchanged_since=str(pointer.get("run_id") or ""),
        change_signal=output["signal"],
    )


def _in_output_order(layer: str, row: dict[str, str]) -> dict[str, str]:
    """A sample row read back from a manifest (stored with sorted keys) in the output's column order again, so a
    carried-over entry's sample table shows its columns as its run's did."""
    order = ("hash", *OUTPUT_ATTRIBUTES.get(layer, ()))
    return {**{c: row[c] for c in order if c in row}, **{c: v for c, v in row.items() if c not in order}}


def remember_probe(store: OutputStore, check: EntryCheck, layer: str, key: str, root: str = "") -> None:
    """Keep what the probe learnt about the server (`conditional: false`: use HEAD) with the carried-over output."""
    pointer = check.pointer or {}
    upstream = dict(pointer.get("upstream") or {})
    if check.keep and any(upstream.get(k) != v for k, v in check.keep.items()):
        put_json(store, root + layout.latest_key(layer, key), {**pointer, "upstream": {**upstream, **check.keep}})


def process_entry(
    catalog: dict[str, Any],
    layer: str,
    key: str,
    store: OutputStore,
    options: EntryOptions,
    *,
    run_id: str,
    root: str = "",
    cancelled: threading.Event | None = None,
    refresh: RefreshPolicy | None = None,
    check: EntryCheck | None = None,
) -> EntryResult:
    """Run one entry of the stored `catalog` and publish it as run `run_id`; see the module docstring.

    `root` prefixes every store key (a CI job's `store_layout.job_prefix(key)`); `cancelled` stops the entry
    in hand at its next progress callback. With `refresh` (set runs) an entry whose upstream has not changed is
    carried over from its latest good output instead (`check_entry`; `check` when the caller already ran it);
    without it (CI jobs, a run launched by hand) every entry is processed in full.
    """
    try:
        entry = entry_from_catalog(catalog, layer, key)
        coverage_ok = has_coverage(catalog["sources"][entry.source_key]["data"])
        version = catalog["entries"][layer][key]["version"]
    except (KeyError, SourceInvalid, LookupError) as exc:
        return EntryResult(layer, key, source_problem=NOT_IN_CATALOG, problem_detail=str(exc))
    if refresh is not None and check is None:
        check = check_entry(catalog, layer, key, store, options, refresh, root=root)
    if check is not None and check.carried_output is not None:
        remember_probe(store, check, layer, key, _root_prefix(root))
        return carried_result(check.carried_output)
    warnings = EntryWarnings(key)
    try:
        result = _process_and_publish(
            entry,
            version,
            coverage_ok,
            store,
            options,
            entry_logger(warnings),
            run_id=run_id,
            root=_root_prefix(root),
            cancelled=cancelled,
            check=check,
        )
    except OutputStoreUnavailable as exc:  # the store's outage, not the entry's problem: no traceback, a clear cause
        warnings.lines.append((logging.ERROR, f"{key}: {exc}"))
        result = EntryResult(layer, key, version, entry, source_problem=STORE_UNAVAILABLE, problem_detail=str(exc))
    except Exception as exc:
        detail = f"unexpected {type(exc).__name__} while processing or publishing: {exc}"
        warnings.lines.append((logging.ERROR, f"{key}: {detail}\n{traceback.format_exc()}"))
        result = EntryResult(layer, key, version, entry, source_problem=UNEXPECTED_ERROR, problem_detail=detail)
    return dataclasses.replace(result, log_lines=tuple(warnings.lines))


def _process_and_publish(
    entry: LayerEntry,
    version: str,
    coverage_ok: bool,
    store: OutputStore,
    options: EntryOptions,
    log: logging.Logger,
    *,
    run_id: str,
    root: str,
    cancelled: threading.Event | None,
    check: EntryCheck | None = None,
) -> EntryResult:
    options.work_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{WORK_FOLDER_PREFIX}{os.getpid()}-", dir=options.work_root) as tmp:
        work = Path(tmp)
        state = run_entry(
            entry,
            work,
            preview=options.preview,
            fetch_options=options.fetch_options,
            coverage_ok=coverage_ok,
            log=log,
            progress=raise_if_cancelled(cancelled) if cancelled is not None else None,
        )
        started = time.perf_counter()
        if check is not None and check.keep and state.upstream:
            state.upstream.update(check.keep)  # e.g. the server ignores conditional requests: HEAD next time
        refresh = _why_processed(check)
        distrusted = False
        if check is not None and caught_lying(check.plan, check.unchanged, check.pointer, state.fingerprint):
            assert check.pointer is not None
            record_lie(
                store,
                entry.layer,
                entry.key,
                run_id=run_id,
                signal=check.signal,
                before=check.pointer.get("fingerprint"),
                now=state.fingerprint,
                root=root,
            )
            distrusted = True
            log.warning(
                "the upstream said unchanged (%s) but sent different data (md5 %s, was %s): its validators are "
                "no longer trusted, the entry is processed in full from now on",
                check.signal,
                state.fingerprint,
                check.pointer.get("fingerprint"),
            )
        rows, preview = _read_sample(work, state.files)
        published = publish_run(
            store,
            state.to_dict(),
            work,
            run_id,
            entry_key=entry.key,
            entry_version=version,
            root=root,
            max_drop=options.max_drop,
            sample_rows=list(rows),
            refresh=refresh,
        )
        return EntryResult(
            entry.layer,
            entry.key,
            version,
            entry,
            state,
            published,
            state.source_problem,
            state.problem_detail,
            rows,
            preview,
            time.perf_counter() - started,
            change_signal=check.signal if check is not None else "",
            refresh=refresh,
            validators_distrusted=distrusted,
        )


def _why_processed(check: EntryCheck | None) -> str:
    """In words, for the manifest and the materialization: why change detection did not carry the entry over."""
    if check is None:
        return ""
    if check.plan.reason:
        return check.plan.reason
    if check.unchanged:  # unchanged, yet the stored output could not be read back
        return "the latest good output could not be read back from the store"
    return f"upstream {check.signal}" if check.signal.startswith("changed") else f"upstream: {check.signal}"


def _read_sample(work: Path, files: dict[str, str | None]) -> tuple[tuple[dict[str, str], ...], bytes | None]:
    """What the entry's event shows from the run folder before it is removed: sample rows, a small preview."""
    rows: list[dict[str, str]] = []
    if files.get("output"):
        with (work / str(files["output"])).open("rb") as lines:
            for line in itertools.islice(lines, SAMPLE_ROWS):
                props = json.loads(line).get("properties") or {}
                rows.append({k: "" if v is None else str(v) for k, v in props.items()})
    preview = None
    if files.get("preview"):
        path = work / str(files["preview"])
        if path.stat().st_size <= INLINE_PREVIEW_BYTES:
            preview = path.read_bytes()
    return tuple(rows), preview
