"""A set's planning: upstream sizes pack the entries never run before, and the entries whose upstream did not change
are recorded in bulk by the set_launcher sensor instead of by runs (`platform/set_probing.py`, `carry_over.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg

from oa_dagster.platform.set_planning import PRIOR_RATES, Rate, estimate_seconds, learn_rates
from oa_dagster.platform.set_probing import plan_key
from oa_dagster.platform.store import LocalStore, get_json
from oa_dagster.run_tags import LAUNCH_ALL, LAUNCH_TAG, SET_TAG
from oa_dagster.sensors.sets import expected_seconds, set_launcher
from tests.platform_helpers import local, materialize_catalog, partition_status, write_source
from tests.servers.arcgis import FakeArcGISServer, FakeLayer, point_features
from tests.servers.downloads import DownloadServer
from tests.test_incremental_sets import CSV_CONFORM, EDITED, ESRI_CONFORM, check_results, csv_bytes, entry, run_set

pytest_plugins = ["tests.servers.fixtures"]

RANGE = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def test_sizes_become_seconds_at_a_rate_learnt_from_entries_that_ran() -> None:
    assert estimate_seconds({"unit": "features", "amount": 5000}) == PRIOR_RATES["features"].seconds(5000)
    assert estimate_seconds({"unit": "bytes", "amount": 100}) == PRIOR_RATES["bytes"].seconds(100)
    assert estimate_seconds(None) is None and estimate_seconds({"unit": "rows", "amount": 1}) is None
    # three layers of 1,000 features that took 3 s each: 2 s per 1,000 beyond the fixed second
    learnt = learn_rates([("features", 1000, 3.0)] * 3, {"features": Rate(1.0, 0.5), "bytes": Rate(0.5, 0.1)})
    assert learnt["features"] == Rate(1.0, 0.002) and learnt["bytes"] == Rate(0.5, 0.1)
    assert learn_rates([("features", 1000, 3.0)] * 2)["features"] == PRIOR_RATES["features"]  # too few to learn
    entries = {f"l{i}": {"seconds": 3.0} for i in range(3)} | {"new": {}, "file": {}}
    sized = {f"l{i}": {"unit": "features", "amount": 1000} for i in range(3)}
    sized |= {"new": {"unit": "features", "amount": 4000}}
    expected = expected_seconds(entries, sized)
    assert expected["l0"] == 3.0 and expected["new"] == 1.0 + 4000 * 0.002  # the learnt rate
    assert "file" not in expected  # nothing known: the planner's guess


def _run_requests(instance: dg.DagsterInstance, resources: dict[str, Any], requests: list[dg.RunRequest]) -> list[str]:
    from oa_dagster.definitions import build_definitions

    defs = build_definitions(resources)
    ids = []
    for request in requests:
        job = defs.resolve_job_def(request.job_name)
        ids.append(job.execute_in_process(instance=instance, tags=request.tags, raise_on_error=False).run_id)
    return ids


def _finish(instance: dg.DagsterInstance, resources: dict[str, Any], cursor: str | None) -> dict[str, Any]:
    for _ in range(3):
        cursor = set_launcher(dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor)).cursor
        record = instance.fetch_materializations(dg.AssetKey("set_progress"), limit=1).records[0]
        progress = {k: v.value for k, v in record.asset_materialization.metadata.items()}
        if progress["finished"]:
            return progress
    raise AssertionError(f"the set did not finish: {progress['summary']}")


def test_an_arcgis_count_and_a_content_length_pack_a_first_set_and_an_unsized_entry_is_processed(
    tmp_path: Path, download_server: DownloadServer, arcgis_server: FakeArcGISServer
) -> None:
    for name in ("c1", "c2", "c3", "c4"):
        download_server.route(f"/{name}.csv", body=csv_bytes(3), content_type="text/csv")
    # a HEAD refused (405): its size stays unknown, the download still works (it follows the redirect)
    download_server.route("/moved.csv", redirect="/c1.csv")
    big = FakeLayer(point_features(1200), max_record_count=1000, editing_info=dict(EDITED))
    sources = tmp_path / "sources"
    csvs = [entry(n, "http", download_server.url(f"/{n}.csv"), CSV_CONFORM) for n in ("c1", "c2", "c3", "c4")]
    csvs.append(entry("moved", "http", download_server.url("/moved.csv"), CSV_CONFORM))
    write_source(sources, "us/xx/csv", {"addresses": csvs})
    layer_url = arcgis_server.add_layer("big", big)
    write_source(sources, "us/xx/gis", {"addresses": [entry("big", "ESRI", layer_url, ESRI_CONFORM)]})
    resources = local(tmp_path, sources, batch_target_seconds=2.0, set_slots=1)
    with dg.instance_for_test() as instance:
        catalog = materialize_catalog(instance, resources, tags={SET_TAG: "set-1", LAUNCH_TAG: LAUNCH_ALL})
        meta = catalog.asset_materializations_for_node("source_catalog")[0].metadata
        result = set_launcher(dg.build_sensor_context(instance=instance, resources=resources))
        plan = get_json(LocalStore(tmp_path / "data"), plan_key("set-1"))
        _run_requests(instance, resources, list(result.run_requests))
        progress = _finish(instance, resources, result.cursor)
    assert meta["plan_sized"].value == 5 and meta["plan_carried"].value == 0
    assert plan is not None
    entries = plan["entries"]["addresses"]
    assert entries["us/xx/gis/big"]["size"] == {"unit": "features", "amount": 1200}  # one returnCountOnly query
    assert entries["us/xx/csv/c1"]["size"] == {"unit": "bytes", "amount": len(csv_bytes(3))}  # Content-Length
    assert entries["us/xx/csv/moved"]["size"] is None
    # 0.6 s expected per small file: three per 2 s run; the unsized entry by the 5 s guess and the 1,200-feature
    # layer (3.4 s) alone. Packed by the guess alone, each of the six would have run alone.
    batches = [(int(r.tags["oa/entries"]), r.tags[RANGE[0]], r.tags[RANGE[1]]) for r in result.run_requests]
    assert batches == [
        (3, "us/xx/csv/c1", "us/xx/csv/c3"),
        (1, "us/xx/csv/c4", "us/xx/csv/c4"),
        (1, "us/xx/csv/moved", "us/xx/csv/moved"),
        (1, "us/xx/gis/big", "us/xx/gis/big"),
    ]
    assert progress["done"] == 6 and progress["failed"] == 0 and progress["unchanged"] == 0


def etag_csv_sources(tmp_path: Path, download_server: DownloadServer) -> tuple[list[str], dict[str, Any], dict]:
    """Eight CSV entries of one source served with ETags, and the local resources (one set slot) that read them."""
    names = [f"e{i:02d}" for i in range(8)]
    routes = {n: download_server.route(f"/{n}.csv", body=csv_bytes(4), etag=f'"{n}-1"') for n in names}
    sources = tmp_path / "sources"
    write_source(
        sources,
        "us/xx/web",
        {"addresses": [entry(n, "http", download_server.url(f"/{n}.csv"), CSV_CONFORM) for n in names]},
    )
    return names, routes, local(tmp_path, sources, set_slots=1)


def test_unchanged_entries_are_recorded_in_bulk_and_only_changed_ones_run(
    tmp_path: Path, download_server: DownloadServer
) -> None:
    names, routes, resources = etag_csv_sources(tmp_path, download_server)
    with dg.instance_for_test() as instance:
        materialize_catalog(instance, resources, tags={SET_TAG: "set-1", LAUNCH_TAG: LAUNCH_ALL})
        first = set_launcher(dg.build_sensor_context(instance=instance, resources=resources))
        _run_requests(instance, resources, list(first.run_requests))
        cursor = first.cursor
        for _ in range(2):
            cursor = set_launcher(dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor)).cursor
        set1 = {
            r.asset_materialization.partition: r.asset_materialization.tags["dagster/data_version"]
            for r in instance.fetch_materializations(dg.AssetKey("addresses"), limit=100).records
        }
        # two upstreams change; the six others answer 304
        for name in ("e02", "e05"):
            routes[name].body, routes[name].etag = csv_bytes(6), f'"{name}-2"'
        hits = {n: r.hits for n, r in routes.items()}
        catalog = materialize_catalog(instance, resources, tags={SET_TAG: "set-2", LAUNCH_TAG: LAUNCH_ALL})
        meta = catalog.asset_materializations_for_node("source_catalog")[0].metadata
        second = set_launcher(dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor))
        requests = list(second.run_requests)
        run_ids = _run_requests(instance, resources, requests)
        progress = _finish(instance, resources, second.cursor)
        latest: dict[str, Any] = {}
        for record in instance.fetch_materializations(dg.AssetKey("addresses"), limit=100).records:
            event = record.asset_materialization
            if event.partition not in latest:
                latest[event.partition] = (record.run_id, event.tags["dagster/data_version"], event.metadata)
        carried_checks = check_results(instance, latest["us/xx/web/e03"][0], "us/xx/web/e03")
        run_keys = {
            e.partition
            for run_id in run_ids
            for r in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
            if (e := r.dagster_event.event_specific_data.materialization) is not None
        }
        plan = get_json(LocalStore(tmp_path / "data"), plan_key("set-2"))
    assert meta["plan_probed"].value == 8 and meta["plan_carried"].value == 6
    # one run for the two changed entries: its batch spans the carried ones between them, which it skips; Dagster's
    # range holds its first entry only (no planned events for the carried ones), `oa/batch_end` its last
    assert len(requests) == 1
    tags = requests[0].tags
    assert (tags[RANGE[0]], tags[RANGE[1]], tags["oa/batch_end"], tags["oa/entries"]) == (
        "us/xx/web/e02",
        "us/xx/web/e02",
        "us/xx/web/e05",
        "2",
    )
    assert run_keys == {"us/xx/web/e02", "us/xx/web/e05"}
    # each upstream asked once in the set: the planning's conditional GET; the changed ones then downloaded
    assert {n: r.hits - hits[n] for n, r in routes.items()} == {n: 2 if n in ("e02", "e05") else 1 for n in names}
    assert plan["entries"]["addresses"]["us/xx/web/e03"]["signal"] == 'HTTP 304 Not Modified (ETag "e03-1")'
    # the carried ones: one runless materialization each, same data version, both checks, counted as unchanged
    for name in names:
        run_id, version, metadata = latest[f"us/xx/web/{name}"]
        changed = name in ("e02", "e05")
        assert (run_id in run_ids) == changed and version == set1[f"us/xx/web/{name}"]  # the entry's version
        assert metadata["status"].value == ("promoted" if changed else "unchanged")
        assert metadata["set"].value == "set-2"
    assert carried_checks == {"output_valid": True, "output_quality": True}
    assert progress["done"] == 8 and progress["unchanged"] == 6 and progress["failed"] == 0 and progress["runs"] == 1


def test_a_run_of_an_incremental_set_plans_its_changed_entries_only_and_one_that_fails_shows_failed(
    tmp_path: Path, download_server: DownloadServer
) -> None:
    """Creating the run plans its first entry (Dagster's range); the run plans its other changed entries itself, so
    the UI shows them in progress, then failed when they fail, as a range run's would; the carried ones between them
    get no planned event."""
    names, routes, resources = etag_csv_sources(tmp_path, download_server)
    keys = [f"us/xx/web/{n}" for n in names]
    with dg.instance_for_test() as instance:
        cursor, first = run_set(instance, resources, "set-1", None)
        assert first["finished"] and first["done"] == 8
        for name in ("e01", "e04", "e06"):  # three upstreams change; e04 is gone by the time its run downloads it
            routes[name].body, routes[name].etag = csv_bytes(6), f'"{name}-2"'
        materialize_catalog(instance, resources, tags={SET_TAG: "set-2", LAUNCH_TAG: LAUNCH_ALL})
        second = set_launcher(dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor))
        routes["e04"].status = 404
        (run_id,) = _run_requests(instance, resources, list(second.run_requests))
        planned = {
            r.dagster_event.event_specific_data.partition
            for r in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED)
        }
        progress = _finish(instance, resources, second.cursor)
        statuses = partition_status(instance, "addresses", keys)
    assert planned == {"us/xx/web/e01", "us/xx/web/e04", "us/xx/web/e06"}
    assert statuses == {
        key: dg.AssetPartitionStatus.FAILED if key.endswith("e04") else dg.AssetPartitionStatus.MATERIALIZED
        for key in keys
    }
    assert progress["done"] == 7 and progress["failed"] == 1 and progress["unchanged"] == 5


def test_the_planning_asks_many_upstreams_at_once_but_few_of_one_host(tmp_path: Path) -> None:
    from oa_dagster.platform.catalog import build_catalog
    from oa_dagster.platform.set_probing import probe_set, upstream_host
    from oa_dagster.resources.processing import ProcessingSettings

    busy, quiet = FakeArcGISServer().start(), FakeArcGISServer().start()
    try:
        sources = tmp_path / "sources"
        for i in range(12):  # twelve layers on one server, four on another: sizes asked (never run), one query each
            server = busy if i < 12 - 4 else quiet
            url = server.add_layer(f"l{i:02d}", FakeLayer(point_features(5), latency=0.3))
            write_source(sources, f"us/xx/l{i:02d}", {"addresses": [entry("main", "ESRI", url, ESRI_CONFORM)]})
        catalog = build_catalog(sources, "c0", ref="main", origin="test", keep_source_dir=True)
        keys = sorted(catalog["entries"]["addresses"])
        assert upstream_host(catalog, "addresses", keys[0]) == f"127.0.0.1:{busy.server_address[1]}"
        assert upstream_host(catalog, "addresses", "us/xx/missing") == ""

        options = ProcessingSettings().entry_options()
        probes = probe_set(
            catalog, {"addresses": keys}, LocalStore(tmp_path / "out"), options, None, workers=8, per_host=3
        )
        assert {key: p.size.amount for key, p in probes["addresses"].items() if p.size} == dict.fromkeys(keys, 5)
        assert busy.most_in_flight == 3  # eight layers, three at a time
        assert quiet.most_in_flight == 3  # the other host's probes went beside them, under its own limit
    finally:
        busy.stop()
        quiet.stop()
