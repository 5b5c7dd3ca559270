"""Runless events written in bulk (`assets/bulk_events.py`) read back exactly as those written one at a time by
`report_runless_asset_event`, on SQLite and on Postgres: materializations, the data versions the UI's staleness
reads (indexed tags), the asset's latest materialization, materialized partitions and check executions."""

from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest
from dagster._core.events import DagsterEventType

from oa_dagster.assets.bulk_events import store_runless_events
from tests.platform_helpers import postgres_or_skip

ASSET = dg.AssetKey("addresses")
CHECKS = ("output_valid", "output_quality")


def events(partitions: list[str]) -> list[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    found: list[dg.AssetMaterialization | dg.AssetCheckEvaluation] = []
    for n, key in enumerate(partitions):
        found.append(
            dg.AssetMaterialization(
                asset_key=ASSET,
                partition=key,
                tags={"dagster/data_version": f"v-{key}"},
                metadata={"status": "unchanged", "features": n},
            )
        )
        found += [
            dg.AssetCheckEvaluation(
                asset_key=ASSET, check_name=name, passed=n % 3 != 0 or name == CHECKS[0], partition=key
            )
            for name in CHECKS
        ]
    return found


def readback(instance: dg.DagsterInstance) -> dict[str, Any]:
    storage = instance.event_log_storage
    records = instance.fetch_materializations(ASSET, limit=100).records
    latest = instance.get_latest_materialization_event(ASSET)
    checks = {
        name: [
            (r.partition, r.status.value, r.event.dagster_event.event_specific_data.passed if r.event else None)
            for r in storage.get_asset_check_execution_history(dg.AssetCheckKey(ASSET, name), limit=100)
        ]
        for name in CHECKS
    }
    return {
        "materializations": [
            (r.run_id, r.partition_key, r.asset_materialization.tags, dict(r.asset_materialization.metadata))
            for r in records
        ],
        "latest": (latest.asset_materialization.partition, latest.run_id) if latest else None,
        "partitions": storage.get_materialized_partitions(ASSET),
        "data_versions": storage.get_latest_tags_by_partition(
            ASSET, DagsterEventType.ASSET_MATERIALIZATION, tag_keys=["dagster/data_version"]
        ),
        "checks": checks,
        "asset_record_partition": storage.get_asset_records([ASSET])[
            0
        ].asset_entry.last_materialization.asset_materialization.partition,
    }


@pytest.fixture(params=["sqlite", "postgres"])
def instances(request: pytest.FixtureRequest) -> Iterator[tuple[dg.DagsterInstance, dg.DagsterInstance]]:
    """Two empty instances on the same kind of storage."""
    if request.param == "sqlite":
        with dg.instance_for_test() as one, dg.instance_for_test() as other:
            yield one, other
        return
    with (
        postgres_or_skip("oa_bulk_a") as url_a,
        postgres_or_skip("oa_bulk_b") as url_b,
        dg.instance_for_test(overrides={"storage": {"postgres": {"postgres_url": url_a}}}) as one,
        dg.instance_for_test(overrides={"storage": {"postgres": {"postgres_url": url_b}}}) as other,
    ):
        yield one, other


def test_bulk_writes_read_back_like_single_runless_events(
    instances: tuple[dg.DagsterInstance, dg.DagsterInstance],
) -> None:
    bulk, single = instances
    first, second = [f"us/xx/e{i:02d}" for i in range(5)], ["us/xx/e07", "us/xx/e08"]
    for batch in (first, second):
        store_runless_events(bulk, events(batch))
        for event in events(batch):
            single.report_runless_asset_event(event)
    found, expected = readback(bulk), readback(single)
    assert found == expected
    assert len(found["materializations"]) == 7 and found["latest"] == ("us/xx/e08", "")
    assert found["data_versions"]["us/xx/e03"] == {"dagster/data_version": "v-us/xx/e03"}
    assert [r[1] for r in found["checks"]["output_quality"]].count("FAILED") == 3  # e00, e03 and e07


def test_a_partition_carried_over_again_gets_its_new_check_results(
    instances: tuple[dg.DagsterInstance, dg.DagsterInstance],
) -> None:
    bulk, single = instances
    key = "us/xx/e00"
    passed, failed = events([key]), events([key])  # e00 is entry 0: its quality check fails
    passed[2] = dg.AssetCheckEvaluation(asset_key=ASSET, check_name=CHECKS[1], passed=True, partition=key)
    store_runless_events(bulk, failed)
    store_runless_events(bulk, passed)
    # one at a time, Dagster refuses a partition's second runless evaluation of a check
    single.report_runless_asset_event(failed[2])
    with pytest.raises(Exception, match="(?i)unique"):
        single.report_runless_asset_event(passed[2])
    found = readback(bulk)
    assert [m[1] for m in found["materializations"]] == [key, key]
    assert found["checks"] == {CHECKS[0]: [(key, "SUCCEEDED", True)], CHECKS[1]: [(key, "SUCCEEDED", True)]}


def test_nothing_to_write_writes_nothing() -> None:
    with dg.instance_for_test() as instance:
        store_runless_events(instance, [])
        assert instance.fetch_materializations(ASSET, limit=1).records == []
