"""The regression report of a finished set (through the sensor path, against a crafted previous set) and the alerts
posted to a local webhook receiver: newly broken entries, and a set that has not finished in time."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from oa_dagster.assets.sets import SET_REPORT
from oa_dagster.platform.set_report import report_key
from oa_dagster.platform.store import LocalStore, get_json
from oa_dagster.resources.set_alerts import SetAlertSettings
from oa_dagster.run_tags import LAUNCH_ALL, LAUNCH_TAG, SET_TAG
from oa_dagster.sensors.set_alerts import set_alerts
from oa_dagster.sensors.sets import set_launcher
from tests.platform_helpers import local, materialize_catalog, write_source
from tests.servers.downloads import DownloadServer
from tests.test_incremental_sets import CSV_CONFORM, csv_bytes, entry, run_set

pytest_plugins = ["tests.servers.fixtures"]


class Receiver(ThreadingHTTPServer):
    """A chat webhook stand-in: keeps every JSON body POSTed; answers `statuses` first (then 200)."""

    daemon_threads = True

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                if status == 200:
                    receiver.bodies.append(json.loads(body))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/oa"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def sources(tmp: Path, http: DownloadServer, names: list[str]) -> Path:
    folder = tmp / "sources"
    for path in folder.rglob("*.json"):
        path.unlink()
    write_source(
        folder, "us/xx/r", {"addresses": [entry(n, "http", http.url(f"/{n}.csv"), CSV_CONFORM) for n in names]}
    )
    return folder


def test_the_report_lists_what_changed_since_the_last_set_and_the_alert_names_the_broken(
    tmp_path: Path, download_server: DownloadServer, receiver: Receiver
) -> None:
    http = download_server
    routes = {
        "broken": http.route("/broken.csv", body=csv_bytes(5), etag='"b1"'),
        "fixed": http.route("/fixed.csv", body=b"", status=404),
        "removed": http.route("/removed.csv", body=csv_bytes(5), etag='"r1"'),
        "held": http.route("/held.csv", body=csv_bytes(20), etag='"h1"'),
        "shrunk": http.route("/shrunk.csv", body=csv_bytes(10), etag='"s1"'),
        "same": http.route("/same.csv", body=csv_bytes(4), etag='"u1"'),
    }
    http.route("/added.csv", body=csv_bytes(3), etag='"a1"')
    folder = sources(tmp_path, http, ["broken", "fixed", "removed", "held", "shrunk", "same"])
    resources = local(tmp_path, folder)
    store = LocalStore(tmp_path / "data")
    alerts = {"set_alerts": SetAlertSettings(webhook_url=receiver.url), "store": resources["store"]}
    with dg.instance_for_test() as instance:
        cursor, first = run_set(instance, resources, "set-1", None)
        assert first["finished"] and first["done"] == 5 and first["failed"] == 1
        one = get_json(store, report_key("set-1"))
        assert one is not None and one["compared_with"] is None and one["counts"]["failed"] == 1
        alert_cursor = set_alerts(dg.build_sensor_context(instance=instance, resources=alerts)).cursor
        assert receiver.bodies == []  # the first set had nothing newly broken

        # between the sets: one entry breaks, one is fixed, one goes, one comes, two shrink, one stays the same
        routes["broken"].status, routes["broken"].body, routes["broken"].etag = 404, b"", None
        routes["fixed"].status, routes["fixed"].body, routes["fixed"].etag = 200, csv_bytes(6), '"f1"'
        routes["held"].body, routes["held"].etag = csv_bytes(5), '"h2"'  # down 75%: the gate holds it
        routes["shrunk"].body, routes["shrunk"].etag = csv_bytes(8), '"s2"'  # down 20%: promoted, listed
        sources(tmp_path, http, ["broken", "fixed", "held", "shrunk", "same", "added"])
        cursor, second = run_set(instance, resources, "set-2", cursor)
        assert second["finished"] and second["unchanged"] == 1 and second["failed"] == 1 and second["held"] == 1
        event = instance.fetch_materializations(SET_REPORT, limit=1).records[0].asset_materialization
        assert event is not None
        meta = {k: v.value for k, v in event.metadata.items()}
        after = set_alerts(dg.build_sensor_context(instance=instance, resources=alerts, cursor=alert_cursor))
        again = set_alerts(dg.build_sensor_context(instance=instance, resources=alerts, cursor=after.cursor))
        assert isinstance(again, dg.SensorResult)

    report = get_json(store, report_key("set-2"))
    assert report is not None and report["compared_with"] == "set-1"

    def listed(name: str) -> list[str]:
        return [row["entry"].rsplit("/", 1)[1] for row in report[name]]

    assert listed("newly_broken") == ["broken"]
    assert "HTTP 404" in report["newly_broken"][0]["problem"] and report["newly_broken"][0]["last_good"] == "set-1"
    assert listed("fixed") == ["fixed"]
    assert listed("added") == ["added"] and listed("removed") == ["removed"]
    assert listed("held") == ["held"] and "feature count fell 75%" in report["held"][0]["reasons"]
    assert listed("count_drops") == ["held", "shrunk"] and report["count_drops"][1]["drop"] == "20%"
    assert listed("unchanged") == ["same"] and report["unchanged"][0]["signal"].startswith("HTTP 304")
    # the UI: counts and one markdown table per list
    assert meta["set"] == "set-2" and meta["newly_broken"] == 1 and meta["unchanged"] == 1 and meta["added"] == 1
    assert "| layer | entry | problem | last_good |" in meta["newly_broken_table"]
    assert "us/xx/r/broken" in meta["newly_broken_table"] and meta["url_report"].endswith("sets/set-2/report.json")
    # the alert: posted once, Slack-compatible, naming the broken entry and its problem
    assert len(receiver.bodies) == 1
    alert = receiver.bodies[0]
    assert alert["text"].startswith(":rotating_light: set-2 finished with 1 newly broken entry (good in set-1)")
    assert "`us/xx/r/broken`: Could not download source data" in alert["blocks"][1]["text"]["text"]


def test_a_set_running_past_its_expected_time_is_reported_stalled_once_and_retried_when_undelivered(
    tmp_path: Path, download_server: DownloadServer, receiver: Receiver
) -> None:
    download_server.route("/one.csv", body=csv_bytes(3), etag='"1"')
    resources = local(tmp_path, sources(tmp_path, download_server, ["one"]))
    alerts = {
        "set_alerts": SetAlertSettings(webhook_url=receiver.url, expected_hours=0.5 / 3600),  # half a second
        "store": resources["store"],
    }
    with dg.instance_for_test() as instance:
        materialize_catalog(instance, resources, tags={SET_TAG: "set-slow", LAUNCH_TAG: LAUNCH_ALL})
        set_launcher(dg.build_sensor_context(instance=instance, resources=resources))  # launched; runs never end
        first = set_alerts(dg.build_sensor_context(instance=instance, resources=alerts))
        assert receiver.bodies == []  # not late yet
        time.sleep(0.6)
        receiver.statuses = [500]  # the webhook fails once: the alert is tried again on the next tick
        second = set_alerts(dg.build_sensor_context(instance=instance, resources=alerts, cursor=first.cursor))
        assert receiver.bodies == []
        third = set_alerts(dg.build_sensor_context(instance=instance, resources=alerts, cursor=second.cursor))
        fourth = set_alerts(dg.build_sensor_context(instance=instance, resources=alerts, cursor=third.cursor))
        assert isinstance(fourth, dg.SensorResult)
        unconfigured = set_alerts(
            dg.build_sensor_context(
                instance=instance, resources={**alerts, "set_alerts": SetAlertSettings()}, cursor=third.cursor
            )
        )
    assert len(receiver.bodies) == 1  # once, not on every tick
    text = receiver.bodies[0]["text"]
    assert text.startswith(":hourglass: set-slow has not finished after") and "expected within" in text
    assert "0 done" in receiver.bodies[0]["blocks"][1]["text"]["text"]  # the set's progress at the time
    assert isinstance(unconfigured, dg.SkipReason) and "OA_ALERT_WEBHOOK_URL" in str(unconfigured.skip_message)
