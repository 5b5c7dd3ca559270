"""A production deployment on this machine, as the ECS launcher tests and `bench/bench_ecs.py` use it: the instance
of deploy/production/dagster.yaml (Postgres, S3 compute logs and ECS on moto), the real gRPC code server, daemon
and webserver as processes in their own process groups, and the fake ECS agent (`tests/servers/ecs.py`) running
each run task's container command as a local process. `launcher="default"` drops the instance's run launcher
(runs start as subprocesses of the code server): the baseline the benchmark compares the ECS path against.
By default the code location runs its local deployment (`OA_ENV=local`: sources from a folder, outputs on disk), so
runs need no GitHub; what is under test is the instance and the launch path, which are production's. The end-to-end
test (`tests/test_production_e2e.py`) passes `OA_ENV=production` and no sources folder: its code reads the sources
from a (fake) GitHub and writes to S3, everything then as deployed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import yaml

from tests.platform_helpers import ROOT, free_port, post_graphql, postgres_or_skip, wait_for, wait_for_dagster_server
from tests.servers.ecs import AgentTask, EcsAgent, EcsSetup, client, prepare_ecs

SECRETS = {
    "DAGSTER_PG_PASSWORD": "pg-secret-4f1c9a",
    "GITHUB_TOKEN": "ghs_secret-token-77aa31",
    "OA_WEBHOOK_SECRET": "hook-secret-0b5e2d",
}
IMAGE = "registry.example/oa-dagster:test"
BIN = Path(sys.executable).parent
WORKSPACE = ROOT / "deploy/production/workspace.yaml"


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
    # "daemon", "webserver", "code_server": the fault tests check that they are still up
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def launch(self, job: str, tags: dict[str, str] | None = None) -> str:
        """`dagster job launch` against the code server, as an operator would: the run is queued, and the daemon's
        coordinator hands it to the ECS launcher. Returns the run id."""
        before = {r.run_id for r in self.instance.get_runs()}
        args = [str(BIN / "dagster"), "job", "launch", "-j", job, "-w", str(WORKSPACE)]
        if tags:
            args += ["--tags", json.dumps(tags)]
        done = subprocess.run(args, env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        # the daemon's sensors may start runs of their own meanwhile (a coverage run after collections): this job's
        (run_id,) = {r.run_id for r in self.instance.get_runs(filters=dg.RunsFilter(job_name=job))} - before
        return run_id

    def wait_for_status(self, run_id: str, *statuses: dg.DagsterRunStatus, timeout: float = 240) -> dg.DagsterRun:
        def done() -> dg.DagsterRun | None:
            run = self.instance.get_run_by_id(run_id)
            return run if run is not None and run.status in statuses else None

        return wait_for(f"run {run_id} to be {statuses}", done, timeout, self.daemon_log)

    def graphql(self, query: str, **variables: object) -> dict:
        return post_graphql(self.web, query, **variables)

    def tasks_by_run(self) -> dict[str, AgentTask]:
        """The tasks the agent ran so far, by the run id the launcher tagged each with."""
        return {task.tags["dagster/run_id"]: task for task in list(self.agent.tasks.values())}


def production_yaml(home: Path, launcher: str) -> None:
    """deploy/production/dagster.yaml as it is, but for the polling intervals (seconds here, not minutes), and
    without its run launcher for `launcher="default"`."""
    config = yaml.safe_load((ROOT / "deploy/production/dagster.yaml").read_text())
    if launcher == "default":
        del config["run_launcher"]
    config["run_monitoring"]["poll_interval_seconds"] = 1
    config["run_coordinator"]["config"]["dequeue_interval_seconds"] = 1
    config["compute_logs"]["config"]["upload_interval"] = 1
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, env=env, cwd=ROOT, start_new_session=True, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextmanager
def production_deployment(
    moto_url: str, tmp: Path, sources: Path | None, *, launcher: str = "ecs", env: dict[str, str] | None = None
) -> Iterator[Deployment]:
    """Everything started, on a throwaway Postgres database; all stopped (process groups killed) at the end.
    `sources`: the local deployment's sources folder (None: none, e.g. for `OA_ENV=production` in `env`). `env` adds
    deployment variables (e.g. `OA_BATCH_MAX_ENTRIES`). The caller's environment is left as it was."""
    # moto keeps every earlier deployment's cluster, secrets and buckets for the session: a name of its own
    name = f"oa-{uuid.uuid4().hex[:10]}"
    ecs = prepare_ecs(moto_url, name, SECRETS)
    client(moto_url, "s3").create_bucket(Bucket=f"{name}-logs")
    home = tmp / "home"
    home.mkdir()
    production_yaml(home, launcher)
    port = free_port()
    with postgres_or_skip("oa_ecs") as url:  # skips a test where no PostgreSQL answers
        database = url.rsplit("/", 1)[1]
        deployment_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "OA_", "AWS_"))},
            **ecs.environment(moto_url),
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_USER": "postgres",
            "DAGSTER_PG_DB": database,
            "OA_LOGS_BUCKET": f"{name}-logs",
            "OA_ENV": "local",
            "OA_DATA_DIR": str(tmp / "data"),
            **({"OA_SOURCES_DIR": str(sources)} if sources is not None else {}),
            "OA_CODE_SERVER_HOST": "127.0.0.1",
            "OA_CODE_SERVER_PORT": str(port),
            **(env or {}),
        }
        # the daemon and code server need the secrets too (the services' task definitions give them the same way)
        services_env = {**deployment_env, **SECRETS}  # trust auth on this machine: the password is carried, not checked
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
        old_env = {k: os.environ.get(k) for k in services_env}
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
                [str(BIN / "dagster-daemon"), "run", "-w", str(WORKSPACE)],
                services_env,
                daemon_log,
            )
            web_port = free_port()
            web = start(
                [
                    str(BIN / "dagster-webserver"),
                    *("-w", str(WORKSPACE), "-h", "127.0.0.1", "-p", str(web_port)),
                ],
                services_env,
                tmp / "webserver.log",
            )
            base = f"http://127.0.0.1:{web_port}"
            wait_for_dagster_server(base, web)
            assert web.poll() is None, (tmp / "webserver.log").read_text()[-3000:]
            processes = {"daemon": daemon, "webserver": web, "code_server": code_server}
            yield Deployment(home, services_env, ecs, agent, instance, daemon_log, moto_url, base, processes)
        finally:
            for process in (daemon, web, code_server):
                if process is not None:
                    stop(process)
            agent.stop()
            if "instance" in locals():
                instance.dispose()
            for key, value in old_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def task_of(deployment: Deployment, run_id: str) -> AgentTask:
    """The ECS task the launcher started for `run_id`, once the agent runs it."""
    (task,) = wait_for(
        f"the task of run {run_id}",
        lambda: [t for t in deployment.agent.tasks.values() if t.tags.get("dagster/run_id") == run_id],
        180,
        deployment.daemon_log,
    )
    return task
