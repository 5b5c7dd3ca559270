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
    collections_request,
)
from oa_dagster.sensors.coverage import coverage_after_collections
from oa_dagster.sensors.sets import progress_metadata
from tests.collections_helpers import address_lines, make_world, publish_output
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


def _keys(*pairs: tuple[str, str]) -> set[str]:
    return {str(_partition(area, layer)) for area, layer in pairs}


# what make_world publishes: addresses in eight of the nine areas (none in the U.S. Midwest), parcels in two
WORLD_PARTITIONS = _keys(
    *[
        (area, "addresses")
        for area in ("global", "us_northeast", "us_south", "us_west", "europe", "asia", "south_america")
    ],
    ("north_america", "addresses"),
    ("global", "parcels"),
    ("us_west", "parcels"),
)


def _run(
    request: dg.RunRequest, instance: dg.DagsterInstance, tmp_path: Path, raise_on_error: bool = True
) -> dg.ExecuteInProcessResult:
    """A requested run of `collections_job` as the daemon would launch it: its tags (the partition range), its run
    config."""
    job = _repository(tmp_path).get_job(collections_job.name)
    return job.execute_in_process(
        instance=instance, tags=request.tags, run_config=request.run_config, raise_on_error=raise_on_error
    )


def test_sensor_builds_the_changed_partitions_in_one_run_once_a_set_finishes(tmp_path: Path) -> None:
    """One finished set, one run for every area × layer partition that changed (not 36 runs), then one coverage
    run; no run at all when nothing changed. This replaces the test that pinned one request per partition."""
    store = LocalStore(tmp_path / "data")
    world = make_world(store, tmp_path, rows=5)
    assert len(COLLECTION_PARTITIONS.get_partition_keys()) == 36
    resources = local_resources(tmp_path / "data")
    with dg.instance_for_test() as instance:

        def tick(cursor: str | None) -> dg.SensorResult:
            with dg.build_sensor_context(  # closed: a context with resources left open leaks its instance
                instance=instance, cursor=cursor, resources=resources, repository_def=_repository(tmp_path)
            ) as context:
                return collections_after_set.evaluate_tick(context)

        first = tick(None)
        assert not first.run_requests and first.skip_message  # nothing reported yet

        _report_progress(instance, "set-20260101T0300", finished=False)
        running = tick(None)
        assert not running.run_requests and running.cursor  # a set still running triggers nothing

        _report_progress(instance, "set-20260101T0300", finished=True)
        done = tick(running.cursor)
        [request] = done.run_requests
        assert set(request.run_config["ops"]["collections"]["config"]["partitions"]) == WORLD_PARTITIONS
        assert request.run_key == "after-set-20260101T0300"
        assert request.tags[AFTER_SET_TAG] == "set-20260101T0300"
        assert request.tags["dagster/priority"] == "-2"  # behind the next set's runs
        assert not tick(done.cursor).run_requests  # the same finished set is not requested twice

        result = _run(request, instance, tmp_path)
        assert result.success
        built = {e.event_specific_data.materialization.partition for e in result.get_asset_materialization_events()}
        assert built == WORLD_PARTITIONS  # the range's unchanged partitions (us_midwest, ...) are left out
        assert instance.get_materialized_partitions(collections.key) == WORLD_PARTITIONS  # what the UI shows
        assert len(instance.get_runs(filters=dg.RunsFilter(job_name=collections_job.name))) == 1
        by_partition = {
            e.event_specific_data.materialization.partition: e.event_specific_data.materialization
            for e in result.get_asset_materialization_events()
        }
        us_west = by_partition[str(_partition("us_west", "addresses"))]
        assert us_west.metadata["entries"].value == 3 and DATA_VERSION_TAG in us_west.tags
        assert world.catalog["id"] == "abc1234"

        coverage = coverage_after_collections(dg.build_sensor_context(instance=instance))
        assert isinstance(coverage, dg.SensorResult)  # one coverage run follows the one collections run
        assert [r.run_key for r in coverage.run_requests] == ["after-after_set:set-20260101T0300"]

        _report_progress(instance, "set-20260108T0300", finished=True)  # a set that changed nothing
        quiet = tick(done.cursor)
        assert not quiet.run_requests and "no collection changed" in str(quiet.skip_message)

        publish_output(store, "addresses", "de/berlin/city", address_lines(13.4, 52.5, 4, tag="B"), tmp_path / "new")
        _report_progress(instance, "set-20260115T0300", finished=True)
        changed = tick(quiet.cursor)
        [again] = changed.run_requests
        assert again.run_config["ops"]["collections"]["config"]["partitions"] == [
            str(_partition("global", "addresses")),
            str(_partition("europe", "addresses")),
        ]
        rebuilt = _run(again, instance, tmp_path)
        assert {
            e.event_specific_data.materialization.partition for e in rebuilt.get_asset_materialization_events()
        } == (_keys(("europe", "addresses"), ("global", "addresses")))

        # a fresh sensor (no cursor) after a finished set plans for the newest report: nothing changed since
        fresh = tick(None)
        assert not fresh.run_requests and "no collection changed" in str(fresh.skip_message)


