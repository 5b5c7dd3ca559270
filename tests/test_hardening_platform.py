"""Hardening of the Dagster platform: sets that outlive a crashed run, event writes that outlive a dropped
database connection, cleanup of what kills leave behind, and over-long keys at the download app."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg2
import pytest

from oa_dagster.assets.sets import SET_PROGRESS
from oa_dagster.cli import main
from oa_dagster.platform import store_layout as layout
from oa_dagster.platform.store import LocalStore, get_json
from tests.platform_helpers import (
    PG,
    city_sources,
    csv_entry,
    local,
    local_instance_home,
    materialize_catalog,
    materialize_range,
    partition_status,
    postgres_or_skip,
    running_daemon,
    write_csv,
    write_source,
)
from tests.platform_helpers import (
    wait_for as _wait,
)
from tests.servers.downloads import DownloadServer
from tests.servers.fixtures import MOTO_CREDS, moto_bucket

CSV = "lon,lat,num,street\n" + "".join(f"-122.{i:04d},37.{i:04d},{i + 1},MAIN ST\n" for i in range(3))


def _served_sources(tmp: Path, server: DownloadServer, count: int) -> Path:
    sources = tmp / "sources"
    for i in range(count):
        server.route(f"/s{i:02d}.csv", body=CSV.encode(), content_type="text/csv")
        write_source(sources, f"us/xx/s{i:02d}", {"addresses": [csv_entry("city", server.url(f"/s{i:02d}.csv"))]})
    return sources


# --- item 10: a set whose run crashed and is retried -------------------------------------------------------------


def test_a_set_with_a_killed_run_finishes_after_its_retry_and_counts_each_entry_once(
    tmp_path: Path, download_server: DownloadServer
) -> None:
    """The issue's scenario under the real daemon: kill the worker of one of a set's runs mid-batch."""
    sources = _served_sources(tmp_path, download_server, 12)
    # s04 is a source problem recorded at once (in the killed run and again in its retry); s05 hangs the
    # first time, so its run is the one killed with part of its batch recorded
    download_server.route("/s04.csv", body=b"x,y\n1,2\n", content_type="text/csv")
    hanging = download_server.route("/s05.csv", body=CSV.encode(), content_type="text/csv", delay=60)
    home = local_instance_home(tmp_path / "home")
    env = {
        "OA_ENV": "local",
        "OA_DATA_DIR": str(tmp_path / "data"),
        "OA_SOURCES_DIR": str(sources),
        "OA_WORK_DIR": str(tmp_path / "work"),
        "OA_BATCH_MAX_ENTRIES": "4",
        "DAGSTER_EVENT_LOG_CONSUMER_DAEMON_INTERVAL_SECONDS": "1",
    }
    log = tmp_path / "daemon.log"
    with running_daemon(home, env, log), dg.DagsterInstance.from_config(str(home)) as instance:
        materialize_catalog(instance, local(tmp_path, sources), tags={"oa/set": "set-k", "oa/launch": "all"})
        _wait("the hanging download", lambda: hanging.hits, 120, log)
        run = next(
            r
            for r in instance.get_runs(dg.RunsFilter(tags={"oa/set": "set-k"}))
            if r.tags.get("dagster/asset_partition_range_start", "~")
            <= "us/xx/s05/city"
            <= r.tags.get("dagster/asset_partition_range_end", "")
        )
        assert run.tags["dagster/asset_partition_range_start"] <= "us/xx/s04/city"  # batches of 3 or 4

        def s04_recorded_by(run_id: str) -> list[Any]:
            records = instance.fetch_observations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey("addresses"), asset_partitions=["us/xx/s04/city"]), limit=5
            ).records
            return [r for r in records if r.run_id == run_id]

        _wait("s04's failure, recorded before the kill", lambda: s04_recorded_by(run.run_id), 30, log)
        start = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.RUN_START).records[0]
        hanging.delay = 0  # the retry's download answers at once
        os.kill(start.event_log_entry.dagster_event.pid, signal.SIGKILL)

        def finished() -> dict | None:
            records = instance.fetch_materializations(SET_PROGRESS, limit=1).records
            meta = records[0].asset_materialization.metadata if records else {}
            return meta if meta and meta["finished"].value else None

        progress = _wait("the set to finish", finished, 240, log)

        # the set's end brought the partition status cache up to date (after the finished progress and the report,
        # in the same tick): the first page read does not wait for it
        def cached() -> Any:
            return instance.get_asset_records([dg.AssetKey("addresses")])[0].asset_entry.cached_status

        cache = _wait("the partition status cache", cached, 60, log)
        entry = instance.get_asset_records([dg.AssetKey("addresses")])[0].asset_entry
        assert cache.latest_storage_id >= (entry.last_materialization_storage_id or 0)
        runs = instance.get_runs(dg.RunsFilter(tags={"oa/set": "set-k"}))
        retry = next(r for r in runs if r.parent_run_id == run.run_id)
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
        assert retry.status == dg.DagsterRunStatus.FAILURE  # s04's source problem: not retried again
        assert retry.tags.get("dagster/will_retry") == "false"

        assert s04_recorded_by(retry.run_id)  # recorded twice, counted once below
        retry_ended = instance.get_run_record_by_id(retry.run_id).end_time

    summary = get_json(LocalStore(tmp_path / "data"), layout.set_summary_key("set-k"))
    assert summary["finished"] >= retry_ended  # written after the retry ended, not when the killed run failed
    assert sum(summary["done"].values()) == 11 and sum(summary["failed"].values()) == 1
    assert sum(summary["features"].values()) == 33
    assert summary["runs_finished"] == summary["runs_requested"] and summary["retries"] == 1
    assert progress["done"].value == 11 and progress["pending"].value == 0 and progress["retries"].value == 1


# --- item 11: a dropped database connection while a batch records its entries -----------------------------------


@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgres_or_skip("oa_test") as url:
        yield url


SET_RUN_TAGS = {"oa/set": "set-pg", "dagster/max_retries": "1", "dagster/retry_on_asset_or_op_failure": "false"}


class EventLogOutage:
    """Drops the run's database connections while it writes events, the way `pg_terminate_backend` does.

    `start()` locks `event_logs` (so every event write waits) and a thread terminates each backend found waiting:
    the write fails with "terminating connection due to administrator command". `stop()` ends the outage.
    """

    def __init__(self, url: str) -> None:
        self.dbname = url.rsplit("/", 1)[1]
        self.terminated = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        holder = psycopg2.connect(dbname=self.dbname, **PG)
        holder.cursor().execute("LOCK TABLE event_logs IN ACCESS EXCLUSIVE MODE")
        self._thread = threading.Thread(target=self._terminate_waiting, args=(holder,), daemon=True)
        self._thread.start()

    def _terminate_waiting(self, holder: Any) -> None:
        killer = psycopg2.connect(dbname=self.dbname, **PG)
        killer.autocommit = True  # each query its own transaction: pg_stat_activity is fresh every time
        deadline = time.monotonic() + 60  # bounded: a test that never stops the outage still ends
        try:
            with killer.cursor() as cur:
                while not self._stop.is_set() and time.monotonic() < deadline:
                    cur.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                        "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
                        (self.dbname,),
                    )
                    self.terminated += sum(1 for (done,) in cur.fetchall() if done)
                    time.sleep(0.02)
        finally:
            killer.close()
            holder.rollback()  # releases the lock
            holder.close()

    def stop(self) -> None:
        """End the outage; returns once the lock is released (the caller's next write goes through)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)


class _Trigger(BaseHTTPRequestHandler):
    """Serves the CSV of any `/sNN.csv`; the request for `server.trigger_path` first calls `server.on_trigger`."""

    server: Any

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == self.server.trigger_path:
            self.server.on_trigger()
        body = CSV.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/csv")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _WhenLogged(logging.Handler):
    """Calls `action` (once) when the event-write retry logs a message containing `text`."""

    def __init__(self, text: str, action: Callable[[], None]) -> None:
        super().__init__(logging.DEBUG)
        self.text, self.action, self.seen = text, action, 0

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen += 1
            self.action()


def _outage_run(tmp_path: Path, url: str, stop_when: str, **settings: Any) -> tuple[Any, EventLogOutage, int]:
    """20 entries in one range run on Postgres; the outage starts when the worker fetches the 6th entry."""
    outage = EventLogOutage(url)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Trigger)
    server.daemon_threads = True
    server.trigger_path, server.on_trigger = "/s05.csv", outage.start
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    sources = tmp_path / "sources"
    for i in range(20):
        write_source(sources, f"us/xx/s{i:02d}", {"addresses": [csv_entry("city", f"{base}/s{i:02d}.csv")]})
    resources = local(tmp_path, sources, **settings)
    watcher = _WhenLogged(stop_when, outage.stop)
    writes_log = logging.getLogger("oa_dagster.assets.layers_event_writes")
    writes_log.addHandler(watcher)
    overrides = {"storage": {"postgres": {"postgres_url": url}}, "run_retries": {"enabled": True}}
    try:
        with dg.instance_for_test(overrides=overrides) as instance:
            materialize_catalog(instance, resources)
            result = materialize_range(
                instance, resources, "addresses", "us/xx/s00/city", "us/xx/s19/city", tags=SET_RUN_TAGS
            )
            keys_ = [f"us/xx/s{i:02d}/city" for i in range(20)]
            statuses = partition_status(instance, "addresses", keys_)
            run = instance.get_run_by_id(result.run_id)
            return (result, run, statuses), outage, watcher.seen
    finally:
        writes_log.removeHandler(watcher)
        outage.stop()
        server.shutdown()
        server.server_close()


