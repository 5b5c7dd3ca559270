"""The four layer assets: each partition is one layer entry, processed by `platform.entry_processing`.

One run may process several partitions (a range: sets and backfills pack small entries to keep Dagster's per-run
cost low). Each entry is recorded on its own: a materialization and check evaluations for an entry with output,
an observation for a failed one. At the end the step fails, listing the failed entries and their source problems,
so exactly those partitions show as failed; the others stay materialized and a failed entry's previous good
materialization stays its latest. Entries the sources mark `skip: true` are not partitions at all (the catalog
lists them): they have no data, and a partition for them would show either as good data or as a failure.

Per-entry cost matters (thousands of small entries per set; every event is a database write): an entry's INFO
lines go to its own `log.txt` in the store (linked from its materialization), only its warnings and errors are
forwarded to the run's event log; the previous feature counts of all the run's entries are read in two queries
before processing, not one per entry; and entries are processed in a worker thread (`layers_worker.py`) while
the step's thread writes the events of those done, so the writes overlap the next entry's download.

A set run skips the entries of its range that the set's planning carried over (recorded in bulk by the
`set_launcher` sensor, `carry_over.py`) and reuses the planning's upstream answers for the others. Such a run's
Dagster range holds only its first entry, its last is in `oa/batch_end`, and the run writes the planned events of
the others itself (`planned_events.py`): Dagster would write one for every carried entry in between too.

Every event write is retried on a lost database connection (`layers_event_writes.py`); if the instance stays
unreachable, the run fails and is marked retryable, so the set's run-retry policy runs the batch again.
"""

from collections.abc import Callable
from contextlib import closing
from datetime import timedelta
from typing import Any, NoReturn

import dagster as dg

from oa_dagster.platform.catalog import load_stored_catalog
from oa_dagster.platform.change_detection import RefreshPolicy
from oa_dagster.platform.entry_processing import EntryOptions, EntryResult, check_entry, process_entry
from oa_dagster.platform.set_planning import BACKFILL_MAX_PARTITIONS
from oa_dagster.platform.set_probing import carried_keys, load_plan, recorded_answer
from oa_dagster.resources.processing import ProcessingSettings
from oa_dagster.resources.store import OutputStoreResource
from oa_dagster.run_tags import (
    BATCH_END_TAG,
    CATALOG_TAG,
    DATA_VERSION_TAG,
    INSTANCE_LOST_TAG,
    REFRESH_FULL,
    REFRESH_INCREMENTAL,
    REFRESH_TAG,
    RETRY_ON_FAILURE_TAG,
    SET_TAG,
)
from oa_dagster.sources.model import LAYERS
from oa_dagster.wording import key_range, plural

from . import OWNERS
from .held_connections import hold_connections
from .layers_checks import check_specs, evaluate_checks
from .layers_event_writes import LOG as WRITES_LOG
from .layers_event_writes import InstanceUnreachable, Write, write_retrying
from .layers_metadata import entry_metadata, failure_metadata, skipped_metadata
from .layers_worker import Ahead, in_background
from .planned_events import batch_partitions, report_planned

# One dynamic partitions definition per layer, named after it; a key is `<source key>/<entry name>` (contract).
# `source_catalog` adds and removes them.
LAYER_PARTITIONS: dict[str, dg.DynamicPartitionsDefinition] = {
    layer: dg.DynamicPartitionsDefinition(name=layer) for layer in LAYERS
}
CATALOG_KEY = dg.AssetKey("source_catalog")  # by key: the catalog module imports this one's partitions
# A set runs weekly: an entry not refreshed for 8 days warns, 9 fails, so a stalled set shows in the UI.
FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(days=9), warn_window=timedelta(days=8))
# A backfill launched from the UI (say, a set's failed entries again) packs each contiguous stretch of partitions
# into ranged runs, like a set's first runs, instead of one run per partition.
BACKFILL = dg.BackfillPolicy.multi_run(max_partitions_per_run=BACKFILL_MAX_PARTITIONS)
POOL = "oa_layer_runs"


def _catalog(store: Any, catalog_id: str | None) -> dict[str, Any]:
    """The catalog the run was launched with (its tag), else the current one."""
    catalog = (load_stored_catalog(store, catalog_id) if catalog_id else None) or load_stored_catalog(store)
    if catalog is None:
        raise dg.Failure("no source catalog in the output store: materialize source_catalog first")
    return catalog


def metadata_by_id(fetch: Any, key: dg.AssetKey, ids: list[int], *, observation: bool = False) -> dict[int, Any]:
    """The metadata of the events with these storage ids, read in chunks of 500; `fetch` is the instance's
    `fetch_materializations` (or, with `observation`, `fetch_observations`)."""
    found: dict[int, Any] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for record in fetch(dg.AssetRecordsFilter(asset_key=key, storage_ids=chunk), limit=len(chunk)).records:
            event = record.asset_observation if observation else record.asset_materialization
            found[record.storage_id] = event.metadata if event else {}
    return found


