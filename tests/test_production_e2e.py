"""The platform as an operator runs it: the processes of `deploy/production`, every run an ECS task, no clicks.

`tests/ecs_deployment.py` starts the gRPC code server, `dagster-webserver` and `dagster-daemon run` on the instance
of deploy/production/dagster.yaml (a throwaway Postgres database, compute logs on moto's S3, the ECS run launcher
against moto's ECS), each in its own process group, and the fake ECS agent running each RunTask's container command
as a local process; this test adds `oa-dagster serve`, the code's production deployment (`OA_ENV=production`: the
sources are the tarball a fake GitHub serves at the default branch, outputs go to an S3 bucket), and the data: a
local HTTP server (CSV, a shapefile zip, the bundled parcels zip and buildings GeoJSON) and a fake ArcGIS server
(`tests/set_entries.py`, which `bench/bench_ecs.py` builds its set from too).

Then, with no clicks: the set schedule (cron every minute) starts a set of a dozen entries in three layers (one
fails, one is share-alike); the set finishes; `collections_after_set` and `coverage_after_collections` build the
collections, coverage, maps and results index; every run was an ECS task; every object in the bucket carries its
`Content-Type`. A signed pull-request delivery to `serve` ends in a `success` status and one comment. The
webserver's GraphQL answers for the asset graph, the `addresses` partitions and their status, and a run's compute
logs, read back from S3. At the end every process group the deployment started is gone.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import pytest
import requests

from oa_dagster.webhook.signatures import sign
from tests.ci_deliveries import pr_payload
from tests.ecs_deployment import SECRETS, Deployment, production_deployment
from tests.platform_helpers import running_serve, wait_for
from tests.servers.arcgis import FakeArcGISServer
from tests.servers.downloads import DownloadServer
from tests.servers.fixtures import MOTO_CREDS, PUBLIC_CONTENT_TYPES
from tests.servers.github import FakeGitHubServer, file_entry, sources_tarball
from tests.set_entries import SHARE_ALIKE, SetEntries, serve_set_data

# 5-8 min on the shared 2-core development machine at load 20-30 (up to a minute of it waiting for the cron), over
# the suite's 600 s at load 60: the whole platform is up meanwhile, so a bound of its own
pytestmark = [pytest.mark.production_e2e, pytest.mark.timeout(1500)]

REPO = "openaddresses/openaddresses"
SHA = "5e75e75e75e75e75e75e75e75e75e75e75e75e75"
ROWS = 20
PR_NUMBER, PR_HEAD = 9, "ab" * 20
DONE = {
    "addresses": {f"us/{key}" for key in ("ca/alpha/city", "ca/beta/city", "ca/delta/county", "ca/epsilon/city")}
    | {"us/or/portland/city", "us/nv/reno/city"},
    "parcels": {"us/ca/alpha/county", "us/wa/seattle/county"},
    "buildings": {"us/ca/alpha/city", "us/or/portland/city"},
}
FAILED = {"addresses": {"us/ca/gamma/city"}}  # its server answers 404
SET_JOBS = {"addresses_job", "parcels_job", "buildings_job"}


def _sources(entries: SetEntries) -> dict[str, Any]:
    """Twelve entries: eight addresses (CSV over HTTP, a share-alike CSV, one answering 404, an ArcGIS layer, a
    shapefile zip), two parcels (shapefile zip), two buildings (gzipped GeoJSON)."""

    def source(state: str, layers: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        return {"schema": 2, "coverage": {"country": "us", "state": state}, "layers": layers}

    return {
        "us/ca/alpha": source(
            "ca",
            {
                "addresses": [entries.csv("city")],
                "parcels": [entries.parcels("county")],
                "buildings": [entries.buildings("city")],
            },
        ),
        "us/ca/beta": source("ca", {"addresses": [entries.csv("city", license=SHARE_ALIKE)]}),
        "us/ca/gamma": source("ca", {"addresses": [entries.missing("city")]}),
        "us/ca/delta": source("ca", {"addresses": [entries.esri("county")]}),
        "us/ca/epsilon": source("ca", {"addresses": [entries.shapefile("city")]}),
        "us/or/portland": source("or", {"addresses": [entries.csv("city")], "buildings": [entries.buildings("city")]}),
        "us/nv/reno": source("nv", {"addresses": [entries.csv("city")]}),
        "us/wa/seattle": source("wa", {"parcels": [entries.parcels("county")]}),
    }


def _stop_schedule(deployment: Deployment, name: str) -> None:
    """What the UI's toggle sends: the schedule's state id, then the stop mutation (its cron fires every minute)."""
    state = deployment.graphql(
        """query($selector: ScheduleSelector!) { scheduleOrError(scheduleSelector: $selector) {
             ... on Schedule { scheduleState { id } } } }""",
        selector={"repositoryLocationName": "oa_dagster", "repositoryName": "__repository__", "scheduleName": name},
    )["scheduleOrError"]["scheduleState"]["id"]
    stopped = deployment.graphql(
        """mutation($id: String!) { stopRunningSchedule(id: $id) {
             ... on ScheduleStateResult { scheduleState { status } } } }""",
        id=state,
    )["stopRunningSchedule"]
    assert stopped["scheduleState"]["status"] == "STOPPED", stopped


def _assert_every_run_was_an_ecs_task(deployment: Deployment) -> list[dg.DagsterRun]:
    """Each run of the instance has the task the launcher started for it (RunTask with the run's tags and the
    deployment's), and a run that succeeded is a task whose container exits 0."""
    runs = deployment.instance.get_runs()
    tasks = deployment.tasks_by_run()
    for run in runs:
        task = tasks.get(run.run_id)
        assert task is not None, f"{run.job_name} run {run.run_id} was not launched as an ECS task"
        assert run.tags["ecs/task_arn"] == task.arn
        assert task.tags["dagster/job_name"] == run.job_name and task.tags["oa/deployment"] == "production"
        assert task.command[:3] == ["dagster", "api", "execute_run"], task.command
        assert task.environment["GITHUB_TOKEN"] == SECRETS["GITHUB_TOKEN"]  # from Secrets Manager, not overrides
        assert SECRETS["GITHUB_TOKEN"] not in json.dumps(task.overrides)
        if run.status == dg.DagsterRunStatus.SUCCESS:
            # the run is recorded a success before its process has exited: wait for the task to stop
            assert deployment.agent.wait_for_exit(task, timeout=60) == 0, task.log.read_text()[-3000:]
        if run.job_name in SET_JOBS:  # sized by its entries (task_sizing): the size is RunTask's override
            assert (task.overrides["cpu"], task.overrides["memory"]) == (run.tags["ecs/cpu"], run.tags["ecs/memory"])
    return runs


def _assert_content_types(s3: Any, bucket: str) -> set[str]:
    """Every object in the bucket, by its suffix; returns the keys."""
    keys = {
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for item in page.get("Contents", [])
    }
    kinds = set()
    for key in keys:
        suffix = Path(key).suffix
        if suffix not in PUBLIC_CONTENT_TYPES:
            continue
        want = "application/geo+json" if key == "coverage/render-world.geojson" else PUBLIC_CONTENT_TYPES[suffix]
        assert s3.head_object(Bucket=bucket, Key=key)["ContentType"] == want, key
        kinds.add(suffix)
    assert kinds == set(PUBLIC_CONTENT_TYPES), kinds  # every kind was written and checked
    return keys


def _pull_request(deployment: Deployment, github: FakeGitHubServer, serve: str, sources: dict[str, Any]) -> None:
    """A signed delivery to `serve`; the daemon's CI sensor launches the job (an ECS task), which reports."""
    github.add_pull(REPO, PR_NUMBER, [file_entry("sources/us/nv/reno.json")], head_sha=PR_HEAD)
    github.add_file(REPO, "sources/us/nv/reno.json", PR_HEAD, json.dumps(sources["us/nv/reno"]))
    body = json.dumps(pr_payload("opened", PR_NUMBER, PR_HEAD)).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "pull_request",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(SECRETS["OA_WEBHOOK_SECRET"], body),
    }
    assert requests.post(f"{serve}/hook", data=body, headers=headers, timeout=30).ok

    def final_status() -> str | None:
        states = [status["state"] for status in github.statuses.get((REPO, PR_HEAD), [])]
        return states[-1] if states and states[-1] != "pending" else None

    assert wait_for("the pull request's final status", final_status, 300, deployment.daemon_log) == "success"
    statuses = github.statuses[(REPO, PR_HEAD)]
    assert statuses[-1]["description"] == f"1 entry processed: {ROWS} features", statuses
    comments = wait_for("the results comment", lambda: github.comments.get((REPO, PR_NUMBER)), 60)
    assert len(comments) == 1 and "us/nv/reno/city" in comments[0]["body"], comments


