"""Incremental sets through the real sensor path: the second set carries unchanged entries over without
downloading them (the fake servers count requests), processes the changed ones, and falls back to full
processing when the output is too old, the engine changed, the launch asks for it, or the server lied."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from oa_dagster.assets.sets import SET_PROGRESS
from oa_dagster.platform import store_layout as layout
from oa_dagster.platform.change_detection import trust_key
from oa_dagster.platform.set_probing import plan_key
from oa_dagster.platform.store import LocalStore, get_json, put_json
from oa_dagster.run_tags import LAUNCH_ALL, LAUNCH_FULL, LAUNCH_TAG, REFRESH_TAG, SET_TAG
from oa_dagster.sensors.sets import set_launcher
from tests.platform_helpers import local, materialize_catalog, write_source
from tests.servers.arcgis import FakeArcGISServer, FakeLayer, point_features
from tests.servers.downloads import DownloadServer
from tests.servers.ftp import FTPTestServer

pytest_plugins = ["tests.servers.fixtures"]

CSV_CONFORM = {"format": "csv", "lon": "lon", "lat": "lat", "number": "num", "street": "street"}
ESRI_CONFORM = {"format": "geojson", "number": "NUMBER", "street": "STREET"}
EDITED = {"lastEditDate": 1_700_000_000_000, "dataLastEditDate": 1_700_000_000_000}


def csv_bytes(rows: int, street: str = "MAIN ST") -> bytes:
    lines = ["lon,lat,num,street"] + [f"-122.{i:04d},37.{i:04d},{i + 1},{street}" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def entry(name: str, protocol: str, data: str, conform: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "protocol": protocol, "data": data, "conform": dict(conform)}


class Upstreams:
    """One source per upstream kind, each on a local fake server whose content a test changes between sets."""

    def __init__(self, tmp: Path, http: DownloadServer, arcgis: FakeArcGISServer, ftp: FTPTestServer) -> None:
        self.http, self.arcgis, self.ftp, self.ftp_root = http, arcgis, ftp, ftp.root
        self.etag = http.route("/etag.csv", body=csv_bytes(5), etag='"v1"', content_type="text/csv")
        self.dated = http.route(
            "/dated.csv", body=csv_bytes(6), last_modified="Mon, 02 Jun 2025 10:00:00 GMT", content_type="text/csv"
        )
        # a server that answers every conditional GET with the whole body: HEAD tells it apart
        self.stubborn = http.route("/stubborn.csv", body=csv_bytes(7), etag='"s1"', ignore_conditional=True)
        self.layer = FakeLayer(point_features(30), max_record_count=10, editing_info=dict(EDITED))
        self.plain_layer = FakeLayer(point_features(12), max_record_count=10)  # no editingInfo: always changed
        (self.ftp_root / "f.csv").write_bytes(csv_bytes(4))
        self.sources = tmp / "sources"
        layer_url = arcgis.add_layer("edited", self.layer)
        plain_url = arcgis.add_layer("plain", self.plain_layer)
        write_source(
            self.sources,
            "us/xx/web",
            {
                "addresses": [
                    entry("etag", "http", http.url("/etag.csv"), CSV_CONFORM),
                    entry("dated", "http", http.url("/dated.csv"), CSV_CONFORM),
                    entry("stubborn", "http", http.url("/stubborn.csv"), CSV_CONFORM),
                    entry("ftp", "ftp", ftp.url("f.csv"), CSV_CONFORM),
                ]
            },
        )
        write_source(
            self.sources,
            "us/xx/gis",
            {
                "addresses": [
                    entry("edited", "ESRI", layer_url, ESRI_CONFORM),
                    entry("plain", "ESRI", plain_url, ESRI_CONFORM),
                ]
            },
        )

    def requests(self) -> dict[str, int]:
        """Requests each upstream served so far (GETs, HEADs, ArcGIS calls) and body bytes of downloads."""
        return {
            "etag": self.etag.hits,
            "dated": self.dated.hits,
            "stubborn": self.stubborn.hits,
            "stubborn_head": self.stubborn.heads,
            "edited": self.layer.hits,
            "edited_pages": len(self.layer.queries),
            "plain_pages": len(self.plain_layer.queries),
        }


@pytest.fixture
def upstreams(
    tmp_path: Path, download_server: DownloadServer, arcgis_server: FakeArcGISServer, ftp_server: FTPTestServer
) -> Upstreams:
    return Upstreams(tmp_path, download_server, arcgis_server, ftp_server)


def run_set(
    instance: dg.DagsterInstance, resources: dict[str, Any], set_id: str, cursor: str | None, launch: str = LAUNCH_ALL
) -> tuple[str, dict[str, Any]]:
    """A set as the schedule starts it: the catalog tagged, the sensor's run requests executed as the layer jobs
    (in process), the sensor again to see them end. Returns the sensor's cursor and the last set_progress."""
    from oa_dagster.definitions import build_definitions

    materialize_catalog(instance, resources, tags={SET_TAG: set_id, LAUNCH_TAG: launch})
    result = set_launcher(dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor))
    defs = build_definitions(resources)
    for request in result.run_requests:
        job = defs.resolve_job_def(request.job_name)
        job.execute_in_process(instance=instance, tags=request.tags, raise_on_error=False)
    cursor = result.cursor
    for _ in range(3):  # a tick records the entries the planning carried over, one sees the set finished
        cursor = set_launcher(dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor)).cursor
        progress = instance.fetch_materializations(SET_PROGRESS, limit=1).records[0].asset_materialization
        assert progress is not None
        if progress.metadata["finished"].value:
            break
    return str(cursor), {k: v.value for k, v in progress.metadata.items()}


