"""The platform as an operator runs it: separate processes from `deploy/production` on Postgres and S3.

`dagster api grpc` (the code server), `dagster-webserver` and `dagster-daemon run` pointed at it, and
`oa-dagster serve`, each in its own process group; a throwaway Postgres database, moto's S3 server (outputs and
compute logs), a fake GitHub serving the sources repository's tarball and the statuses/comments API, a local
HTTP data server. Runs go through the default run launcher (the code server starts each run's process). With
no clicks: the set schedule (cron every minute) starts a set, the set finishes, its outputs are in S3 with
their content types; a signed pull-request delivery to `serve` ends in a `success` status and one comment; the
webserver's GraphQL answers for the asset graph, the `addresses` partitions and a run's compute logs (read
back from S3).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
import requests

from oa_dagster.webhook.signatures import sign
from tests.ci_deliveries import pr_payload
from tests.platform_helpers import (
    ROOT,
    csv_entry,
    free_port,
    post_graphql,
    postgres_or_skip,
    production_instance_home,
    running_serve,
    wait_for,
    wait_for_dagster_server,
)
from tests.servers.downloads import DownloadServer
from tests.servers.fixtures import GITHUB_TOKEN, MOTO_CREDS
from tests.servers.github import FakeGitHubServer, file_entry, sources_tarball

pytestmark = pytest.mark.production_e2e

REPO = "openaddresses/openaddresses"
SHA = "5e75e75e75e75e75e75e75e75e75e75e75e75e75"
SECRET = "e2e-webhook-secret"
OUTPUTS, LOGS = "e2e-outputs", "e2e-logs"
CSV = "lon,lat,num,street\n" + "".join(f"-122.{i:04d},37.{i:04d},{i + 1},MAIN ST\n" for i in range(20))
PR_NUMBER, PR_HEAD = 9, "ab" * 20


def _sources(data: DownloadServer) -> dict[str, Any]:
    """A CSV over HTTP, a share-alike one, and one whose server answers 404."""

    def source(entry: dict[str, Any]) -> dict[str, Any]:
        return {"schema": 2, "coverage": {"country": "us", "state": "ca"}, "layers": {"addresses": [entry]}}

    return {
        "us/ca/alpha": source(csv_entry("city", data.url("/alpha.csv"), license={"text": "Public domain"})),
        "us/ca/beta": source(csv_entry("city", data.url("/beta.csv"), license={"text": "ODbL", "share-alike": True})),
        "us/ca/gamma": source(csv_entry("city", data.url("/missing.csv"), license={"text": "Public domain"})),
    }


@contextmanager
def _process(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """One process in its own group, killed with its children at the end."""
    process = subprocess.Popen(
        argv, cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=log.open("wb")
    )
    try:
        yield process
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _runs(base: str, job_name: str) -> list[dict[str, Any]]:
    query = "query($job: String!) { runsOrError(filter: {pipelineName: $job}) { ... on Runs { results { runId } } } }"
    return post_graphql(base, query, job=job_name)["runsOrError"]["results"]


def _stop_schedule(base: str, name: str) -> None:
    """What the UI's toggle sends: the schedule's state id, then the stop mutation."""
    state = post_graphql(
        base,
        """query($selector: ScheduleSelector!) { scheduleOrError(scheduleSelector: $selector) {
             ... on Schedule { scheduleState { id } } } }""",
        selector={"repositoryLocationName": "oa_dagster", "repositoryName": "__repository__", "scheduleName": name},
    )["scheduleOrError"]["scheduleState"]["id"]
    stopped = post_graphql(
        base,
        """mutation($id: String!) { stopRunningSchedule(id: $id) {
             ... on ScheduleStateResult { scheduleState { status } } } }""",
        id=state,
    )["stopRunningSchedule"]
    assert stopped["scheduleState"]["status"] == "STOPPED", stopped


def _executable(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def test_the_production_processes_run_a_set_a_pull_request_and_answer_the_ui(
    tmp_path: Path, moto_url: str, download_server: DownloadServer
) -> None:
    download_server.route("/alpha.csv", body=CSV.encode(), content_type="text/csv")
    download_server.route("/beta.csv", body=CSV.encode(), content_type="text/csv")
    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1", **MOTO_CREDS)
    for bucket in (OUTPUTS, LOGS):
        s3.create_bucket(Bucket=bucket)
    github = FakeGitHubServer(token=GITHUB_TOKEN).start()
    sources = _sources(download_server)
    github.add_tarball(REPO, "master", sources_tarball(REPO, SHA, sources))
    with ExitStack() as stack:
        stack.callback(github.stop)
        database = urlsplit(stack.enter_context(postgres_or_skip("oa_e2e")))
        home = production_instance_home(tmp_path / "home")
        grpc_port = free_port()
        workspace = tmp_path / "workspace.yaml"
        workspace.write_text(
            "load_from:\n  - grpc_server:\n      host: 127.0.0.1\n"
            f"      port: {grpc_port}\n      location_name: oa_dagster\n"
        )
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "OA_ENV": "production",
            "DAGSTER_PG_HOST": str(database.hostname),
            "DAGSTER_PG_USER": str(database.username),
            "DAGSTER_PG_PASSWORD": "",
            "DAGSTER_PG_DB": database.path.lstrip("/"),
            "OA_LOGS_BUCKET": LOGS,
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": MOTO_CREDS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": MOTO_CREDS["aws_secret_access_key"],
            "AWS_ENDPOINT_URL_S3": moto_url,  # the compute log manager's client follows it
            "OA_S3_BUCKET": OUTPUTS,
            "OA_S3_ENDPOINT_URL": moto_url,
            "OA_GITHUB_API_URL": github.url(),
            "GITHUB_TOKEN": GITHUB_TOKEN,
            "OA_SOURCES_REPO": REPO,
            "OA_WEBHOOK_SECRET": SECRET,
            "OA_CI_ALLOW_HOSTS": f"127.0.0.1:{download_server.server_address[1]}",
            "OA_SET_CRON": "* * * * *",
            "OA_WORK_DIR": str(tmp_path / "work"),
            # a run launch is one gRPC call to the code server, which starts the run's process: allow a shared
            # 2-core machine more than the 60 s default
            "DAGSTER_GRPC_TIMEOUT_SECONDS": "300",
        }
        subprocess.run(
            [_executable("dagster"), "instance", "migrate"], cwd=ROOT, env=env, check=True, capture_output=True
        )
        code = stack.enter_context(
            _process(
                [
                    _executable("dagster"),
                    "api",
                    "grpc",
                    "-m",
                    "oa_dagster.definitions",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(grpc_port),
                ],
                env,
                tmp_path / "grpc.log",
            )
        )
        web_port = free_port()
        web = stack.enter_context(
            _process(
                [_executable("dagster-webserver"), "-w", str(workspace), "-h", "127.0.0.1", "-p", str(web_port)],
                env,
                tmp_path / "web.log",
            )
        )
        base = f"http://127.0.0.1:{web_port}"
        wait_for_dagster_server(base, web)
        assert web.poll() is None and code.poll() is None, (tmp_path / "web.log").read_text()[-3000:]
        daemon_log = tmp_path / "daemon.log"
        stack.enter_context(_process([_executable("dagster-daemon"), "run", "-w", str(workspace)], env, daemon_log))
        serve = stack.enter_context(running_serve(env, tmp_path / "serve.log"))

        # the set: started by the schedule within a minute, which is then stopped as an operator would (its cron
        # fires every minute), and finished with its summary written last
        wait_for("the schedule's catalog run", lambda: _runs(base, "source_catalog_job"), 300, tmp_path / "grpc.log")
        _stop_schedule(base, "weekly_set")

        def summary() -> str | None:
            listed = s3.list_objects_v2(Bucket=OUTPUTS, Prefix="sets/").get("Contents", [])
            return next((item["Key"] for item in listed if item["Key"].endswith("/summary.json")), None)

        summary_key = wait_for("the scheduled set to finish", summary, 600, daemon_log)
        finished = json.loads(s3.get_object(Bucket=OUTPUTS, Key=summary_key)["Body"].read())
        assert (finished["done"], finished["failed"]) == ({"addresses": 2}, {"addresses": 1}), finished
        keys = [item["Key"] for item in s3.list_objects_v2(Bucket=OUTPUTS).get("Contents", [])]
        assert "latest/addresses/us/ca/alpha/city.json" in keys and "latest/addresses/us/ca/beta/city.json" in keys
        assert "latest/addresses/us/ca/gamma/city.json" not in keys
        output = next(key for key in keys if key.startswith("runs/addresses/us/ca/alpha/") and key.endswith(".geojson"))
        assert s3.head_object(Bucket=OUTPUTS, Key=output)["ContentType"] == "application/x-ndjson"

        # a pull request: a signed delivery to serve, then the daemon's CI sensor and a run through the code server
        github.add_pull(REPO, PR_NUMBER, [file_entry("sources/us/ca/alpha.json")], head_sha=PR_HEAD)
        github.add_file(REPO, "sources/us/ca/alpha.json", PR_HEAD, json.dumps(sources["us/ca/alpha"]))
        body = json.dumps(pr_payload("opened", PR_NUMBER, PR_HEAD)).encode()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": "pull_request",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": sign(SECRET, body),
        }
        assert requests.post(f"{serve}/hook", data=body, headers=headers, timeout=30).ok

        def final_status() -> str | None:
            states = [status["state"] for status in github.statuses.get((REPO, PR_HEAD), [])]
            return states[-1] if states and states[-1] != "pending" else None

        assert wait_for("the pull request's final status", final_status, 300, daemon_log) == "success"
        statuses = github.statuses[(REPO, PR_HEAD)]
        assert statuses[-1]["description"] == "1 entry processed: 20 features", statuses
        comments = wait_for("the results comment", lambda: github.comments.get((REPO, PR_NUMBER)), 60, daemon_log)
        assert len(comments) == 1 and "us/ca/alpha/city" in comments[0]["body"]

        # the UI's GraphQL: the asset graph, the addresses partitions, a run's compute logs from S3
        nodes = post_graphql(base, "{ assetNodes { assetKey { path } } }")["assetNodes"]
        assert {"addresses", "source_catalog", "collections"} <= {node["assetKey"]["path"][-1] for node in nodes}
        partitions = post_graphql(
            base,
            """query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { ... on AssetNode {
                 partitionKeys assetPartitionStatuses { ... on DefaultPartitionStatuses {
                   materializedPartitions failedPartitions } } } } }""",
            key={"path": ["addresses"]},
        )["assetNodeOrError"]
        assert {"us/ca/alpha/city", "us/ca/beta/city", "us/ca/gamma/city"} <= set(partitions["partitionKeys"])
        statuses = partitions["assetPartitionStatuses"]
        assert set(statuses["materializedPartitions"]) == {"us/ca/alpha/city", "us/ca/beta/city"}
        assert statuses["failedPartitions"] == ["us/ca/gamma/city"]
        runs = post_graphql(
            base, "{ runsOrError(filter: {statuses: [SUCCESS]}) { ... on Runs { results { runId jobName } } } }"
        )["runsOrError"]["results"]
        run_id = next(run["runId"] for run in runs if run["jobName"] != "cleanup_job")
        # S3ComputeLogManager: <prefix>/storage/<log key...>.<out|err>
        stored = s3.list_objects_v2(Bucket=LOGS, Prefix=f"dagster-compute-logs/storage/{run_id}/").get("Contents", [])
        assert stored, f"no compute logs of run {run_id} in s3://{LOGS}"
        log_key = stored[0]["Key"].removeprefix("dagster-compute-logs/storage/").rsplit(".", 1)[0].split("/")
        captured = post_graphql(
            base, "query($key: [String!]!) { capturedLogs(logKey: $key) { stdout stderr } }", key=log_key
        )["capturedLogs"]
        assert (captured["stdout"] or "") + (captured["stderr"] or "")
