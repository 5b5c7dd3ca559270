"""The four layer assets: each partition is one layer entry, processed by `process.run_entry`.

One run may process several partitions (a range: sets pack small entries to keep Dagster's per-run cost
low). Each entry is recorded on its own: a materialization and check evaluations for an entry with output
(or skipped), an observation for a failed one. At the end the step fails, listing the failed entries and
their source problems, so exactly those partitions show as failed; the others stay materialized and a
failed entry's previous good materialization stays its latest.

Per-entry cost matters (thousands of small entries per set; every event is a database write): an entry's
INFO lines go to its own `log.txt` in the store (linked from its materialization), only its warnings and
errors are forwarded to the run's event log; the previous feature counts of all the run's entries are read
in two queries before processing, not one per entry; and entries are processed in a worker thread while the
step's thread writes the events of those done, so the writes overlap the next entry's download.

Every event write is retried on a lost database connection (`event_writes.py`); if the instance stays
unreachable, the run fails and is marked retryable, so the set's run-retry policy runs the batch again.
"""


import logging
import os
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

import dagster as dg

from oa_dagster.platform.cleanup import WORK_FOLDER_PREFIX  # + the pid: cleanup spares a live process's folder
from oa_dagster.platform.runs import publish_run
from oa_dagster.resources.processing import ProcessingSettings
from oa_dagster.resources.store import OutputStoreResource
from oa_dagster.sources.model import LAYERS

from .background import in_background, raise_if_cancelled
from .catalog import source_catalog
from .event_writes import LOG as WRITES_LOG
from .event_writes import InstanceUnreachable, write_retrying
from .layer_checks import check_specs, evaluate_checks
from .layer_metadata import entry_metadata, failure_metadata, read_sample
from .partitions import CATALOG_TAG, LAYER_PARTITIONS, SET_TAG

# A set runs weekly: an entry not refreshed for 8 days warns, 9 fails, so a stalled set shows in the UI.
FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(days=9), warn_window=timedelta(days=8))
TRANSIENT_PROBLEMS = {"Could not download source data"}
POOL = "oa_layer_runs"
RETRY_ON_FAILURE_TAG = "dagster/retry_on_asset_or_op_failure"
INSTANCE_LOST_TAG = "oa/instance_lost"  # "true": this run failed because the instance was unreachable


def _catalog(store: Any, catalog_id: str | None) -> dict[str, Any]:
    """The catalog the run was launched with (its tag), else the current one."""
    from oa_dagster.platform.catalog import load_stored_catalog

    catalog = (load_stored_catalog(store, catalog_id) if catalog_id else None) or load_stored_catalog(store)
    if catalog is None:
        raise dg.Failure("no source catalog in the output store: materialize source_catalog first")
    return catalog


def previous_counts(instance: dg.DagsterInstance, layer: str, keys_: list[str]) -> dict[str, int | None]:
    """The feature count of each key's latest materialization (None if none): two queries for the whole run."""
    latest = instance.get_latest_storage_id_by_partition(
        dg.AssetKey(layer), dg.DagsterEventType.ASSET_MATERIALIZATION, partitions=set(keys_))
    counts: dict[str, int | None] = dict.fromkeys(keys_)
    ids = list(latest.values())
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(layer), storage_ids=chunk), limit=len(chunk)).records
        for record in records:
            event = record.asset_materialization
            value = event.metadata.get("feature_count") if event is not None else None
            if event is not None and event.partition in counts and value is not None and value.value is not None:
                counts[event.partition] = int(value.value)
    return counts


class EntryWarnings(logging.Handler):
    """Keeps an entry's warnings and errors, prefixed with its key, for the step's thread to write to the run.

    Every line written is one event-log write; an entry's INFO lines stay in its `log.txt`.
    """

    def __init__(self, key: str) -> None:
        super().__init__(logging.WARNING)
        self.key = key
        self.lines: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelno, f"{self.key}: {record.getMessage()}"))


def entry_logger(warnings: EntryWarnings) -> logging.Logger:
    """What `run_entry` forwards to: a logger passing only WARNING and above on to `warnings`."""
    logger = logging.Logger(f"oa_dagster.entry.{warnings.key}", logging.WARNING)  # not registered: no global state
    logger.propagate = False
    logger.addHandler(warnings)
    return logger


def _worth_retrying(result: dict[str, Any]) -> bool:
    return not (result.get("files") or {}).get("output") and result.get("source_problem") in TRANSIENT_PROBLEMS