def latest_by_partition(instance: dg.DagsterInstance, layer: str = "addresses") -> dict[str, dict[str, Any]]:
    """Each partition's latest materialization metadata (plain values) and its data version."""
    found = {}
    for record in instance.fetch_materializations(dg.AssetKey(layer), limit=1000).records:
        event = record.asset_materialization
        if event is not None and event.partition not in found:
            found[event.partition] = {
                **{k: v.value for k, v in event.metadata.items()},
                "data_version": event.tags.get("dagster/data_version"),
                "run_id": record.run_id,
            }
    return found


def test_a_second_set_carries_unchanged_entries_over_and_processes_the_changed_ones(
    tmp_path: Path, upstreams: Upstreams
) -> None:
    resources = local(tmp_path, upstreams.sources)
    store = LocalStore(tmp_path / "data")
    with dg.instance_for_test() as instance:
        cursor, first = run_set(instance, resources, "set-1", None)
        assert first["finished"] and first["done"] == 6 and first["failed"] == 0 and first["unchanged"] == 0
        pointer = get_json(store, layout.latest_key("addresses", "us/xx/web/etag"))
        assert pointer is not None and pointer["upstream"]["etag"] == '"v1"' and pointer["fingerprint"]
        edited = get_json(store, layout.latest_key("addresses", "us/xx/gis/edited"))
        assert edited is not None and edited["upstream"] == {
            "protocol": "esri",
            "last_edit": EDITED["lastEditDate"],
            "data_last_edit": EDITED["dataLastEditDate"],
            "count": 30,
            "oid_min": 1,
            "oid_max": 30,
            "oid_field": "OBJECTID",
        }
        set1 = latest_by_partition(instance)
        before = upstreams.requests()

        # between the sets: the dated CSV and the edited layer change; the others stay as they were
        upstreams.dated.body = csv_bytes(8)
        upstreams.dated.last_modified = "Tue, 03 Jun 2025 10:00:00 GMT"
        upstreams.layer.features = point_features(31)
        upstreams.layer.editing_info = {"lastEditDate": EDITED["lastEditDate"] + 1, "dataLastEditDate": 1}
        cursor, second = run_set(instance, resources, "set-2", cursor)
        after = upstreams.requests()
        set2 = latest_by_partition(instance)
        carried_checks = check_results(instance, set2["us/xx/web/etag"]["run_id"], "us/xx/web/etag")

    assert second["finished"] and second["done"] == 6 and second["failed"] == 0
    assert second["unchanged"] == 3  # etag, stubborn, ftp; dated and edited changed, plain has no signal
    unchanged = {k for k, m in set2.items() if m["status"] == "unchanged"}
    assert unchanged == {"us/xx/web/etag", "us/xx/web/stubborn", "us/xx/web/ftp"}
    # nothing downloaded for the unchanged ones: one conditional GET answered 304, no body
    assert after["etag"] - before["etag"] == 1 and upstreams.etag.seen_headers[-1]["If-None-Match"] == '"v1"'
    assert set2["us/xx/web/etag"]["change_signal"] == 'HTTP 304 Not Modified (ETag "v1")'
    # the server ignoring conditional requests: its 200 was not read; HEAD is used from the next set on
    assert after["stubborn"] - before["stubborn"] == 1 and after["stubborn_head"] == before["stubborn_head"]
    assert "same length and validators" in set2["us/xx/web/stubborn"]["change_signal"]
    assert "FTP SIZE" in set2["us/xx/web/ftp"]["change_signal"]
    # the changed ones were downloaded again and carry the new data
    assert after["dated"] - before["dated"] == 2  # the conditional GET (200), then the download
    assert set2["us/xx/web/dated"]["feature_count"] == 8 and set2["us/xx/web/dated"]["status"] == "promoted"
    assert "last_modified 'Mon, 02 Jun 2025 10:00:00 GMT' -> 'Tue, 03" in set2["us/xx/web/dated"]["refresh"]
    assert after["edited_pages"] > before["edited_pages"] and set2["us/xx/gis/edited"]["feature_count"] == 31
    assert after["plain_pages"] > before["plain_pages"]  # no editingInfo: always downloaded
    assert set2["us/xx/gis/plain"]["refresh"].startswith("no upstream signal recorded with")
    # an unchanged partition: same data version, output and checks carried over, `unchanged since <run>`
    etag1, etag2 = set1["us/xx/web/etag"], set2["us/xx/web/etag"]
    assert etag2["data_version"] == etag1["data_version"] and etag2["run_id"] != etag1["run_id"]
    assert etag2["refresh"] == f"unchanged since {etag1['run_id']}" and etag2["unchanged_since"] == etag1["run_id"]
    assert etag2["url_output"] == etag1["url_output"] and etag2["feature_count"] == 5
    assert etag2["set"] == "set-2" and etag2["sample"].records  # the output's rows shown again
    assert carried_checks == {"output_valid": True, "output_quality": True}