def previous_counts(instance: dg.DagsterInstance, layer: str, keys_: list[str]) -> dict[str, int | None]:
    """The feature count of each key's latest materialization (None if none): two queries for the whole run."""
    latest = instance.get_latest_storage_id_by_partition(
        dg.AssetKey(layer), dg.DagsterEventType.ASSET_MATERIALIZATION, partitions=set(keys_)
    )
    metadata = metadata_by_id(instance.fetch_materializations, dg.AssetKey(layer), list(latest.values()))
    counts: dict[str, int | None] = dict.fromkeys(keys_)
    for partition, storage_id in latest.items():
        value = metadata.get(storage_id, {}).get("feature_count")
        if partition in counts and value is not None and value.value is not None:
            counts[partition] = int(value.value)
    return counts


def entry_events(
    result: EntryResult, store: Any, catalog_id: str, set_id: str, previous: int | None, warn_drop: float
) -> list[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    """An entry with output as the event log records it: its materialization (its data version) and both checks.

    The same whether a run writes them or the set's planning carries the entry over in bulk.
    """
    materialization = dg.AssetMaterialization(
        asset_key=result.layer,
        partition=result.key,
        tags={DATA_VERSION_TAG: result.entry_version},
        metadata=entry_metadata(result, store, catalog_id, set_id, previous),
    )
    return [materialization, *evaluate_checks(result, previous, warn_drop)]


def record_entry(
    context: dg.AssetExecutionContext,
    result: EntryResult,
    store: Any,
    catalog_id: str,
    set_id: str,
    previous: int | None,
    warn_drop: float,
    write: Write,
) -> str | None:
    """Write an entry's events: its warnings, then a materialization and checks, or an observation.

    Returns the failure line for the step's failure message, or None when the entry did not fail.
    """
    layer, key = result.layer, result.key
    for level, message in result.log_lines:
        write(f"{key}: a log line", lambda level=level, message=message: context.log.log(level, message))
    if not result.has_output:
        skipped = result.skipped  # a catalog older than the entry's `skip`: no data, and not a failure
        metadata = skipped_metadata(result, set_id) if skipped else failure_metadata(result, set_id)
        observation = dg.AssetObservation(asset_key=layer, partition=key, metadata=metadata)
        write(f"{key}: its {'skip' if skipped else 'failure'}", lambda: context.log_event(observation))
        return None if skipped else f"{key}: {result.source_problem}: {result.problem_detail}"
    materialization, *evaluations = entry_events(result, store, catalog_id, set_id, previous, warn_drop)
    write(f"{key}: its materialization", lambda: context.log_event(materialization))
    for evaluation in evaluations:
        assert isinstance(evaluation, dg.AssetCheckEvaluation)
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


def _carried(checks: Ahead[Any], key: str) -> bool:
    return checks.get(key).carried_output is not None


def _refresh_policy(context: dg.AssetExecutionContext, layer: str, options: EntryOptions) -> RefreshPolicy | None:
    """Set runs carry entries whose upstream did not change over (`oa/refresh=incremental`), or process all of them
    checking their validators' honesty (`full`); runs without the tag (a backfill, a run launched by hand)
    process every entry as before."""
    mode = context.run.tags.get(REFRESH_TAG)
    if mode not in (REFRESH_INCREMENTAL, REFRESH_FULL):
        return None
    policy = options.refresh_policy(force_full=mode == REFRESH_FULL)
    how = "every entry processed, validators checked" if policy.force_full else "unchanged entries carried over"
    context.log.info(f"{layer}: change detection on ({how}; full refresh after {policy.full_refresh_days:g} days)")
    return policy


def run_layer(
    context: dg.AssetExecutionContext, layer: str, store_resource: OutputStoreResource, processing: ProcessingSettings
) -> None:
    """Process the run's entries in a worker thread while this thread writes the finished ones' events.

    An event write costs about as much as a small source's processing (figures in docs/platform.md); pipelined,
    the writes overlap the next entry's download (mostly waiting on a server) instead of adding to it.
    """
    if processing.hold_db_connections:  # events for every entry: not a new database connection per statement
        hold_connections(context.instance)
    store = store_resource.get_store()
    catalog = _catalog(store, context.run.tags.get(CATALOG_TAG))
    set_id = context.run.tags.get(SET_TAG, "")
    if set_id and context.run.tags.get(INSTANCE_LOST_TAG) == "true":
        # the retry of a run that lost the instance: like every set run, it retries crashes only
        context.instance.add_run_tags(context.run.run_id, {RETRY_ON_FAILURE_TAG: "false", INSTANCE_LOST_TAG: "retry"})
    run_id, options = context.run.run_id, processing.entry_options()  # the worker gets plain values, no context
    refresh = _refresh_policy(context, layer, options)
    plan = load_plan(store, set_id, catalog["id"]) if refresh is not None else None
    carried = carried_keys(plan, layer)  # recorded in bulk by the set's planning: not this run's to write
    # `partition_keys` asks the instance for the layer's partitions at every read: read once (or by batch_partitions)
    batch_end = context.run.tags.get(BATCH_END_TAG)  # Dagster's range holds the first entry only (planned_events)
    first = context.partition_key_range.start
    in_range = (
        batch_partitions(context.instance, layer, first, batch_end) if batch_end else list(context.partition_keys)
    )
    keys_ = [key for key in in_range if key not in carried]
    previous = previous_counts(context.instance, layer, keys_)
    context.log.info(
        f"{layer}: {plural(len(keys_), 'entry')}"
        + (f", {key_range(keys_)}" if keys_ else "")
        + (f" ({len(in_range) - len(keys_)} in the range carried over by the set)" if carried else "")
    )
    failures: list[str] = []

    def write(what: str, event: Callable[[], None]) -> None:
        write_retrying(event, f"{layer} {what}", processing.instance_retry_seconds)

    if batch_end:  # creating the run planned its first entry only
        try:
            report_planned(context, layer, [key for key in keys_ if key != first], write)
        except InstanceUnreachable as error:
            _fail_retryable(context, error)

    def record(result: EntryResult) -> None:
        failure = record_entry(
            context, result, store, catalog["id"], set_id, previous[result.key], processing.warn_drop, write
        )
        if failure:
            failures.append(failure)

    # the upstream of every entry is asked ahead, several at once: each check is a round trip or three of waiting;
    # one the set's planning asked already is not asked again
    checks = (
        Ahead(
            lambda key: check_entry(
                catalog, layer, key, store, options, refresh, answer=recorded_answer(plan, layer, key)
            ),
            keys_,
        )
        if refresh
        else None
    )

    def process(key: str, cancelled: Any) -> EntryResult:
        known = checks.get(key) if checks is not None else None
        return process_entry(
            catalog, layer, key, store, options, run_id=run_id, cancelled=cancelled, refresh=refresh, check=known
        )

    first_attempts: dict[str, EntryResult] = {}
    try:
        with closing(in_background(process, keys_, name=f"oa-{layer}")) as entries:
            for key, result in entries:
                if result.worth_retrying:  # one more try after the others: a server's hiccup may be over
                    first_attempts[key] = result
                else:
                    record(result)
        if first_attempts:
            message = (
                f"{layer}: second attempt for {plural(len(first_attempts), 'entry')} whose download or store failed"
            )
            write("second attempt", lambda: context.log.info(message))
        with closing(in_background(process, list(first_attempts), name=f"oa-{layer}-retry")) as entries:
            for key, result in entries:
                record(result.after(first_attempts[key].log_lines))
        summary = f"{layer}: {len(keys_) - len(failures)} of {plural(len(keys_), 'entry')} materialized"
        if refresh is not None:
            summary += f", {sum(1 for k in keys_ if checks and _carried(checks, k))} of them unchanged"
        write("summary", lambda: context.log.info(summary))
    except InstanceUnreachable as error:
        _fail_retryable(context, error)
    finally:
        if checks is not None:
            checks.close()
    if failures:
        raise dg.Failure(
            description=f"{len(failures)} of {plural(len(keys_), layer + ' entry')} failed:\n" + "\n".join(failures),
            metadata={"failed_entries": dg.MetadataValue.json(failures)},
            allow_retries=False,
        )


def build_layer_asset(layer: str) -> dg.AssetsDefinition:
    spec = dg.AssetSpec(
        layer,
        partitions_def=LAYER_PARTITIONS[layer],
        deps=[CATALOG_KEY],
        skippable=True,
        group_name="layers",
        kinds={"python", "geojson"},
        owners=OWNERS,
        freshness_policy=FRESHNESS,
        description=f"The {layer} layer: one partition per entry (`<source key>/<entry name>`); outputs in the "
        "store under runs/…, the latest good one under latest/….",
    )

    @dg.multi_asset(
        name=layer,
        specs=[spec],
        check_specs=check_specs(layer),
        can_subset=True,
        partitions_def=LAYER_PARTITIONS[layer],
        backfill_policy=BACKFILL,
        pool=POOL,
    )
    def _layer(context: dg.AssetExecutionContext, store: OutputStoreResource, processing: ProcessingSettings):
        run_layer(context, layer, store, processing)
        yield from ()

    return _layer


LAYER_ASSETS = [build_layer_asset(layer) for layer in LAYERS]
