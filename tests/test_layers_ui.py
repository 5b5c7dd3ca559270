"""The layer assets as the UI sees them, through dagster-webserver's GraphQL API: a backfill launched from the UI
(run by the real daemon) packs partitions into ranged runs; an entry the sources skip is no partition and never
shows as data."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from tests.platform_helpers import (
    GraphQL,
    city_sources,
    csv_entry,
    local,
    local_instance_home,
    materialize_catalog,
    materialize_range,
    running_daemon,
    running_webserver,
    write_csv,
    write_source,
)

KEYS = [f"us/xx/s{i:02d}/city" for i in range(14)]
SKIPPED = "us/xx/zz/city"


@dataclass(frozen=True)
class UI:
    home: Path  # DAGSTER_HOME
    env: dict[str, str]  # what the webserver and the daemon run with
    resources: dict[str, Any]  # the same, for runs in this process
    graphql: GraphQL


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UI]:
    """A DAGSTER_HOME with 14 one-entry sources and one entry marked `skip: true`, its catalog materialized, and
    the webserver on it."""
    tmp = tmp_path_factory.mktemp("ui")
    write_csv(tmp / "a.csv", 3)
    sources = city_sources(tmp, {key.rsplit("/", 1)[0]: "a.csv" for key in KEYS})
    write_source(sources, "us/xx/zz", {"addresses": [csv_entry("city", "../../../a.csv", skip=True)]})
    home = local_instance_home(tmp / "home")
    env = {
        "OA_ENV": "local",
        "OA_DATA_DIR": str(tmp / "data"),
        "OA_SOURCES_DIR": str(sources),
        "OA_WORK_DIR": str(tmp / "work"),
    }
    resources = local(tmp, sources)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        materialize_catalog(instance, resources)
    with running_webserver(home, env, tmp / "webserver.log") as graphql:
        yield UI(home, env, resources, graphql)


def _wait(what: str, predicate: Any, timeout: float, log: Path) -> Any:
    deadline = time.monotonic() + timeout  # bounded: a stuck daemon fails the test, not CI
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}\n{log.read_text()[-3000:] if log.exists() else ''}")


LAUNCH_BACKFILL = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
    __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""


def test_a_backfill_from_the_ui_packs_the_partitions_into_ranged_runs(ui: UI, tmp_path: Path) -> None:
    """Re-running some entries from the UI: 12 partitions in three stretches give three ranged runs, not 12."""
    chosen = [key for key in KEYS if key not in ("us/xx/s04/city", "us/xx/s09/city")]
    launched = ui.graphql(
        LAUNCH_BACKFILL, params={"assetSelection": [{"path": ["addresses"]}], "partitionNames": chosen}
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    log = tmp_path / "daemon.log"
    with running_daemon(ui.home, ui.env, log), dg.DagsterInstance.from_config(str(ui.home)) as instance:
        backfill_runs = dg.RunsFilter(tags={"dagster/backfill": launched["backfillId"]})

        def done() -> tuple[list[dg.DagsterRun], set[str]] | None:
            runs = instance.get_runs(backfill_runs)
            materialized = instance.get_materialized_partitions(dg.AssetKey("addresses"))
            return (runs, materialized) if set(chosen) <= materialized and all(r.is_finished for r in runs) else None

        runs, materialized = _wait("the backfill's partitions", done, 240, log)
    assert len(runs) == 3 and all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)
    ranges = sorted(
        (run.tags["dagster/asset_partition_range_start"], run.tags["dagster/asset_partition_range_end"]) for run in runs
    )
    assert ranges == [
        ("us/xx/s00/city", "us/xx/s03/city"),
        ("us/xx/s05/city", "us/xx/s08/city"),
        ("us/xx/s10/city", "us/xx/s13/city"),
    ]
    assert set(chosen) <= materialized and not {"us/xx/s04/city", "us/xx/s09/city"} & materialized


PARTITIONS = """query { assetNodes(assetKeys: [{path: ["addresses"]}]) {
    partitionKeysByDimension { partitionKeys } partitionStats { numPartitions numMaterialized numFailed } } }"""
LATEST = """query($key: AssetKeyInput!) { assetOrError(assetKey: $key) { ... on Asset {
    assetMaterializations(limit: 1) { partition metadataEntries { label
      ... on TextMetadataEntry { text } ... on IntMetadataEntry { intValue } } } } } }"""


def test_an_entry_the_sources_skip_is_no_partition_and_never_the_latest_materialization(ui: UI) -> None:
    with dg.DagsterInstance.from_config(str(ui.home)) as instance:
        assert materialize_range(instance, ui.resources, "addresses", KEYS[0], KEYS[0]).success
    node = ui.graphql(PARTITIONS)["assetNodes"][0]
    assert node["partitionKeysByDimension"][0]["partitionKeys"][: len(KEYS)] == KEYS
    assert SKIPPED not in node["partitionKeysByDimension"][0]["partitionKeys"]
    assert node["partitionStats"]["numPartitions"] == len(KEYS) and node["partitionStats"]["numFailed"] == 0

    def latest(asset: str) -> dict[str, Any]:
        found = ui.graphql(LATEST, key={"path": [asset]})["assetOrError"]["assetMaterializations"][0]
        return {
            "partition": found["partition"],
            **{e["label"]: e.get("text", e.get("intValue")) for e in found["metadataEntries"]},
        }

    shown = latest("addresses")  # what the asset's overview shows as its latest materialization
    assert shown["partition"] in KEYS and shown["status"] == "promoted" and shown["feature_count"] == 3
    catalog = latest("source_catalog")  # the skipped entry is listed where the sources are
    assert catalog["addresses_skipped"] == 1 and catalog["addresses_skipped_keys"] == SKIPPED
