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

from tests.platform_helpers import ROOT, free_port, postgres_or_skip, wait_for
from tests.servers.ecs import EcsAgent, EcsSetup, client, prepare_ecs

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
        daemon = None
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
            yield Deployment(home, services_env, ecs, agent, instance, daemon_log, moto_url)
        finally:
            for process in (daemon, code_server):
                if process is not None:
                    stop(process)
            agent.stop()
            for key, value in old_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def test_a_run_goes_from_launch_to_success_in_its_own_ecs_task(deployment: Deployment) -> None:
    run_id = deployment.launch("source_catalog_job")
    run = deployment.wait_for_status(run_id, dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)
    tasks = [t for t in deployment.agent.tasks.values() if t.tags.get("dagster/run_id") == run_id]
    assert len(tasks) == 1, deployment.daemon_log.read_text()[-3000:]
    task = tasks[0]
    assert run.status == dg.DagsterRunStatus.SUCCESS, task.log.read_text()[-3000:]
    assert task.command[:3] == ["dagster", "api", "execute_run"]
    assert run.tags["ecs/task_arn"] == task.arn
    print(task.overrides, task.environment.keys())
    assert deployment.agent.wait_for_exit(task) == 0
