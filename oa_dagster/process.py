"""One run end to end: skip check, acceptance tests, download, unpack, conform, sample, preview, state.

Shared by the CLI, the Dagster assets and CI jobs. It never raises for a source problem: every outcome,
good or bad, ends in `state.json` and a returned `RunState`, so one broken entry never stops others.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oa_dagster import __version__
from oa_dagster.errors import MISSING_COVERAGE, AcceptanceTestFailed, MissingConform, SourceProblem, SourceSaysSkip
from oa_dagster.platform.memory_peak import peak_mb, reset_peak
from oa_dagster.sources.model import LayerEntry

if TYPE_CHECKING:
    from oa_dagster.conform.limits import ConformLimits

ProgressCallback = Callable[[str, int, "int | None"], None]
FILE_NAMES = {"output": "out.geojson", "sample": "sample.json", "preview": "preview.png", "log": "log.txt"}


@dataclass
class RunState:
    """The outcome of one run; `to_dict()` is `state.json`."""

    source: str
    layer: str
    name: str
    skipped: bool = False
    feature_count: int | None = None
    features_without_geometry: int = 0
    features_out_of_range: int = 0  # left out: coordinates outside lon/lat range (or not finite) in WGS84
    fingerprint: str | None = None
    source_problem: str | None = None
    problem_detail: str | None = None
    tests_passed: bool | None = None
    cache_seconds: float = 0.0
    process_seconds: float = 0.0
    peak_memory_mb: float | None = None  # this entry's peak resident memory (`platform/memory_peak.py`)
    files: dict[str, str | None] = field(
        default_factory=lambda: dict.fromkeys(("output", "cache", "sample", "preview", "log"))
    )
    bbox: list[float] | None = None
    source_crs: str | None = None
    engine_version: str = __version__
    # the upstream's validators for this download (`Download.validators`): kept with the output so a later set
    # can ask the upstream whether anything changed (`fetch/upstream.py`); empty when it gave none
    upstream: dict[str, Any] = field(default_factory=dict)

    @property
    def has_output(self) -> bool:
        return self.files.get("output") is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "layer": self.layer,
            "name": self.name,
            "skipped": self.skipped,
            "feature_count": self.feature_count,
            "features_without_geometry": self.features_without_geometry,
            "fingerprint": self.fingerprint,
            "source_problem": self.source_problem,
            "problem_detail": self.problem_detail,
            "tests_passed": self.tests_passed,
            "cache_seconds": round(self.cache_seconds, 3),
            "process_seconds": round(self.process_seconds, 3),
            "files": dict(self.files),
            "features_out_of_range": self.features_out_of_range,
            "bbox": self.bbox,
            "source_crs": self.source_crs,
            "engine_version": self.engine_version,
            "upstream": dict(self.upstream),
            "peak_memory_mb": self.peak_memory_mb,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunState:
        """A stored `state.json` read back (an output carried over to a later set shows its state again)."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def _run_logger(output_dir: Path, entry: LayerEntry, parent: logging.Logger | None) -> tuple[logging.Logger, Any]:
    """A logger writing this run's `log.txt`, and forwarding to the caller's logger when given."""
    logger = logging.getLogger(f"oa_dagster.run.{id(output_dir)}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    handler = logging.FileHandler(output_dir / FILE_NAMES["log"], mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    if parent is not None:
        logger.addHandler(_Forward(parent))
    logger.info("oa-dagster %s: %s %s %s", __version__, entry.source_key, entry.layer, entry.name)
    return logger, handler


class _Forward(logging.Handler):
    def __init__(self, target: logging.Logger) -> None:
        super().__init__(logging.INFO)
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        self.target.log(record.levelno, record.getMessage())


def _check_before_download(entry: LayerEntry, state: RunState, log: logging.Logger) -> None:
    from oa_dagster.conform.acceptance import describe_failure, has_tests, run_acceptance_tests
    from oa_dagster.conform.select import check_format

    if entry.skip:
        raise SourceSaysSkip("the entry has skip: true")
    if has_tests(entry.tests):
        results = run_acceptance_tests(entry.layer, entry.name, entry.conform, entry.tests)
        state.tests_passed = all(r.passed for r in results)
        log.info("acceptance tests: %d of %d passed", sum(r.passed for r in results), len(results))
        failed = [r for r in results if not r.passed]
        if failed:
            raise AcceptanceTestFailed(describe_failure(failed[0]))
    if not entry.conform:
        raise MissingConform("the entry has no conform object")
    check_format(entry.conform.get("format"))


def _download_and_conform(
    entry: LayerEntry,
    output_dir: Path,
    workdir: Path,
    state: RunState,
    *,
    preview: bool,
    fetch_options: Any,
    conform_limits: ConformLimits | None,
    log: logging.Logger,
    progress: ProgressCallback | None,
) -> None:
    from oa_dagster.conform.engine import conform_file
    from oa_dagster.conform.preview import render_preview
    from oa_dagster.conform.select import select_input
    from oa_dagster.fetch import FetchOptions, fetch_entry, unpack

    options = fetch_options or FetchOptions()
    if progress is not None and options.progress is None:
        options = dataclasses.replace(options, progress=progress)  # the caller's options stay as they were
    started = time.perf_counter()
    try:
        download = fetch_entry(entry, workdir, options, log)
        state.fingerprint = download.fingerprint
        state.upstream = dict(download.validators)
        cache_name = download.path.name
        log.info(
            "downloaded %s (%s, md5 %s)%s",
            download.url,
            download.ext,
            download.fingerprint,
            " from the local cache" if download.from_cache else "",
        )
        if entry.protocol.lower() == "esri":
            files = [download.path]  # the dump is GeoJSON lines, whatever `format` the source names
        else:
            files = unpack(
                download.path,
                workdir / "unpacked",
                compression=entry.compression,
                conform_file=entry.conform.get("file"),
                limits=options,
            )
    finally:
        state.cache_seconds = time.perf_counter() - started
    started = time.perf_counter()
    partial = output_dir / (FILE_NAMES["output"] + ".partial")
    try:
        source_file = (
            files[0]
            if entry.protocol.lower() == "esri"
            else select_input(files, entry.conform.get("format"), entry.conform.get("file"))
        )
        log.info(
            "reading %s", source_file.relative_to(workdir) if source_file.is_relative_to(workdir) else source_file.name
        )

        def rows_done(rows: int) -> None:
            if progress:
                progress("conform", rows, None)

        result = conform_file(
            source_file,
            layer=entry.layer,
            conform=entry.conform,
            protocol=entry.protocol,
            fingerprint=download.fingerprint,
            out_path=partial,
            log=log,
            progress=rows_done,
            limits=conform_limits,
        )
        partial.replace(output_dir / FILE_NAMES["output"])
        state.files["output"] = FILE_NAMES["output"]
        state.feature_count = result.feature_count
        state.features_without_geometry = result.features_without_geometry
        state.features_out_of_range = result.features_out_of_range
        state.bbox = result.bbox
        state.source_crs = result.source_crs
        log.info(
            "wrote %d features (%d without geometry and %d outside lon/lat range left out)",
            result.feature_count,
            result.features_without_geometry,
            result.features_out_of_range,
        )
        (output_dir / FILE_NAMES["sample"]).write_text(json.dumps(result.sample, ensure_ascii=False))
        state.files["sample"] = FILE_NAMES["sample"]
        if preview and render_preview(result.preview, output_dir / FILE_NAMES["preview"]):
            state.files["preview"] = FILE_NAMES["preview"]
    finally:
        state.process_seconds = time.perf_counter() - started
        partial.unlink(missing_ok=True)  # a conform that failed half way leaves nothing behind
        if download.path.exists():
            shutil.move(download.path, output_dir / cache_name)
            state.files["cache"] = cache_name


def run_entry(
    entry: LayerEntry,
    output_dir: Path,
    *,
    preview: bool = True,
    fetch_options: Any = None,
    coverage_ok: bool = True,
    log: logging.Logger | None = None,
    progress: ProgressCallback | None = None,
    conform_limits: ConformLimits | None = None,
) -> RunState:
    """Process one layer entry into `output_dir` and return its state (also written as `state.json`).

    `conform_limits` (`conform.limits.ConformLimits`, defaults when None) bounds what the entry's patterns
    may cost and how many of its features may lie outside lon/lat range.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    for stale in (*FILE_NAMES.values(), "state.json", *(p.name for p in output_dir.glob("cache.*"))):
        (output_dir / stale).unlink(missing_ok=True)
    state = RunState(entry.source_key, entry.layer, entry.name)
    reset_peak()
    run_log, handler = _run_logger(output_dir, entry, log)
    state.files["log"] = FILE_NAMES["log"]
    workdir = Path(tempfile.mkdtemp(prefix="work-", dir=output_dir))
    try:
        _check_before_download(entry, state, run_log)
        _download_and_conform(
            entry,
            output_dir,
            workdir,
            state,
            preview=preview,
            fetch_options=fetch_options,
            conform_limits=conform_limits,
            log=run_log,
            progress=progress,
        )
        if not coverage_ok:
            state.source_problem = MISSING_COVERAGE
            state.problem_detail = "coverage has none of US Census, ISO 3166 or geometry"
            run_log.warning("%s: %s", MISSING_COVERAGE, state.problem_detail)
    except SourceProblem as problem:
        problem.locate(entry.source_key, entry.layer, entry.name)
        state.source_problem, state.problem_detail = problem.problem, problem.detail
        state.skipped = isinstance(problem, SourceSaysSkip)
        (run_log.info if state.skipped else run_log.error)("%s: %s", problem.problem, problem.detail)
    except Exception as exc:  # an engine bug must still leave a state naming the entry and the cause
        state.source_problem = "Could not conform source data"
        state.problem_detail = f"unexpected {type(exc).__name__}: {exc}"
        run_log.error("%s", state.problem_detail)
        run_log.debug("%s", traceback.format_exc())  # log.txt only: the forwarded log stays one line
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        state.peak_memory_mb = peak_mb()
        (output_dir / "state.json").write_text(json.dumps(state.to_dict(), indent=2, ensure_ascii=False) + "\n")
        run_log.removeHandler(handler)
        handler.close()
        for extra in list(run_log.handlers):
            run_log.removeHandler(extra)
    return state
