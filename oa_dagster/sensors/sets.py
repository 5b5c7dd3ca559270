"""Sets: the `weekly_set` schedule that starts one, the `set_launcher` sensor that launches its entries and follows
its progress.

The schedule materializes `source_catalog` at the head of the default branch, tagged with a set id. The
`set_launcher` sensor sees that materialization and requests one run per batch of consecutive partitions
(a partition range, planned by `platform/set_planning.py`) for each layer, tagged with the set id; it then counts
the set's materializations and failure observations and reports them as `set_progress` (`assets/sets.py`),
finishing the set when all its runs have ended, retries included; an entry recorded by a run and again by its
retry counts once, by its last outcome. Set runs carry entries whose upstream did not change over
(`oa/refresh=incremental`; `oa/launch=full` processes every entry), and `unchanged` counts them. A finished set gets
its regression report (`platform/set_report.py`): `sets/<id>/report.json` and a `set_report` materialization.

The set's catalog run planned it (`assets/catalog.py`, `platform/set_probing.py`): entries whose upstream did not
change are not launched; the sensor records them in bulk (`assets/carry_over.py`) from the tick after it requested
the runs, so their materializations come after the runs' planned events, and the set finishes only once they are
all recorded. Entries never run before are packed by the size their upstream told the planning.
"""

import json
import time
from datetime import datetime
from typing import Any

import dagster as dg

from oa_dagster.assets.carry_over import write_carried_events
from oa_dagster.assets.layers import LAYER_PARTITIONS, metadata_by_id
from oa_dagster.assets.links import link_metadata
from oa_dagster.assets.sets import SET_PROGRESS, SET_REPORT
from oa_dagster.jobs.catalog import source_catalog_job
from oa_dagster.jobs.layers import LAYER_JOBS
from oa_dagster.platform import store_layout as layout
from oa_dagster.platform.catalog import load_stored_catalog
from oa_dagster.platform.set_planning import (
    ENTRY_OVERHEAD_SECONDS,
    Batch,
    ChainsState,
    RunState,
    SetProgress,
    chains_state,
    estimate_seconds,
    launched_entries,
    learn_rates,
    plan_batches,
)
from oa_dagster.platform.set_probing import carried_keys, load_plan, sizes
from oa_dagster.platform.set_report import EntryOutcome, publish_set_report, report_key, report_markdown
from oa_dagster.platform.set_report import headline as report_headline
from oa_dagster.platform.store import put_json
from oa_dagster.platform.task_sizing import size_for_entries
from oa_dagster.resources.processing import ProcessingSettings
from oa_dagster.resources.store import OutputStoreResource
from oa_dagster.run_tags import (
    AUTO_RETRY_RUN_ID_TAG,
    BATCH_END_TAG,
    CATALOG_TAG,
    ENTRIES_TAG,
    LAUNCH_ALL,
    LAUNCH_CHANGED,
    LAUNCH_FULL,
    LAUNCH_TAG,
    MAX_RETRIES_TAG,
    MAX_RUNTIME_TAG,
    PRIORITY_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
    REFRESH_FULL,
    REFRESH_INCREMENTAL,
    REFRESH_TAG,
    RETRY_ON_FAILURE_TAG,
    SET_PRIORITY,
    SET_TAG,
    WILL_RETRY_TAG,
)
from oa_dagster.sources.model import LAYERS


def set_id_for(when: datetime) -> str:
    return "set-" + when.strftime("%Y%m%dT%H%M")


