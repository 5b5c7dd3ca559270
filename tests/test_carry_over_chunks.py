"""Carried-over entries stored in chunks and written a transaction at a time by set_launcher, tick after tick
(`assets/carry_over.py`), and carried over again by the next set (a partition's checks evaluated runless twice)."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from oa_dagster.assets import carry_over
from oa_dagster.platform.store import LocalStore, get_json, put_json
from oa_dagster.run_tags import LAUNCH_ALL, LAUNCH_TAG, SET_TAG
from oa_dagster.sensors.sets import set_launcher
from tests.platform_helpers import local, materialize_catalog, write_source
from tests.servers.downloads import DownloadServer
from tests.test_incremental_sets import CSV_CONFORM, check_results, csv_bytes, entry
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


def _set(instance: dg.DagsterInstance, resources: dict, set_id: str, cursor: str | None) -> str | None:
    """One set through the catalog run, its runs and set_launcher's ticks until it finished; the sensor's cursor."""
    materialize_catalog(instance, resources, tags={SET_TAG: set_id, LAUNCH_TAG: LAUNCH_ALL})
    result = set_launcher(dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor))
    _run_requests(instance, resources, list(result.run_requests))
    cursor = result.cursor
    for _ in range(4):
        cursor = set_launcher(dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor)).cursor
        if _progress(instance)["finished"]:
            return cursor
    raise AssertionError(f"{set_id} did not finish")


def _latest(instance: dg.DagsterInstance) -> dict[str, dg.AssetMaterialization]:
    latest: dict[str, dg.AssetMaterialization] = {}
    for record in instance.fetch_materializations(dg.AssetKey("addresses"), limit=20).records:
        event = record.asset_materialization
        assert event is not None and event.partition is not None
        latest.setdefault(event.partition, event)
    return latest


def test_the_planning_keeps_carried_outputs_as_plain_data_and_the_sensor_builds_the_events_a_run_would(
    tmp_path: Path, download_server: DownloadServer
) -> None:
    """The catalog run stores each carried entry's output and previous count, no serialized Dagster event (the
    planning, which the set's runs wait for, builds none); the sensor's events show what the entry's run showed."""
    names = ["p0", "p1"]
    for name in names:
        download_server.route(f"/{name}.csv", body=csv_bytes(4), etag=f'"{name}-1"')
    licence = {"url": "https://example.org/licence", "text": "Open", "attribution name": "Example County"}
    extra = {"license": licence, "website": "https://example.org/gis"}
    sources = tmp_path / "sources"
    layer = [{**entry(n, "http", download_server.url(f"/{n}.csv"), CSV_CONFORM), **extra} for n in names]
    write_source(sources, "us/xx/kept", {"addresses": layer})
    resources = local(tmp_path, sources, set_slots=1, preview=True)
    store = LocalStore(tmp_path / "data")
    with dg.instance_for_test() as instance:
        cursor = _set(instance, resources, "set-1", None)
        first = _latest(instance)
        _set(instance, resources, "set-2", cursor)
        second = _latest(instance)
        listing = get_json(store, carry_over.carried_key("set-2"))
        chunk_text = (store.root / listing["chunks"][0]["key"]).read_text()
    assert listing["entries"] == 2 and listing["catalog_id"]
    stored = json.loads(chunk_text)
    assert "__class__" not in chunk_text  # plain data: no Dagster serializer in the planning
    assert {stored[k]["previous"] for k in stored} == {4}  # the count the quality check compares with
    for name in names:
        key = f"us/xx/kept/{name}"
        before, after = first[key].metadata, second[key].metadata
        assert second[key].tags == first[key].tags  # the same data version
        assert after["status"].value == "unchanged" and after["set"].value == "set-2"
        assert after["quality_gate"].value == "carried over (promoted)" and after["previous_feature_count"].value == 4
        for same in ("feature_count", "fingerprint", "url_output", "files", "licence", "licence_url", "website"):
            assert after[same] == before[same], same
        assert after["attribution"].value == "Example County"
        assert after["sample"] == before["sample"] and after["preview"] == before["preview"]  # columns in order
        assert before["preview"].value.startswith("![preview](data:image/png;base64,")


def test_carried_events_serialized_by_an_older_planning_are_still_written(tmp_path: Path) -> None:
    """A set planned before the planning kept plain outputs: its chunks hold each entry's serialized events."""
    from tests.test_bulk_events import events

    store = LocalStore(tmp_path / "data")
    keys = ["us/xx/a", "us/xx/b"]
    chunk = carry_over.chunk_key("set-0", "addresses", 0)
    put_json(store, chunk, {k: dg.serialize_value(events([k])) for k in keys})
    put_json(
        store,
        carry_over.carried_key("set-0"),
        {"entries": 2, "chunks": [{"key": chunk, "layer": "addresses", "entries": 2}]},
    )
    with dg.instance_for_test() as instance:
        assert carry_over.write_carried_events(instance, store, "set-0", 0) == (2, 2)
        written = instance.fetch_materializations(dg.AssetKey("addresses"), limit=10).records
    assert sorted(r.partition_key for r in written) == keys
