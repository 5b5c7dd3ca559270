"""Sets of history for the UI benchmark, written through the instance's API rather than by running the layers.

Twenty sets of 5,000 entries per layer are 400,000 materializations and 800,000 check evaluations: far too many to
process for real. Each entry's events are the real ones all the same: the bundled example entry of each layer is
processed and published once (`process_entry`), and every partition's materialization, check evaluations and
failure observation are built from that result by the platform's own builders (`entry_metadata`,
`evaluate_checks`, `failure_metadata`), with the partition's own key, file URLs and feature count. The runs are
real run records of the layer jobs (`create_run_for_job`), tagged like a set's, with the planned events a ranged
run logs, started and ended through run events.

The events are stored in bulk (bench/ui_bulk.py: the rows `store_event` would write, a table at a time), or with
`bulk=False` one `handle_new_event` at a time, which is Dagster's own path and the reference the bulk one is
compared against (tests/test_bench_ui.py). Run ids and times are fixed by the shape, so that two seedings of the
same shape write the same rows. The runs of a set are spread over worker processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import multiprocessing
import shutil
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa
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

from bench.ui_bulk import write_run_events
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
RUN_NAMESPACE = uuid.UUID("5d0c7a52-3f1e-4c59-9a43-0b6f3c1d2e7a")  # the bench's run ids: uuid5 of set, layer, chunk


@dataclass(frozen=True)
class HistoryShape:
    partitions: int  # per layer
    sets: int
    entries_per_run: int = 50  # a set's runs pack entries (50: between the first set's 24 and history's 200)
    failed_every: int = 100  # one entry in this many fails in each set (a different one each set)
    workers: int = 2  # processes
    layers: tuple[str, ...] = LAYERS
    bulk: bool = True  # False: one `handle_new_event` per event (Dagster's own path, slow)
    start: float | None = None  # set 0's time (default: `sets` weeks before the writer starts); set n is n weeks on


def partition_keys(count: int) -> list[str]:
    """Keys shaped like the real ones (`<country>/<region>/<source>/<entry>`)."""
    return [f"us/xx/source_{i:05d}/city" for i in range(count)]


@dataclass(frozen=True)
class Templates:
    """Each layer's example entry processed and published once: every partition's result is made from it."""

    results: dict[str, EntryResult]
    store: LocalStore
    catalog_id: str


def template_results(work: Path) -> Templates:
    """Each layer's example entry processed and published for real."""
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
    return Templates(results, store, catalog["id"])


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


def feature_count(number: int, index: int) -> int:
    """Entry `index`'s feature count in set `number`: grows a little each set."""
    return 1000 + index * 7 + number


def _no_commit_wait(connection: Any, _record: Any) -> None:
    """Commits that do not wait for their WAL to reach the disk (`synchronous_commit = off`): a run writes some
    forty statements, each its own transaction, none of which needs to wait for the disk. The rows are the same; a
    crash of the server would lose the last moment's, of a database thrown away."""
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")


