"""What the fault tests (`tests/test_production_faults.py`) do to a production deployment and read back from it:
start a set as the weekly schedule does, wait for its summary, read an entry's `latest/` pointer, find the run and
the ECS task of one entry, and cut every database connection of the instance (`pg_terminate_backend`).

The deployment is `tests/ecs_deployment.py`'s; its code location keeps outputs on disk (`OA_DATA_DIR`), so the
store's keys are files there.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg2

from oa_dagster.platform import store_layout as layout
from oa_dagster.run_tags import LAUNCH_ALL, LAUNCH_TAG, RANGE_START_TAG, SET_TAG
from tests.ecs_deployment import Deployment
from tests.platform_helpers import PG, wait_for

LAYER_JOB = "addresses_job"


def start_set(deployment: Deployment, set_id: str) -> str:
    """The catalog materialized with a set's tags, as the `weekly_set` schedule asks; the `set_launcher` sensor
    then launches the entries. Returns the catalog run's id once it succeeded."""
    run_id = deployment.launch("source_catalog_job", {SET_TAG: set_id, LAUNCH_TAG: LAUNCH_ALL})
    run = deployment.wait_for_status(run_id, dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)
    assert run.status == dg.DagsterRunStatus.SUCCESS, f"the catalog run of {set_id} failed"
    return run_id


def stored(deployment: Deployment, key: str) -> dict[str, Any] | None:
    """A JSON document of the local output store, None while it is not there."""
    path = Path(deployment.env["OA_DATA_DIR"]) / key
    return json.loads(path.read_text()) if path.exists() else None


def wait_for_set(deployment: Deployment, set_id: str, timeout: float = 420) -> dict[str, Any]:
    """The set's `sets/<id>/summary.json`, written when every run of the set ended (retries included)."""
    return wait_for(
        f"set {set_id} to finish",
        lambda: stored(deployment, layout.set_summary_key(set_id)),
        timeout,
        deployment.daemon_log,
    )


def latest_pointer(deployment: Deployment, partition_key: str, layer: str = "addresses") -> dict[str, Any]:
    pointer = stored(deployment, layout.latest_key(layer, partition_key))
    assert pointer is not None, f"no latest output of {layer} {partition_key}"
    return pointer


def set_runs(deployment: Deployment, set_id: str, job: str = LAYER_JOB) -> list[dg.DagsterRun]:
    return [r for r in deployment.instance.get_runs(dg.RunsFilter(tags={SET_TAG: set_id})) if r.job_name == job]


def entry_runs(deployment: Deployment, set_id: str, partition_key: str) -> list[dg.DagsterRun]:
    """The set's runs of one entry (one entry per run: `OA_BATCH_MAX_ENTRIES=1`), newest first."""
    return [r for r in set_runs(deployment, set_id) if r.tags.get(RANGE_START_TAG) == partition_key]


def run_messages(deployment: Deployment, run_id: str) -> list[str]:
    """The run's event log messages with their errors' messages, as its page in the UI shows them."""
    texts = []
    for entry in deployment.instance.all_logs(run_id):
        data = entry.dagster_event.event_specific_data if entry.dagster_event else None
        error = getattr(data, "error", None)
        texts.append((entry.message or "") + (f"\n{error.message}" if error is not None else ""))
    return texts


def terminate_connections(database: str) -> int:
    """`pg_terminate_backend` on every other connection to `database` (what a failover or an operator's
    `pg_terminate_backend` does to the instance's processes); returns how many were cut."""
    connection = psycopg2.connect(dbname="postgres", connect_timeout=10, **PG)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            )
            (count,) = cursor.fetchone()
    finally:
        connection.close()
    return int(count)


class ConnectionCutter:
    """Cuts every connection of a database every `every` seconds in a thread, until stopped; counts the cuts."""

    def __init__(self, database: str, every: float = 1.0) -> None:
        self.database = database
        self.every = every
        self.cut = 0
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pg-terminate", daemon=True)

    def __enter__(self) -> ConnectionCutter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.cut += terminate_connections(self.database)
            self.rounds += 1
            time.sleep(self.every)
