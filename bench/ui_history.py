"""Sets of history for the UI benchmark, written through the instance's API rather than by running the layers.

Twenty sets of 5,000 entries per layer are 400,000 materializations and 800,000 check evaluations: far too many to
process for real. Each entry's events are the real ones all the same: the bundled example entry of each layer is
processed and published once (`process_entry`), and every partition's materialization, check evaluations and
failure observation are built from that result by the platform's own builders (`entry_metadata`,
`evaluate_checks`, `failure_metadata`), with the partition's own key, file URLs and feature count. The runs are
real run records of the layer jobs (`create_run_for_job`, which also writes the planned events a ranged run
writes), tagged like a set's, started and ended through run events. Materializations and observations go to the
event log in batches (`store_event_batch`, one insert per run), check evaluations one by one (each one updates the
row its planned event made), in a few threads, since the time is mostly round trips to the database.
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluationPlanned
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.events import (
    AssetMaterializationPlannedData,
    AssetObservationData,
    DagsterEvent,
    DagsterEventType,
    StepMaterializationData,
)
from dagster._core.events.log import EventLogEntry

from oa_dagster.assets.layers_checks import OUTPUT_QUALITY, OUTPUT_VALID, evaluate_checks
from oa_dagster.assets.layers_metadata import entry_metadata, failure_metadata
from oa_dagster.platform import store_layout as layout
from oa_dagster.platform.catalog import build_catalog, local_commit
from oa_dagster.platform.entry_processing import EntryOptions, EntryResult, process_entry
from oa_dagster.platform.store import LocalStore
from oa_dagster.run_tags import CATALOG_TAG, DATA_VERSION_TAG, ENTRIES_TAG, RANGE_END_TAG, RANGE_START_TAG, SET_TAG
from oa_dagster.sources.model import LAYERS

PUBLIC_URL = "https://data.openaddresses.example"  # the production store's public URL: previews are links
TEMPLATE_RUN = "template"
# the bundled example entry of each layer: processed once, its result is every partition's template
EXAMPLE_KEYS = {
    "addresses": "us/ca/berkeley_example/city",
    "parcels": "us/ca/berkeley_example/county",
    "buildings": "us/ca/berkeley_example/city",
    "centerlines": "us/ca/berkeley_example/city",
}
FAILED_PROBLEM = "Could not download source data"
WEEK = 7 * 24 * 3600.0


@dataclass(frozen=True)
class HistoryShape:
    partitions: int  # per layer
    sets: int
    entries_per_run: int = 50  # a set's runs pack entries (50: between the first set's 24 and history's 200)
    failed_every: int = 100  # one entry in this many fails in each set (a different one each set)
    threads: int = 4
    layers: tuple[str, ...] = LAYERS


def partition_keys(count: int) -> list[str]:
    """Keys shaped like the real ones (`<country>/<region>/<source>/<entry>`)."""
    return [f"us/xx/source_{i:05d}/city" for i in range(count)]


def template_results(work: Path) -> tuple[dict[str, EntryResult], LocalStore, str]:
    """Each layer's example entry processed and published for real: (results by layer, the store, catalog id)."""
    from oa_dagster.resources.sources_repo import EXAMPLES_DIR

    shutil.copytree(EXAMPLES_DIR.parent, work / "examples")
    sources = work / "examples" / "sources"
    catalog = build_catalog(sources, local_commit(sources), ref="local", origin="bench", keep_source_dir=True)
    store = LocalStore(work / "data", base_url=PUBLIC_URL)
    options = EntryOptions(work_root=work / "work", preview=True)
    results = {}
    for layer in LAYERS:
        result = process_entry(catalog, layer, EXAMPLE_KEYS[layer], store, options, run_id=TEMPLATE_RUN)
        if not result.has_output:
            raise RuntimeError(f"{layer} {EXAMPLE_KEYS[layer]}: {result.source_problem}: {result.problem_detail}")
        results[layer] = result
    return results, store, catalog["id"]


def for_partition(template: EntryResult, key: str, run_id: str, count: int) -> EntryResult:
    """The template as partition `key`'s result in run `run_id`: its own file keys and feature count."""
    published, state = template.published, template.state
    assert published is not None and state is not None
    old = layout.run_prefix(template.layer, template.key, TEMPLATE_RUN)
    new = layout.run_prefix(template.layer, key, run_id)
    manifest = {**published.manifest, "stats": {**published.manifest.get("stats", {}), "features": count}}
    moved = dataclasses.replace(
        published,
        prefix=published.prefix.replace(old, new),
        manifest=manifest,
        file_keys={role: k.replace(old, new) for role, k in published.file_keys.items()},
    )
    return dataclasses.replace(
        template, key=key, published=moved, state=dataclasses.replace(state, feature_count=count)
    )


