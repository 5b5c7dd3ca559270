"""The regression report of a finished set (through the sensor path, against a crafted previous set) and the alerts
posted to a local webhook receiver: newly broken entries, and a set that has not finished in time."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from oa_dagster.assets.sets import SET_PROGRESS, SET_REPORT
from oa_dagster.platform.catalog import load_stored_catalog
from oa_dagster.platform.set_alerts import AlertNotDelivered, message, post_alert
from oa_dagster.platform.set_planning import SetProgress
from oa_dagster.platform.set_report import EntryOutcome, report_key
from oa_dagster.platform.store import LocalStore, get_json
from oa_dagster.resources.set_alerts import SetAlertSettings
from oa_dagster.run_tags import LAUNCH_ALL, LAUNCH_TAG, SET_TAG
from oa_dagster.sensors.set_alerts import set_alerts
from oa_dagster.sensors.sets import progress_metadata, report_set, set_launcher
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


class Clock:
    """The alert sensor's clock, moved forward by the tests instead of sleeping.

    Ages are real elapsed time plus `ahead`, so an expected time of a minute leaves a loaded machine a minute of
    slack where sub-second expected times and sleeps made the tests fail under load.
    """

    def __init__(self) -> None:
        self.ahead = 0.0

    def time(self) -> float:
        return time.time() + self.ahead

    def advance(self, seconds: float) -> None:
        self.ahead += seconds


EXPECTED_MINUTE = 60 / 3600  # the sets' expected time in these tests: late after 60 s, abandoned after 240 s


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    import oa_dagster.sensors.set_alerts as sensor_module

    fake = Clock()
    monkeypatch.setattr(sensor_module, "time", fake)
    return fake


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
    tmp_path: Path, download_server: DownloadServer, receiver: Receiver, clock: Clock
) -> None:
    download_server.route("/one.csv", body=csv_bytes(3), etag='"1"')
    resources = local(tmp_path, sources(tmp_path, download_server, ["one"]))
    alerts = {
        "set_alerts": SetAlertSettings(webhook_url=receiver.url, expected_hours=EXPECTED_MINUTE),
        "store": resources["store"],
    }
    with dg.instance_for_test() as instance:
        materialize_catalog(instance, resources, tags={SET_TAG: "set-slow", LAUNCH_TAG: LAUNCH_ALL})
        set_launcher(dg.build_sensor_context(instance=instance, resources=resources))  # launched; runs never end
        first = set_alerts(dg.build_sensor_context(instance=instance, resources=alerts))
        assert receiver.bodies == []  # not late yet
        clock.advance(90)
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


SECRET = "T0000/B0000/s3cr3tW3bh00kT0ken"


class Lines(logging.Handler):
    """Keeps every message the sensor logs (what the event log would show)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_undelivered_alert_names_the_host_and_status_but_never_the_webhook_secret(
    tmp_path: Path, download_server: DownloadServer, receiver: Receiver, clock: Clock
) -> None:
    refusing = receiver.url.replace("/hooks/oa", f"/services/{SECRET}?token={SECRET}")
    unreachable = f"http://127.0.0.1:{closed_port()}/services/{SECRET}?token={SECRET}"
    receiver.statuses = [500]
    with pytest.raises(AlertNotDelivered) as refused:
        post_alert(refusing, message("test"))
    with pytest.raises(AlertNotDelivered) as down:
        post_alert(unreachable, message("test"), timeout=2)
    host = f"127.0.0.1:{receiver.server_address[1]}"
    assert str(refused.value) == f"alert webhook at {host} answered HTTP 500"
    assert "ConnectionError" in str(down.value) and "127.0.0.1" in str(down.value)
    for caught in (refused, down):  # nor in the traceback the sensor's failure would show
        assert SECRET not in "".join(traceback.format_exception(caught.value))

    download_server.route("/one.csv", body=csv_bytes(3), etag='"1"')
    resources = local(tmp_path, sources(tmp_path, download_server, ["one"]))
    with dg.instance_for_test() as instance:
        materialize_catalog(instance, resources, tags={SET_TAG: "set-slow", LAUNCH_TAG: LAUNCH_ALL})
        set_launcher(dg.build_sensor_context(instance=instance, resources=resources))  # launched; runs never end
        results, logged = [], Lines()
        cursor = None
        for url in (refusing, refusing, unreachable):  # the first tick posts nothing; then stalled, undelivered
            receiver.statuses = [500]
            alerts = {
                "set_alerts": SetAlertSettings(webhook_url=url, expected_hours=EXPECTED_MINUTE, timeout_seconds=2),
                "store": resources["store"],
            }
            context = dg.build_sensor_context(instance=instance, resources=alerts, cursor=cursor)
            context.log.addHandler(logged)
            clock.advance(90 if cursor is None else 0)  # late after a minute; abandoned after four
            result = set_alerts(context)
            assert isinstance(result, dg.SensorResult)
            results.append(result)
            cursor = result.cursor
    assert receiver.bodies == []
    warnings = [line for line in logged.lines if "trying again next tick" in line]
    assert len(warnings) == 2 and "answered HTTP 500" in warnings[0] and "unreachable" in warnings[1]
    assert all(SECRET not in line for line in logged.lines)
    assert all(SECRET not in str(result.cursor) for result in results)