def check_results(instance: dg.DagsterInstance, run_id: str, partition: str) -> dict[str, bool]:
    """The check evaluations a run wrote for one partition: {check name: passed}."""
    found = {}
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = record.dagster_event.asset_check_evaluation_data if record.dagster_event else None
        if evaluation is not None and evaluation.partition == partition:
            found[evaluation.check_name] = evaluation.passed
    return found


def test_forced_full_refreshes_by_age_launch_and_engine_and_a_lying_server_loses_trust(
    tmp_path: Path, upstreams: Upstreams, monkeypatch: pytest.MonkeyPatch
) -> None:
    resources = local(tmp_path, upstreams.sources)
    store = LocalStore(tmp_path / "data")
    etag_key = layout.latest_key("addresses", "us/xx/web/etag")
    with dg.instance_for_test() as instance:
        cursor, _ = run_set(instance, resources, "set-1", None)
        first_run = latest_by_partition(instance)["us/xx/web/etag"]["run_id"]

        # 29 days later (the default full refresh is every 28), and the server changed the file but not its ETag
        pointer = get_json(store, etag_key)
        assert pointer is not None
        pointer["created"] = (dt.datetime.now(dt.UTC) - dt.timedelta(days=29)).isoformat(timespec="seconds")
        put_json(store, etag_key, pointer)
        upstreams.etag.body = csv_bytes(9)
        before = upstreams.requests()
        cursor, second = run_set(instance, resources, "set-2", cursor)
        set2 = latest_by_partition(instance)
        after = upstreams.requests()
        etag = set2["us/xx/web/etag"]
        assert etag["refresh"].startswith("forced: output 29 days old (full refresh every 28)")
        assert after["etag"] - before["etag"] == 2  # the probe (304: "unchanged"), then the download
        assert etag["feature_count"] == 9 and etag["validators_trusted"] is False  # caught: recorded in the store
        trust = get_json(store, trust_key("addresses", "us/xx/web/etag"))
        assert trust is not None and trust["trust_validators"] is False and trust["detected_in"] == etag["run_id"]
        assert trust["signal"] == 'HTTP 304 Not Modified (ETag "v1")' and trust["fingerprint_before"]
        assert second["unchanged"] == 4 and set2["us/xx/web/stubborn"]["status"] == "unchanged"
        assert etag["run_id"] != first_run

        # a full launch: everything processed; the untrusted entry without even asking its server; the server
        # that ignores conditional requests is asked with HEAD (learnt in set 2). Its planning asks no upstream
        # (every entry has previous seconds to be packed by): each run asks its entries' upstreams, for honesty
        before = upstreams.requests()
        cursor, third = run_set(instance, resources, "set-3", cursor, launch=LAUNCH_FULL)
        set3 = latest_by_partition(instance)
        after = upstreams.requests()
        plan = get_json(store, plan_key("set-3"))
        assert plan is not None and not any(plan["entries"].values())
        assert third["unchanged"] == 0 and third["done"] == 6
        assert set3["us/xx/web/dated"]["refresh"] == "full refresh requested (oa/launch=full)"
        assert set3["us/xx/web/etag"]["refresh"].startswith(f"validators not trusted since {etag['run_id']}")
        assert after["etag"] - before["etag"] == 1  # no probe: only the download
        assert after["stubborn_head"] - before["stubborn_head"] == 1 and after["stubborn"] - before["stubborn"] == 1
        layer_runs = instance.get_run_records(dg.RunsFilter(tags={SET_TAG: "set-3"}))
        assert {
            r.dagster_run.tags.get(REFRESH_TAG) for r in layer_runs if r.dagster_run.job_name == "addresses_job"
        } == {"full"}

        # a new engine version: every entry is processed again, whatever its upstream says
        monkeypatch.setattr("oa_dagster.platform.catalog.__version__", "99.0.0")
        cursor, fourth = run_set(instance, resources, "set-4", cursor)
        set4 = latest_by_partition(instance)
    assert fourth["unchanged"] == 0 and fourth["done"] == 6
    assert (
        set4["us/xx/web/dated"]["refresh"].endswith("-> 99.0.0")
        and "engine version" in set4["us/xx/web/dated"]["refresh"]
    )