def _assert_the_ui_answers(deployment: Deployment, s3: Any, runs: list[dg.DagsterRun]) -> None:
    """The asset graph, the addresses partitions and their status, a set run's compute logs read back from S3."""
    nodes = deployment.graphql("{ assetNodes { assetKey { path } } }")["assetNodes"]
    wanted = {"source_catalog", "addresses", "parcels", "buildings", "collections", "results_index"}
    assert wanted <= {node["assetKey"]["path"][-1] for node in nodes}
    partitions = deployment.graphql(
        """query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { ... on AssetNode {
             partitionKeys assetPartitionStatuses { ... on DefaultPartitionStatuses {
               materializedPartitions failedPartitions } } } } }""",
        key={"path": ["addresses"]},
    )["assetNodeOrError"]
    assert DONE["addresses"] | FAILED["addresses"] == set(partitions["partitionKeys"])
    statuses = partitions["assetPartitionStatuses"]
    assert set(statuses["materializedPartitions"]) == DONE["addresses"]
    assert set(statuses["failedPartitions"]) == FAILED["addresses"]
    run = next(r for r in runs if r.job_name in SET_JOBS and r.status == dg.DagsterRunStatus.SUCCESS)
    bucket, prefix = deployment.env["OA_LOGS_BUCKET"], f"dagster-compute-logs/storage/{run.run_id}/"
    stored = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])  # S3ComputeLogManager's layout
    assert stored, f"no compute logs of run {run.run_id} in s3://{bucket}"
    log_key = stored[0]["Key"].removeprefix("dagster-compute-logs/storage/").rsplit(".", 1)[0].split("/")
    captured = deployment.graphql(
        "query($key: [String!]!) { capturedLogs(logKey: $key) { stdout stderr } }", key=log_key
    )["capturedLogs"]
    text = (captured["stdout"] or "") + (captured["stderr"] or "")
    assert run.job_name.removesuffix("_job") in text, text[-2000:]  # the run's layer, as its steps logged it