def store_planned(storage: Any, events: list[EventLogEntry]) -> None:
    """A run's planned events in one insert, then what `store_event` does after each: the asset's record learns
    its latest planned storage id (the partition status reads it), each planned check gets its rows."""
    from dagster._core.storage.event_log.schema import SqlEventLogStorageTable

    with storage.index_connection() as conn:
        inserted = conn.execute(storage.prepare_insert_event_batch(events).returning(SqlEventLogStorageTable.c.id))
        ids = [int(row[0]) for row in inserted.fetchall()]
    pairs = list(zip(events, ids, strict=True))
    planned = DagsterEventType.ASSET_MATERIALIZATION_PLANNED
    materializations = [(e, i) for e, i in pairs if e.dagster_event_type == planned]
    with storage.index_transaction() as conn:
        storage._store_asset_event(conn, *materializations[-1])
    for event, event_id in pairs:
        if event.dagster_event_type == DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED:
            storage.store_asset_check_event(event, event_id)


def store_check_evaluations(storage: Any, events: list[EventLogEntry]) -> None:
    """A run's check evaluations in two statements instead of two per evaluation: the event rows in one insert
    (the storage's own `prepare_insert_event_batch`), then the rows the run's planned events made get their
    verdicts in one executemany: what `store_event` does one evaluation at a time (`_update_asset_check_evaluation`).
    """
    import sqlalchemy as sa
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus as Status
    from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable, SqlEventLogStorageTable
    from dagster_shared.serdes import serialize_value

    table = AssetCheckExecutionsTable
    with storage.index_connection() as conn:
        inserted = conn.execute(storage.prepare_insert_event_batch(events).returning(SqlEventLogStorageTable.c.id))
        ids = [int(row[0]) for row in inserted.fetchall()]
        rows = []
        for event, event_id in zip(events, ids, strict=True):
            evaluation = event.get_dagster_event().asset_check_evaluation_data
            status = Status.SUCCEEDED if evaluation.passed else Status.FAILED
            rows.append(
                {
                    "b_key": evaluation.asset_key.to_string(),
                    "b_check": evaluation.check_name,
                    "b_run": event.run_id,
                    "b_partition": evaluation.partition,
                    "execution_status": status.value,
                    "evaluation_event": serialize_value(event),
                    "evaluation_event_timestamp": storage._event_insert_timestamp(event),
                    "evaluation_event_storage_id": event_id,
                }
            )
        update = (
            table.update()
            .where(
                table.c.asset_key == sa.bindparam("b_key"),
                table.c.check_name == sa.bindparam("b_check"),
                table.c.run_id == sa.bindparam("b_run"),
                table.c.partition == sa.bindparam("b_partition"),
            )
            .values(
                execution_status=sa.bindparam("execution_status"),
                evaluation_event=sa.bindparam("evaluation_event"),
                evaluation_event_timestamp=sa.bindparam("evaluation_event_timestamp"),
                evaluation_event_storage_id=sa.bindparam("evaluation_event_storage_id"),
            )
        )
        conn.execute(update, rows)


def _entry(run: dg.DagsterRun, layer: str, timestamp: float, event: DagsterEvent) -> EventLogEntry:
    return EventLogEntry(
        error_info=None,
        level=20,
        user_message="",
        run_id=run.run_id,
        timestamp=timestamp,
        step_key=layer,
        job_name=run.job_name,
        dagster_event=event,
    )


def _event(run: dg.DagsterRun, layer: str, kind: DagsterEventType, data: Any = None) -> DagsterEvent:
    return DagsterEvent(kind.value, run.job_name, step_key=layer, event_specific_data=data)


