"""Faults in production (issue 18), on the production deployment of `tests/ecs_deployment.py`: the instance of
deploy/production/dagster.yaml on Postgres, S3 compute logs and ECS on moto, the real code server, daemon and
webserver, each run in its own (fake-agent) ECS task. Each fault is written up in docs/operations.md ("Faults").

- a run's task process SIGKILLed mid-download: run monitoring fails the run, the retry succeeds, the previous
  output stays latest meanwhile, the set counts the entry once;
- every connection of the instance's database cut (`pg_terminate_backend`, again and again) during a set: the
  services stay up, no run stays STARTED, the set finishes with every entry done;
- a data server that hangs: its entry fails on the download deadline (`OA_DOWNLOAD_DEADLINE_SECONDS`), naming the
  source and the cause; the set's other entries succeed.

One deployment serves the module (starting it costs most of the time); a first set gives every entry an output.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator

import dagster as dg
import pytest

from oa_dagster.platform.set_report import report_key
from tests.ecs_deployment import Deployment, production_deployment, task_of
from tests.fault_helpers import (
    ConnectionCutter,
    entry_runs,
    latest_pointer,
    run_messages,
    set_runs,
    start_set,
    stored,
    wait_for_set,
)
from tests.platform_helpers import csv_entry, wait_for, write_source
from tests.servers.downloads import DownloadServer

pytestmark = pytest.mark.production_e2e

SOURCES = ("steady", "slow", "hung")  # us/xx/<name>, one `city` entry each
DEADLINE = 20  # OA_DOWNLOAD_DEADLINE_SECONDS of the deployment
ROWS = "lon,lat,num,street\n" + "".join(f"-122.{i:04d},37.{i:04d},{i + 1},MAIN ST\n" for i in range(20))
TERMINAL = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def key(name: str) -> str:
    return f"us/xx/{name}/city"


def counts(summary: dict) -> tuple[int, int, int]:
    """A set summary's entries launched, done and failed, over all layers."""
    return tuple(sum(summary[bucket].values()) for bucket in ("total", "done", "failed"))  # type: ignore[return-value]


@pytest.fixture(scope="module")
def data() -> Iterator[DownloadServer]:
    server = DownloadServer().start()
    for name in SOURCES:
        server.route(f"/{name}.csv", body=ROWS.encode(), content_type="text/csv")
    yield server
    for route in server.routes.values():
        if route.hold is not None:
            route.hold.set()  # let held requests end
    server.stop()


