"""Runs launched as ECS tasks: the instance of deploy/production/dagster.yaml (Postgres, S3 compute logs on moto,
`EcsRunLauncher` against moto's ECS), the real gRPC code server and daemon as processes, and the fake ECS agent
(`tests/servers/ecs.py`) running each task's container command as a local process.

One deployment serves the module's tests (starting it costs most of their time); each test launches its own runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import yaml

from tests.platform_helpers import (
    ROOT,
    csv_entry,
    free_port,
    post_graphql,
    postgres_or_skip,
    wait_for,
    wait_for_dagster_server,
    write_source,
)
from tests.servers.downloads import DownloadServer
from tests.servers.ecs import AgentTask, EcsAgent, EcsSetup, client, prepare_ecs

SECRETS = {
    "DAGSTER_PG_PASSWORD": "pg-secret-4f1c9a",
    "GITHUB_TOKEN": "ghs_secret-token-77aa31",
    "OA_WEBHOOK_SECRET": "hook-secret-0b5e2d",
}
IMAGE = "registry.example/oa-dagster:test"
BIN = Path(sys.executable).parent


@dataclass
class Deployment:
    """The processes and the instance a test launches runs on."""

    home: Path
    env: dict[str, str]
    ecs: EcsSetup
    agent: EcsAgent
    instance: dg.DagsterInstance
    daemon_log: Path
    endpoint: str
    web: str  # the webserver's base URL: its GraphQL API is what the UI sends
    downloads: DownloadServer  # the entries' upstream

    def launch(self, job: str, tags: dict[str, str] | None = None) -> str:
        """`dagster job launch` against the code server, as an operator would: the run is queued, and the daemon's
        coordinator hands it to the ECS launcher. Returns the run id."""
        before = {r.run_id for r in self.instance.get_runs()}
        args = [str(BIN / "dagster"), "job", "launch", "-j", job, "-w", str(ROOT / "deploy/production/workspace.yaml")]
        if tags:
            args += ["--tags", json.dumps(tags)]
        done = subprocess.run(args, env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        (run_id,) = {r.run_id for r in self.instance.get_runs()} - before
        return run_id

    def wait_for_status(self, run_id: str, *statuses: dg.DagsterRunStatus, timeout: float = 240) -> dg.DagsterRun:
        def done() -> dg.DagsterRun | None:
            run = self.instance.get_run_by_id(run_id)
            return run if run is not None and run.status in statuses else None

        return wait_for(f"run {run_id} to be {statuses}", done, timeout, self.daemon_log)


def production_yaml(home: Path) -> None:
    """deploy/production/dagster.yaml as it is, but for the polling intervals (seconds here, not minutes)."""
    config = yaml.safe_load((ROOT / "deploy/production/dagster.yaml").read_text())
    config["run_monitoring"]["poll_interval_seconds"] = 1
    config["run_coordinator"]["config"]["dequeue_interval_seconds"] = 1
    config["compute_logs"]["config"]["upload_interval"] = 1
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, env=env, cwd=ROOT, start_new_session=True, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    import signal

    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.fixture(scope="module")
def deployment(moto_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("ecs")
    downloads = DownloadServer().start()
    rows = "lon,lat,num,street\n" + "".join(f"-122.{i:04d},37.{i:04d},{i + 1},MAIN ST\n" for i in range(20))
    for name in ("fast", "slow"):
        downloads.route(f"/{name}.csv", body=rows.encode(), content_type="text/csv")
        write_source(
            tmp / "sources", f"us/xx/{name}", {"addresses": [csv_entry("city", downloads.url(f"/{name}.csv"))]}
        )
    name = f"oa-{tmp.name[-8:].lower().replace('_', '-')}"
    ecs = prepare_ecs(moto_url, name, SECRETS)
    client(moto_url, "s3").create_bucket(Bucket=f"{name}-logs")
    home = tmp / "home"
    home.mkdir()
    production_yaml(home)
    port = free_port()
    with postgres_or_skip("oa_ecs") as url:
        database = url.rsplit("/", 1)[1]
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "OA_", "AWS_"))},
            **ecs.environment(moto_url),
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_USER": "postgres",
            "DAGSTER_PG_DB": database,
            "OA_LOGS_BUCKET": f"{name}-logs",
            "OA_ENV": "local",
            "OA_DATA_DIR": str(tmp / "data"),
            "OA_SOURCES_DIR": str(tmp / "sources"),
            "OA_BATCH_MAX_ENTRIES": "1",  # one run (one task) per entry
            "OA_CODE_SERVER_HOST": "127.0.0.1",
            "OA_CODE_SERVER_PORT": str(port),
        }
        # the daemon and code server need the secrets too (the services' task definitions give them the same way)
        services_env = {**env, **SECRETS}  # trust auth on this machine: the password is carried, not checked
        # the image's environment: PATH and Python, no secret, no deployment variable (those come with the task)
        image_env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "OA_", "AWS_"))}
        image_env["PATH"] = f"{BIN}{os.pathsep}{image_env.get('PATH', '')}"
        image_env["DAGSTER_HOME"] = str(home)
        agent = EcsAgent(moto_url, ecs.cluster, image_env, ROOT, tmp / "tasks").start()
        code_server = start(
            [str(BIN / "dagster"), "api", "grpc", "-m", "oa_dagster.definitions", "-h", "127.0.0.1", "-p", str(port)],
            {**services_env, "DAGSTER_CURRENT_IMAGE": IMAGE},
            tmp / "code-server.log",
        )
        daemon_log = tmp / "daemon.log"
        daemon = web = None
        old_env = {k: os.environ.get(k) for k in env}
        os.environ.update(services_env)
        try:
            instance = dg.DagsterInstance.from_config(str(home))
            wait_for(
                "the code server",
                lambda: (
                    b"Started Dagster code server" in (tmp / "code-server.log").read_bytes()
                    or code_server.poll() is not None
                ),
                120,
            )
            assert code_server.poll() is None, (tmp / "code-server.log").read_text()
            daemon = start(
                [str(BIN / "dagster-daemon"), "run", "-w", str(ROOT / "deploy/production/workspace.yaml")],
                services_env,
                daemon_log,
            )
            web_port = free_port()
            web = start(
                [
                    str(BIN / "dagster-webserver"),
                    *("-w", str(ROOT / "deploy/production/workspace.yaml"), "-h", "127.0.0.1", "-p", str(web_port)),
                ],
                services_env,
                tmp / "webserver.log",
            )
            base = f"http://127.0.0.1:{web_port}"
            wait_for_dagster_server(base, web)
            assert web.poll() is None, (tmp / "webserver.log").read_text()[-3000:]
            yield Deployment(home, services_env, ecs, agent, instance, daemon_log, moto_url, base, downloads)
        finally:
            downloads.stop()
            for process in (daemon, web, code_server):
                if process is not None:
                    stop(process)
            agent.stop()
            for key, value in old_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


RUN_QUERY = """
query($runId: ID!) {
  runOrError(runId: $runId) {
    ... on Run { status tags { key value } runConfigYaml }
  }
}
"""


def test_a_run_goes_from_launch_to_success_in_its_own_ecs_task(deployment: Deployment) -> None:
    run_id = deployment.launch("source_catalog_job", {"ecs/cpu": "2048", "ecs/memory": "8192"})
    run = deployment.wait_for_status(run_id, dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)
    task = task_of(deployment, run_id)
    assert run.status == dg.DagsterRunStatus.SUCCESS, task.log.read_text()[-3000:]
    assert deployment.agent.wait_for_exit(task) == 0
    # RunTask got the run's command, its tags and the size its tags asked for
    assert task.command[:3] == ["dagster", "api", "execute_run"] and run_id in task.command[3]
    assert task.tags["dagster/job_name"] == "source_catalog_job" and task.tags["oa/deployment"] == "local"
    assert (task.overrides["cpu"], task.overrides["memory"]) == ("2048", "8192")
    assert (run.tags["ecs/task_arn"], run.tags["ecs/cluster"].rsplit("/", 1)[-1]) == (task.arn, deployment.ecs.cluster)
    # ... from a task definition the launcher registered: the code server's image, the secrets by reference
    ecs = client(deployment.endpoint, "ecs")
    definition = ecs.describe_task_definition(taskDefinition=task.family)["taskDefinition"]
    (container,) = definition["containerDefinitions"]
    assert container["image"] == IMAGE and container["name"] == "run"
    assert definition["requiresCompatibilities"] == ["FARGATE"] and definition["networkMode"] == "awsvpc"
    assert definition["taskRoleArn"] == deployment.env["OA_ECS_TASK_ROLE_ARN"]
    assert container["logConfiguration"]["options"]["awslogs-group"] == deployment.ecs.log_group
    assert {s["name"]: s["valueFrom"] for s in container["secrets"]} == deployment.ecs.secret_arns
    # the task's container saw the secrets' values (ECS reads them from Secrets Manager) ...
    assert {name: task.environment[name] for name in SECRETS} == SECRETS
    # ... which appear nowhere the UI or the ECS API shows: run tags, run config, events, the task definition
    shown = json.dumps(post_graphql(deployment.web, RUN_QUERY, runId=run_id))
    events = json.dumps([e.message for e in deployment.instance.all_logs(run_id)])
    exposed = json.dumps([definition, task.overrides, task.tags])
    for value in SECRETS.values():
        assert value not in shown and value not in events and value not in exposed
    assert "ecs/task_arn" in shown  # the query did read the run's tags


def runs_of_set(instance: dg.DagsterInstance, set_id: str, job: str) -> list[dg.DagsterRun]:
    return [r for r in instance.get_runs(dg.RunsFilter(tags={"oa/set": set_id})) if r.job_name == job]


def task_of(deployment: Deployment, run_id: str) -> AgentTask:
    (task,) = wait_for(
        f"the task of run {run_id}",
        lambda: [t for t in deployment.agent.tasks.values() if t.tags.get("dagster/run_id") == run_id],
        120,
        deployment.daemon_log,
    )
    return task


def test_a_task_stopped_from_outside_fails_its_run_through_run_monitoring_and_the_retry_succeeds(
    deployment: Deployment,
) -> None:
    slow = deployment.downloads.routes["/slow.csv"]
    slow.delay = 30.0  # the upstream answers after 30 s: the run is STARTED, waiting on it
    catalog = deployment.launch("source_catalog_job", {"oa/set": "set-stop", "oa/launch": "all"})
    deployment.wait_for_status(catalog, dg.DagsterRunStatus.SUCCESS)

    def slow_run() -> dg.DagsterRun | None:
        runs = [
            r
            for r in runs_of_set(deployment.instance, "set-stop", "addresses_job")
            if r.tags.get("dagster/asset_partition_range_start") == "us/xx/slow/city"
        ]
        return runs[0] if runs and runs[0].status == dg.DagsterRunStatus.STARTED and slow.hits else None

    first = wait_for("the slow entry's run to start", slow_run, 180, deployment.daemon_log)
    task = task_of(deployment, first.run_id)
    slow.delay = 0.0
    client(deployment.endpoint, "ecs").stop_task(cluster=deployment.ecs.cluster, task=task.arn, reason="spot reclaim")

    failed = deployment.wait_for_status(first.run_id, dg.DagsterRunStatus.FAILURE)
    assert deployment.agent.wait_for_exit(task) != 0
    assert task.stopped_from_outside
    messages = [e.message for e in deployment.instance.all_logs(first.run_id)]
    assert any("failed" in (m or "") and task.arn in (m or "") for m in messages), messages[-5:]
    retry_id = wait_for(
        "the retry", lambda: deployment.instance.get_run_by_id(first.run_id).tags.get("dagster/auto_retry_run_id"), 120
    )
    retry = deployment.wait_for_status(retry_id, dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)
    retry_task = task_of(deployment, retry_id)
    assert retry.status == dg.DagsterRunStatus.SUCCESS, retry_task.log.read_text()[-3000:]
    assert retry_task.arn != task.arn and failed.tags["ecs/task_arn"] == task.arn


TERMINATE = """
mutation($runId: String!) {
  terminateRun(runId: $runId) {
    __typename
    ... on TerminateRunSuccess { run { runId } }
    ... on TerminateRunFailure { message }
    ... on PythonError { message }
  }
}
"""


def test_terminate_from_the_ui_stops_the_task(deployment: Deployment) -> None:
    slow = deployment.downloads.routes["/slow.csv"]
    slow.delay = 60.0
    hits = slow.hits
    run_id = deployment.launch(
        "addresses_job",
        {
            "dagster/asset_partition_range_start": "us/xx/slow/city",
            "dagster/asset_partition_range_end": "us/xx/slow/city",
        },
    )
    task = task_of(deployment, run_id)
    wait_for("the download to begin", lambda: slow.hits > hits, 120, task.log)
    answer = post_graphql(deployment.web, TERMINATE, runId=run_id)["terminateRun"]
    assert answer["__typename"] == "TerminateRunSuccess", answer
    assert deployment.agent.wait_for_exit(task, timeout=60) != 0
    assert task.stopped_from_outside
    tasks = client(deployment.endpoint, "ecs").describe_tasks(cluster=deployment.ecs.cluster, tasks=[task.arn])
    assert tasks["tasks"][0]["lastStatus"] == "STOPPED"
    run = deployment.wait_for_status(run_id, dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.FAILURE)
    assert run.status == dg.DagsterRunStatus.CANCELED
    slow.delay = 0.0