def test_event_writes_survive_a_terminated_database_connection_and_every_entry_is_recorded(
    tmp_path: Path, pg_url: str
) -> None:
    (result, run, statuses), outage, retried = _outage_run(tmp_path, pg_url, "retry 1")
    assert outage.terminated >= 1 and retried >= 1  # a write really lost its connection, and was retried
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    assert set(statuses.values()) == {dg.AssetPartitionStatus.MATERIALIZED} and len(statuses) == 20


def test_a_run_that_cannot_reach_the_instance_fails_and_is_marked_for_retry(tmp_path: Path, pg_url: str) -> None:
    (result, run, _), outage, gave_up = _outage_run(tmp_path, pg_url, "giving up", instance_retry_seconds=2)
    assert outage.terminated >= 2 and gave_up == 1
    assert not result.success and run.status == dg.DagsterRunStatus.FAILURE
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    description = failure.step_failure_data.user_failure_data.description
    assert "the Dagster instance was unreachable for" in description and "us/xx/s0" in description
    # a set run retries crashes only, but this run tagged itself retryable: the retry daemon runs it again
    assert run.tags["oa/instance_lost"] == "true" and run.tags["dagster/will_retry"] == "true"


def test_the_retry_of_a_run_that_lost_the_instance_retries_crashes_only_again(tmp_path: Path) -> None:
    """The retry inherits its parent's tags, `retry_on_asset_or_op_failure=true` included: it sets it back."""
    write_csv(tmp_path / "a.csv", 3)
    resources = local(tmp_path, city_sources(tmp_path, {"us/xx/a": "a.csv"}))
    inherited = {**SET_RUN_TAGS, "dagster/retry_on_asset_or_op_failure": "true", "oa/instance_lost": "true"}
    with dg.instance_for_test() as instance:
        materialize_catalog(instance, resources)
        result = materialize_range(instance, resources, "addresses", "us/xx/a/city", "us/xx/a/city", tags=inherited)
        tags = instance.get_run_by_id(result.run_id).tags
    assert result.success
    assert tags["dagster/retry_on_asset_or_op_failure"] == "false" and tags["oa/instance_lost"] == "retry"