@pytest.fixture(scope="module")
def deployment(moto_url: str, data: DownloadServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("faults")
    for name in SOURCES:
        write_source(tmp / "sources", f"us/xx/{name}", {"addresses": [csv_entry("city", data.url(f"/{name}.csv"))]})
    env = {"OA_BATCH_MAX_ENTRIES": "1", "OA_DOWNLOAD_DEADLINE_SECONDS": str(DEADLINE)}  # one run (task) per entry
    with production_deployment(moto_url, tmp, tmp / "sources", env=env) as deployment:
        start_set(deployment, "set-first")
        first = wait_for_set(deployment, "set-first")
        assert counts(first) == (3, 3, 0), first
        yield deployment


def test_a_task_killed_mid_download_fails_its_run_the_retry_succeeds_and_the_entry_counts_once(
    deployment: Deployment, data: DownloadServer
) -> None:
    slow = data.routes["/slow.csv"]
    previous = latest_pointer(deployment, key("slow"))
    slow.drip, slow.drip_bytes = 1.0, 32  # headers, then 32 bytes a second: the run is mid-download
    hits = slow.hits
    start_set(deployment, "set-kill")

    def downloading() -> dg.DagsterRun | None:
        runs = entry_runs(deployment, "set-kill", key("slow"))
        return runs[0] if runs and runs[0].status == dg.DagsterRunStatus.STARTED and slow.hits > hits else None

    first = wait_for("the slow entry's run to be downloading", downloading, 240, deployment.daemon_log)
    task = task_of(deployment, first.run_id)
    slow.drip, slow.hold = 0.0, threading.Event()  # the next request waits until the test has looked
    os.kill(task.process.pid, signal.SIGKILL)  # the container's process, as the OOM killer or a crash ends it
    assert deployment.agent.wait_for_exit(task, timeout=60) == 128 + signal.SIGKILL

    failed = deployment.wait_for_status(first.run_id, dg.DagsterRunStatus.FAILURE)
    assert failed.tags["ecs/task_arn"] == task.arn and not task.stopped_from_outside
    assert any(task.arn in m and "exit code 137" in m for m in run_messages(deployment, first.run_id))
    retry_id = wait_for(
        "the retry",
        lambda: deployment.instance.get_run_by_id(first.run_id).tags.get("dagster/auto_retry_run_id"),
        180,
        deployment.daemon_log,
    )
    wait_for("the retry to ask the data server", lambda: slow.hits > hits + 1, 240, deployment.daemon_log)
    # meanwhile: the killed run published nothing, the previous output is still the latest
    assert latest_pointer(deployment, key("slow"))["run_id"] == previous["run_id"]
    assert deployment.instance.get_run_by_id(retry_id).status == dg.DagsterRunStatus.STARTED
    slow.hold.set()

    retry = deployment.wait_for_status(retry_id, *TERMINAL)
    assert retry.status == dg.DagsterRunStatus.SUCCESS, task_of(deployment, retry_id).log.read_text()[-3000:]
    assert latest_pointer(deployment, key("slow"))["run_id"] == retry_id
    summary = wait_for_set(deployment, "set-kill")
    # three entries, each counted once: the killed run's entry by its retry's outcome
    assert counts(summary) == (3, 3, 0), summary
    assert (summary["runs_requested"], summary["runs_finished"], summary["retries"]) == (3, 3, 1)


def test_cut_database_connections_during_a_set_leave_no_run_started_and_the_set_finishes(
    deployment: Deployment, data: DownloadServer
) -> None:
    for route in data.routes.values():
        route.drip, route.drip_bytes = 1.0, 64  # each download takes about 10 s: the cuts hit running runs
    hits = {path: route.hits for path, route in data.routes.items()}
    try:
        start_set(deployment, "set-pg")  # the set is under way once its catalog is materialized
        wait_for(
            "every entry's run to be downloading",
            lambda: all(route.hits > hits[path] for path, route in data.routes.items()),
            300,
            deployment.daemon_log,
        )
        # a failover's worth: every connection cut, round after round half a second apart, until at least five
        # connections were cut, while the runs download and write their events (the test reads no database
        # meanwhile: it would be cut too). Dagster's Postgres storage opens a connection per statement and closes it,
        # so on a quiet machine a round often finds none open: the count, not the rounds, says the cuts happened.
        with ConnectionCutter(deployment.env["DAGSTER_PG_DB"], every=0.5) as cutter:
            wait_for("five connections cut", lambda: cutter.cut >= 5 and cutter.rounds >= 5, 180)
    finally:
        for route in data.routes.values():
            route.drip = 0.0
    summary = wait_for_set(deployment, "set-pg", timeout=600)
    assert counts(summary) == (3, 3, 0), summary
    # no run left STARTED (or queued): every run of the set, retries included, ended
    runs = set_runs(deployment, "set-pg")
    assert runs and all(r.status in TERMINAL for r in runs), [(r.run_id, r.status) for r in runs]
    # the services rode it out: the daemon, the webserver (its GraphQL answers) and the code server still run
    for name, process in deployment.processes.items():
        assert process.poll() is None, f"the {name} ended with {process.returncode}"
    answer = deployment.graphql("{ runsOrError(limit: 1) { ... on Runs { results { runId status } } } }")
    assert answer["runsOrError"]["results"]
    # ... and the daemon still works: a set after the cuts runs as ever
    start_set(deployment, "set-after-pg")
    after = wait_for_set(deployment, "set-after-pg")
    assert counts(after) == (3, 3, 0), after


def test_a_data_server_that_hangs_fails_its_entry_on_the_deadline_and_the_others_succeed(
    deployment: Deployment, data: DownloadServer
) -> None:
    hung = data.routes["/hung.csv"]
    previous = latest_pointer(deployment, key("hung"))
    hung.hold = threading.Event()  # accepts the connection and the request, never answers
    start_set(deployment, "set-hang")
    summary = wait_for_set(deployment, "set-hang", timeout=600)
    assert counts(summary) == (3, 2, 1), summary

    (run,) = entry_runs(deployment, "set-hang", key("hung"))
    assert run.status == dg.DagsterRunStatus.FAILURE and "dagster/auto_retry_run_id" not in run.tags  # not retried
    cause = f"download of {data.url('/hung.csv')} took longer than the {DEADLINE} s deadline"
    assert any(key("hung") in m and cause in m for m in run_messages(deployment, run.run_id))
    assert hung.hits >= 1
    for name in ("steady", "slow"):
        (other,) = entry_runs(deployment, "set-hang", key(name))
        assert other.status == dg.DagsterRunStatus.SUCCESS
        assert latest_pointer(deployment, key(name))["run_id"] == other.run_id
    # the previous output stays the latest; the set's report names the entry and the cause
    assert latest_pointer(deployment, key("hung"))["run_id"] == previous["run_id"]
    report = json.dumps(stored(deployment, report_key("set-hang")))
    assert key("hung") in report and "took longer than the" in report
