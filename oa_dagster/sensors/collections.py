"""When collections are built: after every finished set, and on a schedule every other night; one run per trigger.

Both triggers plan first (`collections/plan.py`: each layer's `latest/` pointers read once, compared with the last
build's records) and request one `collections_job` run for the area × layer partitions that changed: a partition
range covering them (the asset's single-run backfill policy) with the changed ones named in the run config. When
nothing changed nothing runs. `collections_after_set` follows `set_progress` materializations (cursor: the last
storage id seen) and plans when one is reported with `finished: true` (run key per set). `collections_schedule`
(cron `DEFAULT_COLLECTIONS_CRON` unless the deployment gives another) picks up accepted held runs and single-entry
reruns between sets.
"""

import dagster as dg

from oa_dagster.assets.collections import COLLECTION_PARTITIONS, area_and_layer, collection_partition_key
from oa_dagster.assets.sets import SET_PROGRESS
from oa_dagster.collections.areas import AREA_IDS
from oa_dagster.jobs.collections import collections_job
from oa_dagster.platform.catalog import load_stored_catalog
from oa_dagster.resources.deployments import DEFAULT_COLLECTIONS_CRON
from oa_dagster.resources.store import OutputStoreResource
from oa_dagster.run_tags import (
    AFTER_SET_TAG,
    DOWNLOADS_PRIORITY,
    PRIORITY_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
    SCHEDULE_TAG,
)
from oa_dagster.sources.model import LAYERS

MAX_RECORDS = 50  # set_progress events read per tick (a busy set reports often)


def plan_collections(store: OutputStoreResource) -> list[str] | str:
    """The partition keys whose collections a build would change, or why nothing can be planned."""
    out = store.get_store()
    catalog = load_stored_catalog(out)
    if catalog is None:
        return f"no catalog in the store ({out.describe()}): nothing to collect yet"
    from oa_dagster.collections.plan import stale_collections  # pointer reads only; no build imports

    return [collection_partition_key(area, layer) for area, layer in stale_collections(out, catalog, list(LAYERS))]


def collections_request(run_key: str, tags: dict[str, str], partition_keys: list[str]) -> dg.RunRequest:
    """One run for these partitions. A multi-partition range spans each dimension from its first to its last key
    (areas × layers), so it can hold partitions that did not change: the run config names the ones to build."""
    order = COLLECTION_PARTITIONS.get_partition_keys()
    chosen = sorted(partition_keys, key=order.index)
    areas = sorted({area for area, _ in map(area_and_layer, chosen)}, key=AREA_IDS.index)
    layers = sorted({layer for _, layer in map(area_and_layer, chosen)}, key=LAYERS.index)
    start, end = collection_partition_key(areas[0], layers[0]), collection_partition_key(areas[-1], layers[-1])
    return dg.RunRequest(
        run_key=run_key,
        tags={**tags, PRIORITY_TAG: DOWNLOADS_PRIORITY, RANGE_START_TAG: start, RANGE_END_TAG: end},
        run_config={"ops": {"collections": {"config": {"partitions": chosen}}}},
    )


@dg.sensor(
    name="collections_after_set",
    job=collections_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Builds, in one run, the collection partitions that changed once set_progress is reported with "
    "finished=true.",
)
def collections_after_set(context: dg.SensorEvaluationContext, store: OutputStoreResource) -> dg.SensorResult:
    after = int(context.cursor) if context.cursor else None
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=SET_PROGRESS, after_storage_id=after),
        limit=MAX_RECORDS if after is not None else 1,  # first tick: only the newest, not the whole history
        ascending=after is not None,
    ).records
    if not records:
        return dg.SensorResult(skip_reason="no new set_progress materialization", cursor=context.cursor)
    cursor = max([after or 0, *(record.storage_id for record in records)])
    finished_sets = []
    for record in records:
        meta = record.asset_materialization.metadata if record.asset_materialization else {}
        if getattr(meta.get("finished"), "value", False) is True:
            finished_sets.append(str(getattr(meta.get("set"), "value", "") or f"progress-{record.storage_id}"))
    if not finished_sets:
        return dg.SensorResult(skip_reason="no set finished", cursor=str(cursor))
    set_id = finished_sets[-1]  # several sets ending in one tick: one build covers them all
    plan = plan_collections(store)
    if isinstance(plan, str) or not plan:
        reason = plan if isinstance(plan, str) else "no collection changed"
        return dg.SensorResult(skip_reason=f"{set_id} finished: {reason}", cursor=str(cursor))
    context.log.info(f"{set_id} finished: {len(plan)} collection partitions changed, one run builds them")
    request = collections_request(f"after-{set_id}", {AFTER_SET_TAG: set_id}, plan)
    return dg.SensorResult(run_requests=[request], cursor=str(cursor))


def build_collections_schedule(cron: str = DEFAULT_COLLECTIONS_CRON, running: bool = False) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="collections_schedule",
        cron_schedule=cron,
        job=collections_job,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED,
        description="The collection partitions that changed, in one run, every other night by default (no run "
        "when none did).",
    )
    def collections_schedule(
        context: dg.ScheduleEvaluationContext, store: OutputStoreResource
    ) -> dg.RunRequest | dg.SkipReason:
        stamp = context.scheduled_execution_time.strftime("%Y%m%dT%H%M")
        plan = plan_collections(store)
        if isinstance(plan, str) or not plan:
            return dg.SkipReason(plan if isinstance(plan, str) else "no collection changed")
        return collections_request(f"scheduled-{stamp}", {SCHEDULE_TAG: stamp}, plan)

    return collections_schedule


COLLECTION_SENSORS = [collections_after_set]
COLLECTION_SCHEDULES = [build_collections_schedule()]