# --- item 12: what kills leave behind ------------------------------------------------------------------------------

DAY = 24 * 3600


def _age(path: Path, seconds: float) -> None:
    """Make `path` (and everything in it) look last changed `seconds` ago."""
    when = time.time() - seconds
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(item, (when, when), follow_symlinks=False)


def test_cleanup_removes_what_a_killed_run_left_and_fails_its_stuck_run(
    tmp_path: Path, download_server: DownloadServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    sources = _served_sources(tmp_path, download_server, 4)
    hanging = download_server.route("/s02.csv", body=CSV.encode(), content_type="text/csv", delay=60)
    home, work = tmp_path / "oa", tmp_path / "tmp" / "oa-dagster-work"
    (tmp_path / "tmp").mkdir()
    quickstart = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("oa-dagster")),
            "quickstart",
            "--home",
            str(home),
            "--sources",
            str(sources),
        ],
        env={**os.environ, "TMPDIR": str(tmp_path / "tmp")},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait("the hanging download", lambda: hanging.hits, 120)
    finally:
        os.killpg(quickstart.pid, signal.SIGKILL)  # the in-process run dies with its process
        quickstart.wait()
    hanging.delay = 0
    leftover = _wait("the killed run's work folder", lambda: list(work.glob("oa-run-*")), 10)
    assert len(leftover) == 1 and leftover[0].name.startswith(f"oa-run-{quickstart.pid}-")
    store = LocalStore(home / "data")
    complete = sorted(store.list("runs/addresses/us/xx/s00/city/"))
    # what a kill in the middle of a write or a publish leaves in the store, two days old and just now
    run = "runs/addresses/us/xx/s03/city"
    (store.root / run / "old-run").mkdir(parents=True)
    (store.root / run / "old-run" / "out.geojson").write_bytes(b"x" * 5000)
    (store.root / run / "old-run" / ".tmp-abc123").write_bytes(b"y" * 700)
    (store.root / run / "new-run").mkdir()
    (store.root / run / "new-run" / "out.geojson").write_bytes(b"z" * 100)
    (store.root / run / "named-run").mkdir()  # incomplete, but a pointer names it: never removed
    (store.root / run / "named-run" / "out.geojson").write_bytes(b"n" * 100)
    store.put_bytes("held/addresses/us/xx/s03/city.json", json.dumps({"prefix": f"{run}/named-run"}).encode())
    for path in (store.root / run / "old-run", store.root / run / "named-run", store.root / "runs/addresses/us/xx/s00"):
        _age(path, 2 * DAY)  # complete runs are never touched, however old
    for name, value in {
        "OA_ENV": "local",
        "OA_DATA_DIR": str(home / "data"),
        "OA_WORK_DIR": str(work),
        "DAGSTER_HOME": str(home / "dagster_home"),
    }.items():
        monkeypatch.setenv(name, value)

    assert main(["cleanup", "--dry-run", "--grace", "0"]) == 0
    dry = capsys.readouterr().out
    assert "would remove temp file" in dry and "would remove stuck run" in dry and "(dry run)" in dry
    assert (store.root / run / "old-run").is_dir() and leftover[0].is_dir()

    assert main(["cleanup"]) == 0  # 24 h grace: only the old debris goes
    out = capsys.readouterr().out
    assert f"removed incomplete run: {run}/old-run (5,000 bytes)" in out
    assert f"removed temp file: {run}/old-run/.tmp-abc123 (700 bytes)" in out
    assert "cleanup removed 1 incomplete run, 1 temp file; 5.7 kB freed; left 2 younger than 24 h, 1 in use" in out
    assert not (store.root / run / "old-run").exists()
    assert (store.root / run / "new-run" / "out.geojson").is_file()  # may be being published right now
    assert (store.root / run / "named-run" / "out.geojson").is_file()
    assert leftover[0].is_dir()  # changed minutes ago
    with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
        stuck = [r for r in instance.get_runs() if r.status == dg.DagsterRunStatus.STARTED]
        assert len(stuck) == 1  # the layer run the kill interrupted

    assert main(["cleanup", "--grace", "0"]) == 0
    out = capsys.readouterr().out
    assert f"removed work folder: {leftover[0]}" in out
    assert f"removed stuck run: addresses_job {stuck[0].run_id}" in out  # quickstart runs the named jobs
    assert not leftover[0].exists() and not (store.root / run / "new-run").exists()
    assert (store.root / run / "named-run" / "out.geojson").is_file()
    assert sorted(store.list("runs/addresses/us/xx/s00/city/")) == complete  # complete runs are never touched
    with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
        assert instance.get_run_by_id(stuck[0].run_id).status == dg.DagsterRunStatus.FAILURE