def test_a_collection_that_fails_does_not_stop_the_others_of_its_run(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "data")
    make_world(store, tmp_path, rows=5)
    (tmp_path / "data" / "collections").mkdir()
    (tmp_path / "data" / "collections" / "parcels").write_text("a file where the folder goes")  # parcels fail
    with dg.instance_for_test() as instance:
        request = collections_request("by-hand", {}, sorted(WORLD_PARTITIONS))
        result = _run(request, instance, tmp_path, raise_on_error=False)
    built = {e.event_specific_data.materialization.partition for e in result.get_asset_materialization_events()}
    assert not result.success
    assert built == WORLD_PARTITIONS - _keys(("global", "parcels"), ("us_west", "parcels"))
    failure = result.get_step_failure_events()[0].event_specific_data.error.message
    assert "collections: 2 of 10 failed: global parcels" in failure and "us_west parcels" in failure


def _repository(tmp_path: Path, schedule: dg.ScheduleDefinition | None = None) -> Any:
    """The definitions the daemon would evaluate against (run requests are resolved against the job's partitions)."""
    return dg.Definitions(
        assets=[collections],
        jobs=[collections_job],
        sensors=[collections_after_set],
        schedules=[schedule] if schedule else [],
        resources=local_resources(tmp_path / "data"),
    ).get_repository_def()


def test_schedule_every_other_night_builds_what_changed_in_one_run(tmp_path: Path) -> None:
    schedule = build_collections_schedule()
    assert schedule.cron_schedule == DEFAULT_COLLECTIONS_CRON == "0 3 */2 * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert build_collections_schedule("15 1 * * *", running=True).default_status == dg.DefaultScheduleStatus.RUNNING
    make_world(LocalStore(tmp_path / "data"), tmp_path, rows=5)
    with dg.instance_for_test() as instance:

        def evaluate(night: int) -> dg.ScheduleExecutionData:
            with dg.build_schedule_context(
                instance=instance,
                scheduled_execution_time=datetime(2026, 3, night, 3, 0, tzinfo=UTC),
                repository_def=_repository(tmp_path, schedule),
                resources=local_resources(tmp_path / "data"),
            ) as context:
                return schedule.evaluate_tick(context)

        [request] = list(evaluate(3).run_requests or [])
        assert request.run_key == "scheduled-20260303T0300"
        assert set(request.run_config["ops"]["collections"]["config"]["partitions"]) == WORLD_PARTITIONS
        assert _run(request, instance, tmp_path).success
        quiet = evaluate(5)  # the nightly no-change case: no run
        assert not quiet.run_requests and "no collection changed" in str(quiet.skip_message)
    assert collections_job.name == "collections_job"