class RunWriter:
    """Writes the runs of a set onto `instance`: one per layer and chunk of entries (a worker process's job)."""

    def __init__(
        self, instance: dg.DagsterInstance, defs: dg.Definitions, templates: Templates, shape: HistoryShape
    ) -> None:
        from dagster._core.execution.api import create_execution_plan

        self.instance, self.templates, self.shape = instance, templates, shape
        # planned events are among the run's events (`run_events`), not logged by `create_run` one by one
        instance.run_domain._log_asset_planned_events = lambda *args: None
        # one open connection, as the webserver holds: dagster-postgres otherwise opens one per statement
        instance.optimize_for_webserver(statement_timeout=0, pool_recycle=3600, max_overflow=2)
        for storage in (instance.event_log_storage, instance.run_storage, instance.schedule_storage):
            sa.event.listen(storage._engine, "connect", _no_commit_wait)  # type: ignore[attr-defined]
        # the schema does not change while seeding, yet Dagster reads it from the database for every asset event's
        # tags (on a second connection, opened anew each time) and every run event: asked once here
        events, runs = instance.event_log_storage, instance.run_storage
        events.has_table = functools.cache(events.has_table)  # type: ignore[method-assign]
        runs.has_run_stats_index_cols = functools.cache(runs.has_run_stats_index_cols)  # type: ignore[attr-defined]
        self.keys = partition_keys(shape.partitions)
        self.jobs = {layer: defs.resolve_job_def(f"{layer}_job") for layer in shape.layers}
        self.plans = {layer: create_execution_plan(job) for layer, job in self.jobs.items()}

    def failed(self, number: int, index: int) -> bool:
        return index % self.shape.failed_every == number % self.shape.failed_every

    def previous_count(self, number: int, index: int) -> int | None:
        """The feature count of the entry's latest materialization before set `number` (None: never)."""
        earlier = (n for n in range(number - 1, 0, -1) if not self.failed(n, index))
        latest = next(earlier, None)
        return None if latest is None else feature_count(latest, index)

    def write(self, number: int, layer: str, first: int) -> int:
        """The run of set `number` over `layer`'s entries from index `first`: how many events (less planned)."""
        keys = self.keys[first : first + self.shape.entries_per_run]
        set_id = f"set-{number:02d}"
        tags = {
            SET_TAG: set_id,
            CATALOG_TAG: self.templates.catalog_id,
            RANGE_START_TAG: keys[0],
            RANGE_END_TAG: keys[-1],
            ENTRIES_TAG: str(len(keys)),
        }
        run = self.instance.create_run_for_job(
            self.jobs[layer],
            execution_plan=self.plans[layer],
            run_id=str(uuid.uuid5(RUN_NAMESPACE, f"{set_id}/{layer}/{first}")),  # the same in every seeding
            tags=tags,
            status=dg.DagsterRunStatus.NOT_STARTED,
        )
        events = self.run_events(run, number, layer, first, keys)
        if self.shape.bulk:
            write_run_events(self.instance, events)
        else:
            for event in events:
                self.instance.handle_new_event(event)
        planned = DagsterEventType.ASSET_MATERIALIZATION_PLANNED, DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED
        return sum(1 for event in events if event.dagster_event_type not in planned)

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

    def run_events(
        self, run: dg.DagsterRun, number: int, layer: str, first: int, keys: list[str]
    ) -> list[EventLogEntry]:
        """The run's events in the order it logs them: planned, start, each entry's materialization or failure,
        the check evaluations, the end (a failure when an entry failed)."""
        set_id = f"set-{number:02d}"
        assert self.shape.start is not None, "fixed by HistoryWriter"
        when = self.shape.start + number * WEEK
        events = self._planned(run, layer, keys, when)
        events.append(_entry(run, layer, when, _event(run, layer, DagsterEventType.RUN_START)))
        materializations, observations, checks = [], [], []
        template = self.templates.results[layer]
        for offset, key in enumerate(keys):
            at, index = when + offset * 0.5, first + offset
            if self.failed(number, index):
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
            previous = self.previous_count(number, index)
            result = for_partition(template, key, run.run_id, feature_count(number, index))
            metadata = entry_metadata(result, self.templates.store, self.templates.catalog_id, set_id, previous)
            materialization = dg.AssetMaterialization(
                asset_key=layer, partition=key, tags={DATA_VERSION_TAG: result.entry_version}, metadata=metadata
            )
            event = _event(run, layer, DagsterEventType.ASSET_MATERIALIZATION, StepMaterializationData(materialization))
            materializations.append(_entry(run, layer, at, event))
            for evaluation in evaluate_checks(result, previous, 0.1):
                check_event = _event(run, layer, DagsterEventType.ASSET_CHECK_EVALUATION, evaluation)
                checks.append(_entry(run, layer, at, check_event))
        end = when + len(keys) * 0.5
        ended = _event(run, layer, DagsterEventType.RUN_FAILURE if observations else DagsterEventType.RUN_SUCCESS)
        return [*events, *materializations, *observations, *checks, _entry(run, layer, end, ended)]


_worker: RunWriter | None = None


def _start_worker(home: str, templates: Templates, shape: HistoryShape) -> None:
    """A worker process's own instance (connections are not shared across processes) and run writer."""
    global _worker
    from oa_dagster.definitions import defs

    _worker = RunWriter(dg.DagsterInstance.from_config(home), defs, templates, shape)


def _write_run(task: tuple[int, str, int]) -> int:
    assert _worker is not None
    return _worker.write(*task)


class HistoryWriter:
    """Writes sets of history for the layer assets onto the instance at `home` (its dynamic partitions first),
    in `shape.workers` processes: building and serializing the events is most of the time, and is Python's."""

    def __init__(self, home: Path, templates: Templates, shape: HistoryShape) -> None:
        if shape.start is None:  # fixed here, once for every worker process
            shape = dataclasses.replace(shape, start=time.time() - shape.sets * WEEK)
        self.home, self.shape = home, shape
        self.templates = templates
        self.events = 0

    def add_partitions(self) -> None:
        with dg.DagsterInstance.from_config(str(self.home)) as instance:
            for layer in self.shape.layers:
                instance.add_dynamic_partitions(layer, partition_keys(self.shape.partitions))

    def tasks(self, number: int) -> list[tuple[int, str, int]]:
        step = self.shape.entries_per_run
        return [(number, layer, i) for layer in self.shape.layers for i in range(0, self.shape.partitions, step)]

    def write(self) -> Iterator[tuple[int, float]]:
        """Write every set, oldest first (a set's runs all end before the next set's start); yields (set number,
        seconds it took)."""
        with contextlib.ExitStack() as stack:
            if self.shape.workers > 1:
                context = multiprocessing.get_context("spawn")
                initargs = (str(self.home), self.templates, self.shape)
                pool = stack.enter_context(
                    ProcessPoolExecutor(self.shape.workers, context, initializer=_start_worker, initargs=initargs)
                )
                run_all = functools.partial(pool.map, _write_run, chunksize=4)
            else:
                _start_worker(str(self.home), self.templates, self.shape)
                run_all = functools.partial(map, _write_run)
            for number in range(1, self.shape.sets + 1):
                began = time.perf_counter()
                tasks = self.tasks(number)
                if number == 1:  # each job's first run alone: its snapshots are written once, not in a race
                    first_runs = [task for task in tasks if task[2] == 0]
                    self.events += sum(run_all(first_runs))
                    tasks = [task for task in tasks if task not in first_runs]
                self.events += sum(run_all(tasks))
                yield number, time.perf_counter() - began