def test_cleanup_job_on_s3_removes_incomplete_runs_and_unfinished_uploads_but_not_young_or_named_ones(
    tmp_path: Path, moto_url: str
) -> None:
    from oa_dagster.definitions import build_definitions
    from oa_dagster.resources.deployments import s3_resources

    store = moto_bucket(moto_url, "cleanup")
    run = "runs/parcels/us/xx/s00/city"
    store.put_bytes(f"{run}/complete/out.geojson", b"c" * 10)
    store.put_bytes(f"{run}/complete/manifest.json", b"{}")
    store.put_bytes(f"{run}/killed/out.geojson", b"k" * 300)  # a publish killed before its manifest
    store.put_bytes(f"{run}/killed/state.json", b"{}")
    store.put_bytes(f"{run}/named/out.geojson", b"n" * 10)
    store.put_bytes(f"jobs/pr-1-abcdef0/{run}/killed/out.geojson", b"j" * 20)
    store.put_bytes("held/parcels/us/xx/s00/city.json", json.dumps({"prefix": f"{run}/named"}).encode())
    resources = {
        **local(tmp_path, work_dir=str(tmp_path / "work")),
        **s3_resources("cleanup", prefix="oa", endpoint_url=moto_url, region_name="us-east-1", s3_kwargs=MOTO_CREDS),
    }
    job = build_definitions(resources).resolve_job_def("cleanup_job")

    def run_job(grace_hours: float) -> dict[str, Any]:
        with dg.instance_for_test() as instance:
            result = job.execute_in_process(
                instance=instance, run_config={"ops": {"cleanup_op": {"config": {"grace_hours": grace_hours}}}}
            )
            assert result.success
            output = next(e for e in result.all_events if e.event_type_value == "STEP_OUTPUT")
            return {k: v.value for k, v in output.step_output_data.metadata.items()}

    young = run_job(1.0)  # everything was written just now: a run may still be publishing it
    assert young["incomplete_runs"] == 0 and young["kept_recent"] == 3
    assert store.exists(f"{run}/killed/out.geojson")
    # a large file's upload killed half way (moto dates every upload 2010, so it comes after the young run)
    upload = store.client.create_multipart_upload(Bucket="cleanup", Key=f"oa/{run}/big/cache.zip")
    store.client.upload_part(
        Bucket="cleanup", Key=f"oa/{run}/big/cache.zip", UploadId=upload["UploadId"], PartNumber=1, Body=b"p" * 1000
    )

    report = run_job(0.0)
    assert report["incomplete_runs"] == 2 and report["unfinished_uploads"] == 1, report["summary"]
    assert report["bytes_freed"] == 300 + 2 + 20 + 1000 and report["kept_in_use"] == 1
    assert sorted(store.list("runs/")) == [
        f"{run}/complete/manifest.json",
        f"{run}/complete/out.geojson",
        f"{run}/named/out.geojson",
    ]
    assert list(store.list("jobs/")) == []
    assert store.client.list_multipart_uploads(Bucket="cleanup").get("Uploads", []) == []