def process_partition(run_id: str, layer: str, key: str, catalog: dict[str, Any], store: Any,
                      processing: ProcessingSettings, cancelled: threading.Event | None = None) -> dict[str, Any]:
    """Run one entry and publish it; returns its state dict plus `published` (or the problem that stopped it).

    Runs in the step's worker thread, so it writes nothing to the event log: warnings come back in `log_lines`.
    An unexpected error (the store unreachable, a bad catalog) becomes this entry's problem, not the run's.
    """
    from oa_dagster.platform.catalog import entry_from_catalog
    from oa_dagster.sources import SourceInvalid, has_coverage

    try:
        entry = entry_from_catalog(catalog, layer, key)
        coverage_ok = has_coverage(catalog["sources"][entry.source_key]["data"])
    except (KeyError, SourceInvalid, LookupError) as exc:
        return {"source_problem": "Source is not in the catalog", "problem_detail": str(exc), "published": None}
    warnings = EntryWarnings(key)
    try:
        result = _process_and_publish(run_id, entry, coverage_ok, catalog, store, processing,
                                      entry_logger(warnings), cancelled)
    except Exception as exc:
        detail = f"unexpected {type(exc).__name__} while processing or publishing: {exc}"
        warnings.lines.append((logging.ERROR, f"{key}: {detail}\n{traceback.format_exc()}"))
        result = {"source_problem": "Could not process or publish the entry", "problem_detail": detail,
                  "published": None}
    result["entry"] = entry
    result["log_lines"] = warnings.lines
    return result


def _process_and_publish(run_id: str, entry: Any, coverage_ok: bool, catalog: dict[str, Any], store: Any,
                         processing: ProcessingSettings, log: logging.Logger,
                         cancelled: threading.Event | None) -> dict[str, Any]:
    from oa_dagster.process import run_entry

    key, layer = entry.key, entry.layer
    root = processing.work_root()
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{WORK_FOLDER_PREFIX}{os.getpid()}-", dir=root) as tmp:
        state = run_entry(entry, Path(tmp), preview=processing.preview, fetch_options=processing.fetch_options(),
                          coverage_ok=coverage_ok, log=log,
                          progress=raise_if_cancelled(cancelled) if cancelled is not None else None)
        result = state.to_dict()
        started = time.perf_counter()
        result["published"] = publish_run(store, result, Path(tmp), run_id, entry_key=key,
                                          entry_version=catalog["entries"][layer][key]["version"],
                                          max_drop=processing.max_drop)
        result.update(read_sample(Path(tmp), state.files))
        result["publish_seconds"] = time.perf_counter() - started
    return result


Write = Callable[[str, Callable[[], None]], None]  # (what, write): one event-log write, retried


def record_entry(context: dg.AssetExecutionContext, layer: str, key: str, result: dict[str, Any], store: Any,
                 catalog: dict[str, Any], set_id: str, previous: int | None, warn_drop: float,
                 write: Write) -> str | None:
    """Write an entry's events: its warnings, then a materialization and checks, or a failure observation.

    Returns the failure line for the step's failure message, or None when the entry materialized.
    """
    for level, message in result.get("log_lines") or ():
        write(f"{key}: a log line", lambda level=level, message=message: context.log.log(level, message))
    published = result.get("published")
    has_output = bool(published and published.file_keys.get("output"))
    if not has_output and not result.get("skipped"):
        observation = dg.AssetObservation(asset_key=layer, partition=key, metadata=failure_metadata(result, set_id))
        write(f"{key}: its failure", lambda: context.log_event(observation))
        return f"{key}: {result.get('source_problem')}: {result.get('problem_detail')}"
    version = catalog["entries"][layer][key]["version"]
    before = previous if has_output else None
    materialization = dg.AssetMaterialization(
        asset_key=layer, partition=key, tags={"dagster/data_version": version},
        metadata=entry_metadata(result, store, catalog, set_id, before))
    write(f"{key}: its materialization", lambda: context.log_event(materialization))
    if has_output:
        for evaluation in evaluate_checks(layer, key, result, before, warn_drop):
            write(f"{key}: check {evaluation.check_name}", lambda evaluation=evaluation: context.log_event(evaluation))
    return None