def build_set_schedule(cron: str, running: bool) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="weekly_set",
        cron_schedule=cron,
        target=source_catalog_job,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED,
        description="Start a set: the catalog at the head of the default branch, then every entry.",
    )
    def weekly_set(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        set_id = set_id_for(context.scheduled_execution_time)
        return dg.RunRequest(run_key=set_id, tags={SET_TAG: set_id, LAUNCH_TAG: LAUNCH_ALL, PRIORITY_TAG: SET_PRIORITY})

    return weekly_set


def expected_seconds(entries: dict[str, Any], sized: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Each entry's expected seconds: its previous run's, else its upstream's size at the rate its kind runs at
    (learnt from the entries that have both, else the prior)."""
    history = {k: float(v["seconds"]) for k, v in entries.items() if v.get("seconds")}
    rates = learn_rates((s["unit"], int(s["amount"]), history[k]) for k, s in sized.items() if k in history)
    estimates = {k: estimate_seconds(s, rates) for k, s in sized.items() if k not in history}
    return {**{k: v for k, v in estimates.items() if v is not None}, **history}


def range_tags(batch: Batch, carried: set[str]) -> dict[str, str]:
    """A batch's partitions as its run's tags: Dagster's range from its first to its last entry; but a batch that
    sweeps carried-over entries into its range (an incremental set) gives Dagster its first entry only and names its
    last in `oa/batch_end`. Creating a run writes a planned event for every partition of its range, one statement each
    (~20 ms on SQLite and Postgres alike): an incremental set's ranges span nearly all of a layer, seconds of the
    daemon's time before each run can start. The run writes the planned events of its other entries itself
    (`assets/layers.py`), so they show in progress, or failed, as before."""
    if carried and len(batch.keys) > 1:
        return {RANGE_START_TAG: batch.start, RANGE_END_TAG: batch.start, BATCH_END_TAG: batch.end}
    return {RANGE_START_TAG: batch.start, RANGE_END_TAG: batch.end}


def set_run_requests(
    instance: dg.DagsterInstance,
    catalog: dict[str, Any],
    set_id: str,
    launch: str,
    processing: ProcessingSettings,
    plan: dict[str, Any] | None = None,
) -> list[dg.RunRequest]:
    """One request per batch per layer; `run_key` makes a repeated tick harmless. Entries the `plan` carries over
    are not launched (a batch's range may sweep them in: its run skips them)."""
    requests = []
    for layer in LAYERS:
        entries = catalog["entries"].get(layer, {})
        carried = carried_keys(plan, layer)
        selected = [key for key in launched_entries(catalog, layer, launch) if key not in carried]
        expected = expected_seconds(entries, sizes(plan, layer))
        ran_before = all(entries.get(key, {}).get("seconds") for key in selected)  # all ran before: packed by history
        name = LAYER_PARTITIONS[layer].name
        assert name is not None
        batches = plan_batches(
            instance.get_dynamic_partitions(name),
            selected,
            expected_seconds=expected,
            target_seconds=processing.batch_target_seconds,
            max_entries=processing.batch_max_entries,
            slots=processing.set_slots,
            entry_overhead_seconds=ENTRY_OVERHEAD_SECONDS,
            carried=carried,
            known_seconds=ran_before,
        )
        for number, batch in enumerate(batches):
            requests.append(
                dg.RunRequest(
                    run_key=f"{set_id}:{layer}:{number}",
                    job_name=LAYER_JOBS[layer].name,
                    tags={
                        SET_TAG: set_id,
                        CATALOG_TAG: catalog["id"],
                        **range_tags(batch, carried),
                        PRIORITY_TAG: SET_PRIORITY,
                        ENTRIES_TAG: str(len(batch.keys)),
                        MAX_RUNTIME_TAG: str(processing.run_max_runtime_seconds),
                        MAX_RETRIES_TAG: "1",
                        RETRY_ON_FAILURE_TAG: "false",
                        REFRESH_TAG: REFRESH_FULL if launch == LAUNCH_FULL else REFRESH_INCREMENTAL,
                        **size_for_entries(entries.get(key, {}) for key in batch.keys).tags(),  # ECS task size
                    },
                )
            )
    return requests


def _outcome(progress: SetProgress, layer: str, meta: Any, observation: bool) -> bool:
    """Add one entry's recorded outcome to the counts; False when the event is not this set's."""
    if getattr(meta.get("set"), "value", None) != progress.set_id:
        return False
    status = meta["status"].value if "status" in meta else ""
    if observation:
        if status == "failed":
            progress.add("failed", layer)
            return True
        return False
    progress.add("done", layer)
    progress.add("features", layer, int(meta["feature_count"].value or 0) if "feature_count" in meta else 0)
    if status in ("held", "unchanged"):
        progress.add(status, layer)
    return True


def _count(instance: dg.DagsterInstance, progress: SetProgress) -> bool:
    """Add the set's new materializations and failure observations; True when something changed.

    Cheap (only events after the cursors), but an entry recorded twice (its run was retried) counts twice:
    `_recount` then replaces these counts.
    """
    changed = False
    for layer in LAYERS:
        for kind, fetch in (("m", instance.fetch_materializations), ("o", instance.fetch_observations)):
            cursor_key = f"{kind}:{layer}"
            while True:
                result = fetch(
                    dg.AssetRecordsFilter(
                        asset_key=dg.AssetKey(layer), after_storage_id=progress.cursors.get(cursor_key)
                    ),
                    limit=1000,
                    ascending=True,
                )
                for record in result.records:
                    progress.cursors[cursor_key] = record.storage_id
                    event = record.asset_materialization if kind == "m" else record.asset_observation
                    if _outcome(progress, layer, event.metadata if event else {}, kind == "o"):
                        changed = True
                if not result.has_more:
                    break
    return changed


def _recount(instance: dg.DagsterInstance, progress: SetProgress, outcomes: list[EntryOutcome] | None = None) -> None:
    """Count every entry once, by its last outcome in this set (a retried run records its entries again).

    Two queries per layer give each entry's latest materialization and observation since the set started;
    only those records are read (in chunks of 500): at most two records per entry the set touched. With
    `outcomes`, each entry's outcome is also kept there (the set's regression report).
    """
    for bucket in (
        "done",
        "failed",
        "held",
        "unchanged",
        "features",
    ):  # `skipped` comes from the catalog, not from runs
        setattr(progress, bucket, {})
    for layer in LAYERS:
        key = dg.AssetKey(layer)
        mats = instance.get_latest_storage_id_by_partition(
            key, dg.DagsterEventType.ASSET_MATERIALIZATION, after_cursor=progress.start_id
        )
        obs = instance.get_latest_storage_id_by_partition(
            key, dg.DagsterEventType.ASSET_OBSERVATION, after_cursor=progress.start_id
        )
        meta = {
            False: metadata_by_id(instance.fetch_materializations, key, list(mats.values())),
            True: metadata_by_id(instance.fetch_observations, key, list(obs.values()), observation=True),
        }
        for partition in set(mats) | set(obs):
            events = [(ids[partition], is_obs) for ids, is_obs in ((mats, False), (obs, True)) if partition in ids]
            # the later event decides; an observation that is not this set's failure (e.g. an accepted held run)
            # leaves the decision to the materialization
            for storage_id, is_obs in sorted(events, reverse=True):
                entry_meta = meta[is_obs].get(storage_id, {})
                if _outcome(progress, layer, entry_meta, is_obs):
                    if outcomes is not None:
                        outcomes.append(entry_outcome(layer, partition, entry_meta))
                    break


def entry_outcome(layer: str, partition: str, meta: Any) -> EntryOutcome:
    """An entry's outcome in the set from the metadata of its deciding event (materialization or failure)."""

    def value(name: str, default: Any = "") -> Any:
        return meta[name].value if name in meta and meta[name].value is not None else default

    status = value("status", "promoted")
    problem = ""
    if status == "failed":
        problem = ": ".join(p for p in (value("source_problem"), value("problem_detail")) if p)
    elif status == "held":
        problem = value("quality_gate")
    count = value("feature_count", None)
    return EntryOutcome(
        layer,
        partition,
        status,
        int(count) if count is not None else None,
        problem,
        value("unchanged_since"),
        value("change_signal"),
    )


def refresh_partition_status(instance: dg.DagsterInstance, log: Any) -> None:
    """Bring each layer's partition status cache up to date once a set has ended.

    Dagster's webserver updates the cache (on the asset's record) on the first read after new events: without this,
    whoever opens a layer's partitions first after a set waits for the set's events to be read, ~3 s for 5,000
    entries (docs/operations.md "The UI at scale"). A failure only costs that wait: it is logged, never raised.
    """
    for layer, partitions in LAYER_PARTITIONS.items():
        try:
            instance.get_status_by_partition(dg.AssetKey(layer), [], partitions)
        except Exception as error:
            log.warning(f"{layer}: the partition status cache was not refreshed: {error}")


def report_set(instance: dg.DagsterInstance, store: Any, progress: SetProgress, outcomes: list[EntryOutcome]) -> None:
    """Store the finished set's regression report and record it as `set_report` (markdown tables in the UI)."""
    catalog = load_stored_catalog(store, progress.catalog_id) or {"id": progress.catalog_id, "entries": {}}
    report = publish_set_report(store, progress.set_id, catalog, outcomes)
    metadata: dict[str, Any] = {
        "set": progress.set_id,
        "summary": report_headline(report),
        "compared_with": report.get("compared_with") or "",
        **{name: int(n) for name, n in report["counts"].items()},
        "url_report": link_metadata(store.url(report_key(progress.set_id))),
    }
    for name, text in report_markdown(report).items():
        metadata[f"{name}_table"] = dg.MetadataValue.md(text)
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=SET_REPORT, metadata=metadata))


def _chains(instance: dg.DagsterInstance, set_id: str) -> ChainsState:
    """The set's layer runs grouped by retry chain (a retry carries the set tag and its root run id)."""
    layer_jobs = {job.name for job in LAYER_JOBS.values()}
    runs = []
    for record in instance.get_run_records(dg.RunsFilter(tags={SET_TAG: set_id})):
        run = record.dagster_run
        if run.job_name not in layer_jobs:
            continue
        verdict = run.tags.get(WILL_RETRY_TAG)
        runs.append(
            RunState(
                run_id=run.run_id,
                root_run_id=run.root_run_id or run.run_id,
                status=run.status.value,
                created=record.create_timestamp.timestamp(),
                ended=record.end_time,
                will_retry=None if verdict is None else verdict.lower() == "true",
                retry_launched=AUTO_RETRY_RUN_ID_TAG in run.tags,
            )
        )
    return chains_state(runs, now=time.time(), retries_enabled=instance.run_retries_enabled)


def progress_metadata(progress: SetProgress) -> dict[str, Any]:
    return {
        "set": progress.set_id,
        "summary": progress.headline(),
        "finished": bool(progress.finished),
        "entries": sum(progress.total.values()),
        "done": sum(progress.done.values()),
        "failed": sum(progress.failed.values()),
        "pending": progress.pending(),
        "held": sum(progress.held.values()),
        "unchanged": sum(progress.unchanged.values()),
        "skipped": sum(progress.skipped.values()),
        "features": sum(progress.features.values()),
        "runs": progress.runs_requested,
        "runs_finished": progress.runs_finished,
        "retries": progress.retries,
        "catalog_id": progress.catalog_id,
        "per_layer": dg.MetadataValue.json(
            {k: getattr(progress, k) for k in ("total", "done", "failed", "held", "unchanged", "skipped", "features")}
        ),
        "wall_seconds": round((progress.finished or time.time()) - progress.started, 1),
    }


# The sensor daemon loops every 5 s; an interval under that ticks on every loop (one that equals it skips every
# other loop when a tick starts late), so a set starts, and is reported finished, within about 5 s.
@dg.sensor(
    name="set_launcher",
    minimum_interval_seconds=1,
    default_status=dg.DefaultSensorStatus.RUNNING,
    jobs=list(LAYER_JOBS.values()),
    description=f"Launches the entries of a set when source_catalog is materialized with {LAUNCH_TAG} "
    f"({LAUNCH_ALL} | {LAUNCH_FULL} | {LAUNCH_CHANGED}), and reports the set's progress as set_progress; "
    "entries whose upstream did not change are carried over unless the launch is full.",
)
def set_launcher(
    context: dg.SensorEvaluationContext, store: OutputStoreResource, processing: ProcessingSettings
) -> dg.SensorResult:
    state = json.loads(context.cursor) if context.cursor else {}
    instance = context.instance
    out = store.get_store()
    requests: list[dg.RunRequest] = []
    open_sets = {k: SetProgress.from_dict(v) for k, v in state.get("sets", {}).items()}
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("source_catalog"), after_storage_id=state.get("after")),
        limit=1 if "after" not in state else 20,
        ascending="after" in state,
    ).records
    after = state.get("after", 0)
    for record in records:
        after = max(after, record.storage_id)
        meta = record.asset_materialization.metadata if record.asset_materialization else {}
        launch = meta["launch"].value if "launch" in meta else "none"
        if launch not in (LAUNCH_ALL, LAUNCH_FULL, LAUNCH_CHANGED):
            continue
        set_id = (meta["set"].value if "set" in meta else "") or f"launch-{record.storage_id}"
        catalog = load_stored_catalog(out, str(meta["catalog_id"].value))
        if catalog is None:
            context.log.warning(f"catalog {meta['catalog_id'].value} is not in the store; {set_id} not launched")
            continue
        plan = load_plan(out, set_id, catalog["id"])
        batch = set_run_requests(instance, catalog, set_id, launch, processing, plan)
        requests += batch
        total = {layer: len(launched_entries(catalog, layer, launch)) for layer in LAYERS}
        skipped = (
            {layer: sum(1 for info in catalog["entries"][layer].values() if info["skip"]) for layer in LAYERS}
            if launch in (LAUNCH_ALL, LAUNCH_FULL)
            else {}
        )
        open_sets[set_id] = SetProgress(
            set_id,
            catalog["id"],
            started=record.timestamp,
            total=total,
            skipped=skipped,
            runs_requested=len(batch),
            start_id=record.storage_id,
            cursors={f"{k}:{layer}": record.storage_id for layer in LAYERS for k in "mo"},
            carry=sum(len(carried_keys(plan, layer)) for layer in LAYERS),
        )
        context.log.info(
            f"{set_id}: {len(batch)} runs for {sum(total.values())} entries"
            + (f", {open_sets[set_id].carry} carried over" if plan else "")
        )
    for set_id, progress in list(open_sets.items()):
        known = set_id in state.get("sets", {})
        carrying = progress.carry_pending()
        if known and carrying:  # the tick after the launch: the runs' planned events come before these
            progress.carry_written, _ = write_carried_events(instance, out, set_id, progress.carry_written)
        chains = _chains(instance, set_id)  # before counting: a run that ended has stored all its events
        done = known and not carrying and chains.chains >= progress.runs_requested and chains.ended == chains.chains
        # a finished set is recounted below: the incremental count would only be replaced, so it is not read
        changed = done or _count(instance, progress) or not known
        if (chains.ended, chains.retries) != (progress.runs_finished, progress.retries):
            progress.runs_finished, progress.retries, changed = chains.ended, chains.retries, True
        outcomes: list[EntryOutcome] = []
        if done or (changed and chains.retries):
            _recount(instance, progress, outcomes)
        if done:
            progress.finished = time.time()
            put_json(out, layout.set_summary_key(set_id), progress.to_dict())
            del open_sets[set_id]
            changed = True
        if changed:
            instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key=SET_PROGRESS, metadata=progress_metadata(progress))
            )
        if done:  # after set_progress's finished event: what follows a set does not wait for the report
            report_set(instance, out, progress, outcomes)
            refresh_partition_status(instance, context.log)
    cursor = json.dumps({"after": after, "sets": {k: v.to_dict() for k, v in open_sets.items()}})
    return dg.SensorResult(run_requests=requests, cursor=cursor)


SET_SENSORS = [set_launcher]