def _groups_gone(pgids: list[int]) -> bool:
    for pgid in pgids:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            continue
        return False
    return True


def test_the_production_processes_run_a_set_through_ecs_a_pull_request_and_answer_the_ui(
    tmp_path: Path, moto_url: str, download_server: DownloadServer, arcgis_server: FakeArcGISServer
) -> None:
    sources = _sources(serve_set_data(download_server, arcgis_server, tmp_path, ROWS))
    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1", **MOTO_CREDS)
    outputs = f"e2e-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=outputs)
    github = FakeGitHubServer(token=SECRETS["GITHUB_TOKEN"]).start()
    github.add_tarball(REPO, "master", sources_tarball(REPO, SHA, sources))
    env = {
        "OA_ENV": "production",
        "OA_S3_BUCKET": outputs,
        "OA_S3_ENDPOINT_URL": moto_url,
        "OA_GITHUB_API_URL": github.url(),
        "OA_SOURCES_REPO": REPO,
        "OA_CI_ALLOW_HOSTS": f"127.0.0.1:{download_server.server_address[1]}",
        "OA_SET_CRON": "* * * * *",
        "OA_WORK_DIR": str(tmp_path / "work"),
    }
    groups: list[int] = []
    try:
        with production_deployment(moto_url, tmp_path, None, env=env) as deployment:
            groups += [process.pid for process in deployment.processes.values()]
            with running_serve(deployment.env, tmp_path / "serve.log") as serve:
                # the set: started by the schedule within a minute, which is then stopped as an operator would
                wait_for(
                    "the schedule's catalog run",
                    lambda: deployment.instance.get_runs(dg.RunsFilter(job_name="source_catalog_job")),
                    180,
                    deployment.daemon_log,
                )
                _stop_schedule(deployment, "weekly_set")

                def summary() -> str | None:
                    listed = s3.list_objects_v2(Bucket=outputs, Prefix="sets/").get("Contents", [])
                    return next((item["Key"] for item in listed if item["Key"].endswith("/summary.json")), None)

                key = wait_for("the scheduled set to finish", summary, 600, deployment.daemon_log)
                finished = json.loads(s3.get_object(Bucket=outputs, Key=key)["Body"].read())
                counts = {layer: len(keys) for layer, keys in DONE.items()}
                assert (finished["done"], finished["failed"]) == (counts, {"addresses": 1}), finished

                # after the set, with no clicks: collections, then coverage, the maps and the results index
                index = wait_for(
                    "the results index",
                    lambda: s3.list_objects_v2(Bucket=outputs, Prefix="index.html").get("Contents"),
                    420,
                    deployment.daemon_log,
                )
                assert index
                keys = _assert_content_types(s3, outputs)
                for layer, entries in DONE.items():
                    assert {f"latest/{layer}/{entry}.json" for entry in entries} <= keys, layer
                assert not any(key.startswith("latest/addresses/us/ca/gamma/") for key in keys)
                for name in ("openaddr-collected-us_west.zip", "openaddr-collected-us_west-sa.zip"):
                    assert name in keys, name  # the free and the share-alike collection of addresses
                assert {"collections/parcels/us_west.parquet", "collections/buildings/us_west.parquet"} <= keys
                assert {"coverage/render-world.png", "index.json", "state.txt"} <= keys

                _pull_request(deployment, github, serve, sources)
                runs = _assert_every_run_was_an_ecs_task(deployment)
                jobs = {run.job_name for run in runs}
                assert {"source_catalog_job", *SET_JOBS, "collections_job", "coverage_job"} <= jobs, jobs
                assert len(runs) == len(deployment.agent.tasks)  # and no task without its run
                _assert_the_ui_answers(deployment, s3, runs)
                groups += [task.process.pid for task in deployment.agent.tasks.values()]
    finally:
        github.stop()
    wait_for("every process group to be gone", lambda: _groups_gone(groups), 30)