class HistoryWriter:
    """Writes sets of history for the layer assets onto `instance` (its dynamic partitions added first)."""

    def __init__(self, instance: dg.DagsterInstance, defs: dg.Definitions, work: Path, shape: HistoryShape) -> None:
        from dagster._core.execution.api import create_execution_plan

        self.instance, self.shape = instance, shape
        # the planned events go in one insert per run (`store_planned`), not one by one as `create_run` logs them
        instance.run_domain._log_asset_planned_events = lambda *args: None
        # a pool of open connections, as the webserver holds: dagster-postgres otherwise opens one per statement
        instance.optimize_for_webserver(statement_timeout=0, pool_recycle=3600, max_overflow=shape.threads * 2)
        self.keys = partition_keys(shape.partitions)
        self.templates, self.store, self.catalog_id = template_results(work)
        self.jobs = {layer: defs.resolve_job_def(f"{layer}_job") for layer in LAYERS}
        self.plans = {layer: create_execution_plan(job) for layer, job in self.jobs.items()}
        self.counts: dict[str, dict[str, int]] = {layer: {} for layer in LAYERS}  # latest feature count
        self.events = 0
        self._lock = threading.Lock()

    def _planned(self, run: dg.DagsterRun, layer: str, keys: list[str], when: float) -> list[EventLogEntry]:
        """What `create_run` logs for a ranged run of a layer job, one event per partition and per check."""
        asset = dg.AssetKey(layer)
        events = [
            DagsterEvent.build_asset_materialization_planned_event(
                run.job_name, layer, AssetMaterializationPlannedData(asset, partition=key)
            )
            for key in keys
        ]
        with partition_loading_context(dynamic_partitions_store=self.instance):
            subset = dg.DynamicPartitionsDefinition(name=layer).empty_subset().with_partition_keys(keys)
        for check in (OUTPUT_VALID, OUTPUT_QUALITY):
            planned = AssetCheckEvaluationPlanned(asset_key=asset, check_name=check, partitions_subset=subset)
            events.append(_event(run, layer, DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED, planned))
        return [_entry(run, layer, when, event) for event in events]

    def add_partitions(self) -> None:
        for layer in self.shape.layers:
            self.instance.add_dynamic_partitions(layer, self.keys)

    def write(self) -> Iterator[tuple[int, float]]:
        """Write every set, oldest first; yields (set number, seconds it took)."""
        started = time.time() - self.shape.sets * WEEK
        with ThreadPoolExecutor(self.shape.threads) as pool:
            for number in range(1, self.shape.sets + 1):
                began = time.perf_counter()
                set_id = f"set-{number:02d}"
                when = started + number * WEEK
                chunks = [
                    (layer, self.keys[i : i + self.shape.entries_per_run])
                    for layer in self.shape.layers
                    for i in range(0, len(self.keys), self.shape.entries_per_run)
                ]
                run = functools.partial(self._run, set_id, number, when)
                list(pool.map(lambda chunk, run=run: run(*chunk), chunks))
                yield number, time.perf_counter() - began

    def failed(self, number: int, index: int) -> bool:
        return index % self.shape.failed_every == number % self.shape.failed_every

    def _run(self, set_id: str, number: int, when: float, layer: str, keys: list[str]) -> None:
        """One ranged run of `layer_job` over `keys`, as a set's sensor launches it and the layer asset records it."""
        tags = {
            SET_TAG: set_id,
            CATALOG_TAG: self.catalog_id,
            RANGE_START_TAG: keys[0],
            RANGE_END_TAG: keys[-1],
            ENTRIES_TAG: str(len(keys)),
        }
        run = self.instance.create_run_for_job(
            self.jobs[layer], execution_plan=self.plans[layer], tags=tags, status=dg.DagsterRunStatus.NOT_STARTED
        )
        store_planned(self.instance.event_log_storage, self._planned(run, layer, keys, when))
        self.instance.handle_new_event(_entry(run, layer, when, _event(run, layer, DagsterEventType.RUN_START)))
        first = self.keys.index(keys[0])
        materializations, observations, checks = [], [], []
        template = self.templates[layer]
        for offset, key in enumerate(keys):
            at = when + offset * 0.5
            if self.failed(number, first + offset):
                failed = EntryResult(
                    layer,
                    key,
                    template.entry_version,
                    template.entry,
                    source_problem=FAILED_PROBLEM,
                    problem_detail=f"HTTP 503 from the upstream server of {key}",
                )
                data = AssetObservationData(
                    dg.AssetObservation(asset_key=layer, partition=key, metadata=failure_metadata(failed, set_id))
                )
                observed = _event(run, layer, DagsterEventType.ASSET_OBSERVATION, data)
                observations.append(_entry(run, layer, at, observed))
                continue
            previous = self.counts[layer].get(key)
            count = 1000 + (first + offset) * 7 + number
            result = for_partition(template, key, run.run_id, count)
            materialization = dg.AssetMaterialization(
                asset_key=layer,
                partition=key,
                tags={DATA_VERSION_TAG: result.entry_version},
                metadata=entry_metadata(result, self.store, self.catalog_id, set_id, previous),
            )
            event = _event(run, layer, DagsterEventType.ASSET_MATERIALIZATION, StepMaterializationData(materialization))
            materializations.append(_entry(run, layer, at, event))
            for evaluation in evaluate_checks(result, previous, 0.1):
                check_event = _event(run, layer, DagsterEventType.ASSET_CHECK_EVALUATION, evaluation)
                checks.append(_entry(run, layer, at, check_event))
            self.counts[layer][key] = count
        storage = self.instance.event_log_storage
        for batch in (materializations, observations):
            if batch:
                storage.store_event_batch(batch)
        if checks:
            store_check_evaluations(storage, checks)
        end = when + len(keys) * 0.5
        if observations:
            ended = _event(run, layer, DagsterEventType.RUN_FAILURE)
        else:
            ended = _event(run, layer, DagsterEventType.RUN_SUCCESS)
        self.instance.handle_new_event(_entry(run, layer, end, ended))
        with self._lock:
            self.events += 2 + len(materializations) + len(observations) + len(checks)