def test_a_report_recorded_again_after_a_failure_is_compared_with_the_same_set(
    tmp_path: Path, download_server: DownloadServer, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from oa_dagster.definitions import build_definitions

    http = download_server
    broken = http.route("/broken.csv", body=csv_bytes(5), etag='"b1"')
    fixed = http.route("/fixed.csv", body=b"", status=404)
    folder = sources(tmp_path, http, ["broken", "fixed"])
    resources = local(tmp_path, folder)
    store = LocalStore(tmp_path / "data")
    alerts = {"set_alerts": SetAlertSettings(webhook_url=receiver.url), "store": resources["store"]}
    with dg.instance_for_test() as instance:
        cursor, _ = run_set(instance, resources, "set-1", None)
        alert_cursor = set_alerts(dg.build_sensor_context(instance=instance, resources=alerts)).cursor
        broken.status, broken.body, broken.etag = 404, b"", None
        fixed.status, fixed.body, fixed.etag = 200, csv_bytes(6), '"f1"'
        materialize_catalog(instance, resources, tags={SET_TAG: "set-2", LAUNCH_TAG: LAUNCH_ALL})
        launched = set_launcher(dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor))
        defs = build_definitions(resources)
        for request in launched.run_requests:
            defs.resolve_job_def(request.job_name).execute_in_process(
                instance=instance, tags=request.tags, raise_on_error=False
            )

        record = instance.report_runless_asset_event

        def fails_on_the_report(event: Any) -> None:
            if getattr(event, "asset_key", None) == SET_REPORT:
                raise RuntimeError("event log unavailable")
            record(event)

        monkeypatch.setattr(instance, "report_runless_asset_event", fails_on_the_report)
        with pytest.raises(Exception, match="event log unavailable"):
            set_launcher(dg.build_sensor_context(instance=instance, resources=resources, cursor=launched.cursor))
        first = get_json(store, report_key("set-2"))
        monkeypatch.setattr(instance, "report_runless_asset_event", record)
        # the sensor's next tick: its cursor did not move, so the finished set is reported again
        set_launcher(dg.build_sensor_context(instance=instance, resources=resources, cursor=launched.cursor))
        recorded = instance.fetch_materializations(SET_REPORT, limit=1).records[0].asset_materialization
        set_alerts(dg.build_sensor_context(instance=instance, resources=alerts, cursor=alert_cursor))
    again = get_json(store, report_key("set-2"))
    assert first is not None and again is not None
    assert [row["entry"] for row in first["newly_broken"]] == ["us/xx/r/broken"]
    assert [row["entry"] for row in first["fixed"]] == ["us/xx/r/fixed"]
    for name in ("compared_with", "newly_broken", "fixed", "added", "removed", "counts"):
        assert again[name] == first[name], name
    assert recorded is not None and recorded.metadata["set"].value == "set-2"
    assert recorded.metadata["newly_broken"].value == 1 and recorded.metadata["compared_with"].value == "set-1"
    assert len(receiver.bodies) == 1 and "(good in set-1)" in receiver.bodies[0]["text"]


