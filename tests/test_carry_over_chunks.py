"""Carried-over entries stored in chunks and written a transaction at a time by set_launcher, tick after tick
(`assets/carry_over.py`), and carried over again by the next set (a partition's checks evaluated runless twice)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from oa_dagster.assets import carry_over
from oa_dagster.platform.store import LocalStore, get_json, put_json
from oa_dagster.run_tags import LAUNCH_ALL, LAUNCH_TAG, SET_TAG
from oa_dagster.sensors.sets import set_launcher
from tests.platform_helpers import materialize_catalog
from tests.servers.downloads import DownloadServer
from tests.test_incremental_sets import check_results, csv_bytes
from tests.test_set_planning_probes import _run_requests, etag_csv_sources

pytest_plugins = ["tests.servers.fixtures"]


def _progress(instance: dg.DagsterInstance) -> dict[str, object]:
    record = instance.fetch_materializations(dg.AssetKey("set_progress"), limit=1).records[0]
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


def test_carried_chunks_are_all_written_a_transaction_per_tick_and_again_in_the_next_set(
    tmp_path: Path, download_server: DownloadServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(carry_over, "CHUNK_ENTRIES", 3)  # 7 carried entries: chunks of 3, 3 and 1
    monkeypatch.setattr(carry_over, "WRITE_ENTRIES", 2)  # a transaction of 2 entries, then the budget is spent
    monkeypatch.setattr(carry_over, "WRITE_BUDGET_SECONDS", 0.0)
    names, routes, resources = etag_csv_sources(tmp_path, download_server)
    store = LocalStore(tmp_path / "data")
    with dg.instance_for_test() as instance:
        cursor = None
        for set_id, changed in (("set-1", None), ("set-2", "e04"), ("set-3", None)):
            if changed:
                routes[changed].body, routes[changed].etag = csv_bytes(6), f'"{changed}-2"'
            materialize_catalog(instance, resources, tags={SET_TAG: set_id, LAUNCH_TAG: LAUNCH_ALL})
            result = set_launcher(dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor))
            run_ids = _run_requests(instance, resources, list(result.run_requests))
            cursor, written = result.cursor, []
            for _ in range(10):
                cursor = set_launcher(
                    dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor)
                ).cursor
                progress = _progress(instance)
                written.append(progress["unchanged"])
                if progress["finished"]:
                    break
            listing = get_json(store, carry_over.carried_key(set_id))
            if set_id == "set-2":
                set2_runs = run_ids
                # 7 carried, 2 a tick: the set finishes at the tick after the last of them is written
                assert [c["entries"] for c in listing["chunks"]] == [3, 3, 1]
                assert written == [2, 4, 6, 7, 7]
            if set_id == "set-3":  # nothing changed: every entry carried, e04 for the first time
                assert listing["entries"] == 8 and not run_ids and written[-1] == 8
            assert progress["finished"] and progress["failed"] == 0 and progress["done"] == 8
        latest = instance.fetch_materializations(dg.AssetKey("addresses"), limit=1).records[0]
        assert latest.run_id == "" and latest.asset_materialization.metadata["set"].value == "set-3"
        # e03 carried in set-2 and set-3: its checks show set-3's evaluations; e04 processed by a set-2 run
        assert check_results(instance, "", "us/xx/web/e03") == {"output_valid": True, "output_quality": True}
        assert check_results(instance, set2_runs[0], "us/xx/web/e04") == {"output_valid": True, "output_quality": True}
        executions = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey("addresses"), "output_valid"), limit=100
        )
        runless = [r for r in executions if r.run_id == ""]
        assert sorted(r.partition for r in runless) == [f"us/xx/web/{n}" for n in names]  # one row each, latest
        e03 = next(r for r in runless if r.partition == "us/xx/web/e03")
        assert e03.event is not None and e03.event.timestamp >= latest.timestamp - 60


def test_a_set_planned_before_chunks_has_its_carried_events_written(tmp_path: Path) -> None:
    from tests.test_bulk_events import events

    store = LocalStore(tmp_path / "data")
    keys = ["us/xx/a", "us/xx/b", "us/xx/c"]
    # the one file a catalog run wrote before chunks: every layer's entries, each its serialized events
    put_json(store, carry_over.carried_key("set-0"), {"addresses": {k: dg.serialize_value(events([k])) for k in keys}})
    with dg.instance_for_test() as instance:
        assert carry_over.write_carried_events(instance, store, "set-0", 1) == (3, 3)  # from entry 1 on
        written = instance.fetch_materializations(dg.AssetKey("addresses"), limit=10).records
    assert sorted(r.partition_key for r in written) == ["us/xx/b", "us/xx/c"]
