"""Processing and publishing one layer entry, outside Dagster: download, conform, publish, keep what the UI needs.

A layer run calls this once per partition from its worker thread; CI jobs will call it for the changed entries of
a pull request, publishing under `jobs/<job key>/` (`root`) so they never touch production pointers. It never
raises for a problem with the entry (a source problem, the store unreachable, a bug in one entry): the problem
is in the returned `EntryResult`, so one entry never stops the others. It writes nothing to the Dagster event
log: the entry's INFO lines go to its `log.txt`, and its warnings come back in `EntryResult.log_lines` for the
caller to record.
"""

from __future__ import annotations

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

from oa_dagster.process import RunState, run_entry
from oa_dagster.sources import LayerEntry, SourceInvalid, has_coverage

from .catalog import entry_from_catalog
from .publishing import PublishedRun, publish_run
from .store import OutputStore
from .store_cleanup import WORK_FOLDER_PREFIX  # + the pid: the cleanup spares a live process's folder

NOT_IN_CATALOG = "Source is not in the catalog"
UNEXPECTED_ERROR = "Could not process or publish the entry"
TRANSIENT_PROBLEMS = frozenset({"Could not download source data"})  # worth a second attempt in the same run
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

    @property
    def has_output(self) -> bool:
        return bool(self.published and self.published.file_keys.get("output"))

    @property
    def skipped(self) -> bool:
        return bool(self.state and self.state.skipped)

    @property
    def worth_retrying(self) -> bool:
        """No output because the download failed: a server's hiccup may be over after the other entries."""
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
) -> EntryResult:
    """Run one entry of the stored `catalog` and publish it as run `run_id`; see the module docstring.

    `root` prefixes every store key (a CI job's `store_layout.job_prefix(key)`); `cancelled` stops the entry
    in hand at its next progress callback.
    """
    try:
        entry = entry_from_catalog(catalog, layer, key)
        coverage_ok = has_coverage(catalog["sources"][entry.source_key]["data"])
        version = catalog["entries"][layer][key]["version"]
    except (KeyError, SourceInvalid, LookupError) as exc:
        return EntryResult(layer, key, source_problem=NOT_IN_CATALOG, problem_detail=str(exc))
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
            root=root.strip("/") + "/" if root.strip("/") else "",
            cancelled=cancelled,
        )
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
        published = publish_run(
            store,
            state.to_dict(),
            work,
            run_id,
            entry_key=entry.key,
            entry_version=version,
            root=root,
            max_drop=options.max_drop,
        )
        rows, preview = _read_sample(work, state.files)
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
        )


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
