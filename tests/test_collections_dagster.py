"""The `collections` asset through `dg.materialize` with real resources (local store and S3 over moto), the
sensor that follows finished sets through `build_sensor_context` on a real instance, and the schedule."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from oa_dagster.assets.collections import COLLECTION_PARTITIONS, collections
from oa_dagster.assets.sets import SET_PROGRESS
from oa_dagster.collections import keys
from oa_dagster.jobs.collections import collections_job
from oa_dagster.platform.set_planning import SetProgress
from oa_dagster.platform.store import LocalStore, OutputStore
from oa_dagster.resources.deployments import local_resources, s3_resources
from oa_dagster.run_tags import DATA_VERSION_TAG
from oa_dagster.sensors.collections import (
    AFTER_SET_TAG,
    DEFAULT_COLLECTIONS_CRON,
    build_collections_schedule,
    collections_after_set,
)
from oa_dagster.sensors.sets import progress_metadata
from tests.collections_helpers import make_world
from tests.servers.fixtures import MOTO_CREDS, moto_bucket

pytest_plugins = ["tests.servers.fixtures"]
DOWNLOAD = "http://downloads.example.org/download"


def _setup(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[OutputStore, dict[str, Any]]:
    if kind == "local":
        resources = local_resources(tmp_path / "data", download_url=DOWNLOAD, work_dir=str(tmp_path / "work"))
        return LocalStore(tmp_path / "data", base_url=DOWNLOAD), resources
    url = request.getfixturevalue("moto_url")
    bucket = f"collections-asset-{tmp_path.name[-12:].lower().replace('_', '-')}"
    store = moto_bucket(url, bucket, download_url=DOWNLOAD)
    resources = {
        **local_resources(tmp_path / "unused", work_dir=str(tmp_path / "work")),
        **s3_resources(
            bucket, prefix="oa", endpoint_url=url, region_name="us-east-1", download_url=DOWNLOAD, s3_kwargs=MOTO_CREDS
        ),
    }
    return store, resources


def _partition(area: str, layer: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"area": area, "layer": layer})


def _metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    event = result.get_asset_materialization_events()[0]
    return {k: getattr(v, "value", v) for k, v in event.event_specific_data.materialization.metadata.items()}


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_asset_builds_one_area_and_layer_and_reports_it(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store, resources = _setup(kind, tmp_path, request)
    make_world(store, tmp_path, rows=10)
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [collections], partition_key=_partition("global", "addresses"), resources=resources, instance=instance
        )
        assert result.success
        meta = _metadata(result)
        assert meta["status"] == "free: built, share-alike: built"
        assert meta["entries"] == 10 and meta["features"] == 10 * 12
        assert meta["missing_count"] == 1 and meta["missing"] == ["za/durban/city"]
        assert meta["free_zip_url"] == f"{DOWNLOAD}/{keys.zip_key('addresses', 'global', 'free')}"
        assert meta["sa_parquet_url"] == f"{DOWNLOAD}/{keys.parquet_key('addresses', 'global', 'share-alike')}"
        assert meta["size"] == sum(
            meta[f"{short}_{kind_}_size"] for short in ("free", "sa") for kind_ in ("zip", "parquet")
        )
        assert store.exists(keys.zip_key("addresses", "global", "share-alike"))
        assert store.exists("openaddr-collected-global-sa.zip")
        version = result.get_asset_materialization_events()[0].event_specific_data.materialization.tags[
            DATA_VERSION_TAG
        ]

        again = dg.materialize(
            [collections], partition_key=_partition("global", "addresses"), resources=resources, instance=instance
        )
        assert _metadata(again)["status"] == "free: unchanged, share-alike: unchanged"
        tags = again.get_asset_materialization_events()[0].event_specific_data.materialization.tags
        assert tags[DATA_VERSION_TAG] == version

        forced = dg.materialize(
            [collections],
            partition_key=_partition("us_west", "parcels"),
            resources=resources,
            instance=instance,
            run_config={"ops": {"collections": {"config": {"force": True}}}},
        )
        assert _metadata(forced)["status"] == "free: built, share-alike: empty"
        assert _metadata(forced)["features"] == 6
        empty = dg.materialize(
            [collections], partition_key=_partition("europe", "centerlines"), resources=resources, instance=instance
        )
        assert _metadata(empty)["entries"] == 0 and "free_zip_url" not in _metadata(empty)


def test_asset_without_a_catalog_fails_saying_what_to_do(tmp_path: Path) -> None:
    resources = local_resources(tmp_path / "data")
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [collections],
            partition_key=_partition("asia", "addresses"),
            resources=resources,
            instance=instance,
            raise_on_error=False,
        )
    assert not result.success
    failure = result.get_step_failure_events()[0].event_specific_data.error.message
    assert "collections asia addresses: no catalog in the store" in failure and "source_catalog" in failure


def _report_progress(instance: dg.DagsterInstance, set_id: str, *, finished: bool) -> None:
    progress = SetProgress(set_id, "abc1234", started=time.time() - 60, total={"addresses": 3}, done={"addresses": 3})
    progress.finished = time.time() if finished else None
    instance.report_runless_asset_event(dg.AssetMaterialization(SET_PROGRESS, metadata=progress_metadata(progress)))


def test_sensor_requests_every_partition_once_a_set_finishes(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "data")
    world = make_world(store, tmp_path, rows=5)
    every = set(COLLECTION_PARTITIONS.get_partition_keys())
    assert len(every) == 36
    with dg.instance_for_test() as instance:
        first = collections_after_set(dg.build_sensor_context(instance=instance))
        assert not first.run_requests and first.skip_reason  # nothing reported yet

        _report_progress(instance, "set-20260101T0300", finished=False)
        context = dg.build_sensor_context(instance=instance)
        running = collections_after_set(context)
        assert not running.run_requests and running.cursor  # a set still running triggers nothing

        _report_progress(instance, "set-20260101T0300", finished=True)
        done = collections_after_set.evaluate_tick(
            dg.build_sensor_context(instance=instance, cursor=running.cursor, repository_def=_repository(tmp_path))
        )
        assert {r.partition_key for r in done.run_requests} == every
        assert len({r.run_key for r in done.run_requests}) == 36
        assert all(r.tags[AFTER_SET_TAG] == "set-20260101T0300" for r in done.run_requests)
        assert all(r.tags["dagster/priority"] == "-2" for r in done.run_requests)  # behind the next set's runs

        quiet = collections_after_set(dg.build_sensor_context(instance=instance, cursor=done.cursor))
        assert not quiet.run_requests  # the same finished set is not requested twice

        # a requested partition runs as is
        request = next(r for r in done.run_requests if r.partition_key == _partition("us_west", "addresses"))
        result = dg.materialize(
            [collections],
            partition_key=request.partition_key,
            resources=local_resources(tmp_path / "data"),
            instance=instance,
            tags=request.tags,
        )
        assert result.success and _metadata(result)["entries"] == 3
        assert world.catalog["id"] == "abc1234"

        # a fresh sensor (no cursor) after a finished set fires once for the newest report
        fresh = collections_after_set(dg.build_sensor_context(instance=instance))
        assert len(fresh.run_requests) == 36


def _repository(tmp_path: Path, schedule: dg.ScheduleDefinition | None = None) -> Any:
    """The definitions the daemon would evaluate against (run requests are resolved against the job's partitions)."""
    return dg.Definitions(
        assets=[collections],
        jobs=[collections_job],
        sensors=[collections_after_set],
        schedules=[schedule] if schedule else [],
        resources=local_resources(tmp_path / "data"),
    ).get_repository_def()


def test_schedule_every_other_night_requests_every_partition(tmp_path: Path) -> None:
    schedule = build_collections_schedule()
    assert schedule.cron_schedule == DEFAULT_COLLECTIONS_CRON == "0 3 */2 * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert build_collections_schedule("15 1 * * *", running=True).default_status == dg.DefaultScheduleStatus.RUNNING
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=datetime(2026, 3, 3, 3, 0, tzinfo=UTC),
            repository_def=_repository(tmp_path, schedule),
        )
        requests = list(schedule.evaluate_tick(context).run_requests or [])
    assert len(requests) == 36 and requests[0].run_key.startswith("scheduled-20260303T0300:")
    assert {r.partition_key for r in requests} == set(COLLECTION_PARTITIONS.get_partition_keys())
    assert collections_job.name == "collections_job"