def _fail_retryable(context: dg.AssetExecutionContext, error: InstanceUnreachable) -> NoReturn:
    """The instance stayed unreachable: fail the run so that the run-retry daemon runs the batch again.

    Set runs retry crashes only (`retry_on_asset_or_op_failure=false`: a source problem is not worth a rerun),
    and an error raised in the step is a step failure, so the run first tags itself retryable (read when its
    failure is stored). If even that tag cannot be written, the failure cannot be either: the run worker ends
    with the run not finished, which the code server, run monitoring (`dagster/max_runtime`) or the cleanup job
    later fails as a crash, and crashes are retried.
    """
    try:
        context.instance.add_run_tags(context.run.run_id, {RETRY_ON_FAILURE_TAG: "true", INSTANCE_LOST_TAG: "true"})
    except Exception as tag_error:
        WRITES_LOG.error("could not mark run %s retryable: %s", context.run.run_id, tag_error)
    raise dg.Failure(description=f"{error}; the run fails so that it is retried", allow_retries=False) from error


def run_layer(context: dg.AssetExecutionContext, layer: str, store_resource: OutputStoreResource,
              processing: ProcessingSettings) -> None:
    """Process the run's entries in a worker thread while this thread writes the finished ones' events.

    Event writes cost ~15-25 ms each on SQLite, as much as a small source's processing; pipelined, they overlap
    the next entry's download (mostly waiting on a server) instead of adding to it.
    """
    store = store_resource.get_store()
    catalog = _catalog(store, context.run.tags.get(CATALOG_TAG))
    set_id = context.run.tags.get(SET_TAG, "")
    if set_id and context.run.tags.get(INSTANCE_LOST_TAG) == "true":
        # the retry of a run that lost the instance: like every set run, it retries crashes only
        context.instance.add_run_tags(context.run.run_id, {RETRY_ON_FAILURE_TAG: "false", INSTANCE_LOST_TAG: "retry"})
    keys_ = list(context.partition_keys)
    previous = previous_counts(context.instance, layer, keys_)
    context.log.info(f"{layer}: {len(keys_)} entries" + (f", {keys_[0]} to {keys_[-1]}" if keys_ else ""))
    failures: list[str] = []

    def write(what: str, event: Callable[[], None]) -> None:
        write_retrying(event, f"{layer} {what}", processing.instance_retry_seconds)

    def record(key: str, result: dict[str, Any]) -> None:
        failure = record_entry(context, layer, key, result, store, catalog, set_id, previous[key],
                               processing.warn_drop, write)
        if failure:
            failures.append(failure)

    run_id = context.run.run_id  # the worker thread gets plain values, never the context

    def process(key: str, cancelled: threading.Event) -> dict[str, Any]:
        return process_partition(run_id, layer, key, catalog, store, processing, cancelled)

    first_lines: dict[str, list[tuple[int, str]]] = {}
    try:
        with closing(in_background(process, keys_, name=f"oa-{layer}")) as entries:
            for key, result in entries:
                if _worth_retrying(result):  # one more try after the others: a server's hiccup may be over
                    first_lines[key] = result.get("log_lines") or []
                else:
                    record(key, result)
        if first_lines:
            message = f"{layer}: second attempt for {len(first_lines)} entries whose download failed"
            write("second attempt", lambda: context.log.info(message))
        with closing(in_background(process, list(first_lines), name=f"oa-{layer}-retry")) as entries:
            for key, result in entries:
                result["log_lines"] = first_lines[key] + (result.get("log_lines") or [])
                record(key, result)
        summary = f"{layer}: {len(keys_) - len(failures)} of {len(keys_)} entries materialized"
        write("summary", lambda: context.log.info(summary))
    except InstanceUnreachable as error:
        _fail_retryable(context, error)
    if failures:
        raise dg.Failure(
            description=f"{len(failures)} of {len(keys_)} {layer} entries failed:\n" + "\n".join(failures),
            metadata={"failed_entries": dg.MetadataValue.json(failures)}, allow_retries=False)


def build_layer_asset(layer: str) -> dg.AssetsDefinition:
    spec = dg.AssetSpec(
        layer, partitions_def=LAYER_PARTITIONS[layer], deps=[source_catalog], skippable=True, group_name="layers",
        kinds={"geojson"}, freshness_policy=FRESHNESS,
        description=f"The {layer} layer: one partition per entry (`<source key>/<entry name>`); outputs in the "
                    "store under runs/…, the latest good one under latest/….")

    @dg.multi_asset(name=layer, specs=[spec], check_specs=check_specs(layer), can_subset=True,
                    partitions_def=LAYER_PARTITIONS[layer], pool=POOL)
    def _layer(context: dg.AssetExecutionContext, store: OutputStoreResource, processing: ProcessingSettings):
        run_layer(context, layer, store, processing)
        yield from ()

    return _layer


LAYER_ASSETS = [build_layer_asset(layer) for layer in LAYERS]