def test_the_first_tick_only_takes_its_bearings_and_an_abandoned_set_leaves_the_cursor(
    tmp_path: Path, download_server: DownloadServer, receiver: Receiver, clock: Clock
) -> None:
    download_server.route("/one.csv", body=csv_bytes(3), etag='"1"')
    resources = local(tmp_path, sources(tmp_path, download_server, ["one"]))
    store = LocalStore(tmp_path / "data")
    alerts = {
        "set_alerts": SetAlertSettings(webhook_url=receiver.url, expected_hours=EXPECTED_MINUTE),
        "store": resources["store"],
    }
    with dg.instance_for_test() as instance:
        materialize_catalog(instance, resources, tags={SET_TAG: "set-old", LAUNCH_TAG: LAUNCH_ALL})
        set_launcher(dg.build_sensor_context(instance=instance, resources=resources))  # launched; runs never end
        catalog_id = str(instance.fetch_materializations(SET_PROGRESS, limit=1).records[0].asset_materialization
                         .metadata["catalog_id"].value)  # fmt: skip
        key = next(iter(load_stored_catalog(store, catalog_id)["entries"]["addresses"]))
        # two finished sets before the sensor starts: the second broke the entry the first had good
        report_set(instance, store, SetProgress("set-a", catalog_id), [EntryOutcome("addresses", key, "promoted", 3)])
        report_set(instance, store, SetProgress("set-b", catalog_id), [EntryOutcome("addresses", key, "failed")])
        assert get_json(store, report_key("set-b"))["counts"]["newly_broken"] == 1
        clock.advance(90)  # set-old is late already
        first = set_alerts(dg.build_sensor_context(instance=instance, resources=alerts))
        assert receiver.bodies == []  # no alert for history, nor on the first tick at all
        assert list(json.loads(str(first.cursor))["open"]) == ["set-old"]
        second = set_alerts(dg.build_sensor_context(instance=instance, resources=alerts, cursor=first.cursor))
        assert [body["text"].split(" ")[1] for body in receiver.bodies] == ["set-old"]  # stalled; set-b not again
        report_set(instance, store, SetProgress("set-c", catalog_id), [EntryOutcome("addresses", key, "promoted", 3)])
        report_set(instance, store, SetProgress("set-d", catalog_id), [EntryOutcome("addresses", key, "failed")])
        third = set_alerts(dg.build_sensor_context(instance=instance, resources=alerts, cursor=second.cursor))
        assert receiver.bodies[-1]["text"].startswith(":rotating_light: set-d finished with 1 newly broken")
        assert json.loads(str(third.cursor))["stalled"] == ["set-old"]

        clock.advance(210)  # set-old is now over 4 expected times old: abandoned, dropped from the cursor
        fourth = set_alerts(dg.build_sensor_context(instance=instance, resources=alerts, cursor=third.cursor))
        state = json.loads(str(fourth.cursor))
        assert state["open"] == {} and state["stalled"] == []
        # a late progress event of the abandoned set does not bring it back (nor alert on it again)
        progress = SetProgress("set-old", catalog_id, started=time.time() - 10, total={"addresses": 1})
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key=SET_PROGRESS, metadata=progress_metadata(progress))
        )
        fifth = set_alerts(dg.build_sensor_context(instance=instance, resources=alerts, cursor=fourth.cursor))
        assert json.loads(str(fifth.cursor))["open"] == {}
    assert len(receiver.bodies) == 2
