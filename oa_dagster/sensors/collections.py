"""When collections are built: after every finished set, and on a schedule every other night.

`collections_after_set` follows `set_progress` materializations (cursor: the last storage id seen) and, for each
one reported with `finished: true`, requests every area × layer partition once (run key per set and partition).
`collections_schedule` (cron `DEFAULT_COLLECTIONS_CRON` unless the deployment gives another) requests them too,
which picks up accepted held runs and single-entry reruns between sets. Unchanged partitions finish in seconds.
"""

import dagster as dg

from oa_dagster.assets.collections import collection_partition_keys
from oa_dagster.assets.sets import SET_PROGRESS
from oa_dagster.jobs.collections import collections_job
from oa_dagster.resources.deployments import DEFAULT_COLLECTIONS_CRON
from oa_dagster.run_tags import AFTER_SET_TAG, DOWNLOADS_PRIORITY, PRIORITY_TAG, SCHEDULE_TAG

MAX_RECORDS = 50  # set_progress events read per tick (a busy set reports often)


def _requests(run_key_prefix: str, tags: dict[str, str]) -> list[dg.RunRequest]:
    return [
        dg.RunRequest(
            run_key=f"{run_key_prefix}:{key}",
            partition_key=key,
            tags={**tags, PRIORITY_TAG: DOWNLOADS_PRIORITY},
        )
        for key in collection_partition_keys()
    ]


@dg.sensor(
    name="collections_after_set",
    job=collections_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Builds every collection partition when set_progress is reported with finished=true.",
)
def collections_after_set(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    after = int(context.cursor) if context.cursor else None
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=SET_PROGRESS, after_storage_id=after),
        limit=MAX_RECORDS if after is not None else 1,  # first tick: only the newest, not the whole history
        ascending=after is not None,
    ).records
    requests: list[dg.RunRequest] = []
    cursor = after or 0
    for record in records:
        cursor = max(cursor, record.storage_id)
        meta = record.asset_materialization.metadata if record.asset_materialization else {}
        finished = getattr(meta.get("finished"), "value", False)
        if finished is True:
            set_id = str(getattr(meta.get("set"), "value", "") or f"progress-{record.storage_id}")
            context.log.info(f"{set_id} finished: requesting every collection partition")
            requests += _requests(f"after-{set_id}", {AFTER_SET_TAG: set_id})
    if not records:
        return dg.SensorResult(skip_reason="no new set_progress materialization", cursor=context.cursor)
    return dg.SensorResult(run_requests=requests, cursor=str(cursor))


def build_collections_schedule(cron: str = DEFAULT_COLLECTIONS_CRON, running: bool = False) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="collections_schedule",
        cron_schedule=cron,
        job=collections_job,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED,
        description="Every collection partition, every other night by default (unchanged ones take seconds).",
    )
    def collections_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
        stamp = context.scheduled_execution_time.strftime("%Y%m%dT%H%M")
        return _requests(f"scheduled-{stamp}", {SCHEDULE_TAG: stamp})

    return collections_schedule


COLLECTION_SENSORS = [collections_after_set]
COLLECTION_SCHEDULES = [build_collections_schedule()]
