"""moto's ECS as a place runs are launched into, and a fake ECS agent that runs each task as a local process.

The launcher under test talks to moto over HTTP (boto3 with `AWS_ENDPOINT_URL`). moto records RunTask but runs
nothing, so `EcsAgent` plays the container agent: for each task RunTask created it resolves the container the way
ECS does (the task definition's command and environment, RunTask's container overrides on top, each secret's
`valueFrom` read from Secrets Manager), runs that command as a local process in its own process group, marks the
task RUNNING, and when the process ends stops the task with the process's exit code. A task stopped from outside
(StopTask: the launcher's terminate, an operator, a lost Fargate host) gets its process group SIGTERM, then
SIGKILL after `stop_timeout` seconds, like ECS. moto serves in this process (`ThreadedMotoServer`), so the agent
writes task states through moto's backend, the one thing the ECS API has no call for.

Shared by the launcher tests, the end-to-end harness and the benchmark: `prepare_ecs` creates the cluster, a VPC
with a subnet and a security group, the secrets and the log group an instance needs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import requests

from tests.servers.fixtures import MOTO_CREDS

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
ESSENTIAL_EXITED = "Essential container in task exited"


@dataclass(frozen=True)
class EcsSetup:
    """What `prepare_ecs` created, as the launcher's variables want it."""

    cluster: str
    subnets: list[str]
    security_groups: list[str]
    secret_arns: dict[str, str]  # environment name -> Secrets Manager ARN
    log_group: str

    def environment(self, endpoint: str) -> dict[str, str]:
        """The `OA_ECS_*` variables of deploy/production/dagster.yaml for this setup, and moto as AWS."""
        return {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": MOTO_CREDS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": MOTO_CREDS["aws_secret_access_key"],
            "OA_ECS_CLUSTER": self.cluster,
            "OA_ECS_SUBNETS": ",".join(self.subnets),
            "OA_ECS_SECURITY_GROUPS": ",".join(self.security_groups),
            "OA_ECS_ASSIGN_PUBLIC_IP": "DISABLED",
            "OA_ECS_CONTAINER_NAME": "run",
            "OA_ECS_TASK_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/oa-run-task",
            "OA_ECS_EXECUTION_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/oa-run-execution",
            "OA_ECS_LOG_GROUP": self.log_group,
            "OA_ECS_SECRET_PG_PASSWORD": self.secret_arns["DAGSTER_PG_PASSWORD"],
            "OA_ECS_SECRET_GITHUB_TOKEN": self.secret_arns["GITHUB_TOKEN"],
            "OA_ECS_SECRET_WEBHOOK_SECRET": self.secret_arns["OA_WEBHOOK_SECRET"],
        }


def client(endpoint: str, service: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION, **MOTO_CREDS)


def _fargate_containers_may_omit_memory() -> None:
    """moto sums the containers' `memory` to place a task and fails on a container without one; on Fargate the
    task's memory is enough (AWS accepts such task definitions, and EcsRunLauncher registers them)."""
    from moto.ecs.models import EC2ContainerServiceBackend

    original = EC2ContainerServiceBackend._calculate_task_resource_requirements
    if getattr(original, "oa_patched", False):
        return

    def requirements(task_definition: Any) -> Any:
        containers = [
            c if c.get("memory") is not None or c.get("memoryReservation") is not None else {**c, "memory": 0}
            for c in task_definition.container_definitions
        ]
        return original(SimpleNamespace(container_definitions=containers))

    requirements.oa_patched = True  # type: ignore[attr-defined]
    EC2ContainerServiceBackend._calculate_task_resource_requirements = staticmethod(requirements)  # type: ignore[method-assign]


def prepare_ecs(endpoint: str, name: str, secrets: Mapping[str, str]) -> EcsSetup:
    """A cluster, a subnet and security group, one secret per `secrets` item and a log group, named after `name`.

    moto keeps every earlier test's resources (one server per session), hence the names.
    """
    _fargate_containers_may_omit_memory()
    ec2 = client(endpoint, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})  # as Fargate needs (and moto too)
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=f"{name}-runs", Description="run tasks", VpcId=vpc)["GroupId"]
    client(endpoint, "ecs").create_cluster(clusterName=name)
    manager = client(endpoint, "secretsmanager")
    arns = {
        env: manager.create_secret(Name=f"{name}/{env.lower()}", SecretString=value)["ARN"]
        for env, value in secrets.items()
    }
    client(endpoint, "logs").create_log_group(logGroupName=f"/{name}/runs")
    # moto moves a task one status further on every DescribeTasks by default: here only the agent moves them
    requests.post(
        f"{endpoint}/moto-api/state-manager/set-transition",
        json={"model_name": "ecs::task", "transition": {"progression": "manual", "times": 10**9}},
        timeout=10,
    ).raise_for_status()
    return EcsSetup(name, [subnet], [group], arns, f"/{name}/runs")


@dataclass
class AgentTask:
    """One task the agent ran: what ECS would have given the container, and how it ended."""

    arn: str
    family: str
    command: list[str]
    environment: dict[str, str]
    overrides: dict[str, Any]
    tags: dict[str, str]
    network: dict[str, Any]  # RunTask's networkConfiguration
    process: subprocess.Popen[bytes]
    log: Path
    exit_code: int | None = None
    stopped_from_outside: bool = False


def _exit_code(returncode: int) -> int:
    """A container's exit code as ECS reports it: 128 + signal for a killed process."""
    return 128 - returncode if returncode < 0 else returncode


@dataclass
class EcsAgent:
    """Runs the tasks moto's ECS holds for `cluster` (see the module docstring). `base_env` plays the image's
    environment; the task's own variables and secrets are added on top."""

    endpoint: str
    cluster: str
    base_env: dict[str, str]
    cwd: Path
    log_dir: Path
    stop_timeout: float = 10.0
    tasks: dict[str, AgentTask] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> EcsAgent:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._loop, name="fake-ecs-agent", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for task in self.tasks.values():
            if task.process.poll() is None:
                os.killpg(task.process.pid, signal.SIGKILL)
                task.process.wait()

    def wait_for_tasks(self, count: int, timeout: float = 120) -> list[AgentTask]:
        """The first `count` tasks the agent started, once it has (bounded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.tasks) >= count:
                    return list(self.tasks.values())[:count]
            time.sleep(0.2)
        raise AssertionError(f"the ECS agent started {len(self.tasks)} tasks, not {count}, in {timeout} s")

    def wait_for_exit(self, task: AgentTask, timeout: float = 300) -> int:
        deadline = time.monotonic() + timeout
        while task.exit_code is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert task.exit_code is not None, f"task {task.arn} still running after {timeout} s:\n{task.log.read_text()}"
        return task.exit_code

    # --- the agent's loop -----------------------------------------------------------------------------------------
    def _backend(self) -> Any:
        from moto.ecs.models import ecs_backends

        return ecs_backends[ACCOUNT][REGION]

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception as exc:  # a broken tick must show in the test, not end the agent silently
                print(f"fake ECS agent: {exc!r}")
            time.sleep(0.2)

    def _tick(self) -> None:
        backend = self._backend()
        for arn, task in list(backend.tasks.get(self.cluster, {}).items()):
            known = self.tasks.get(arn)
            if known is None and task.desired_status == "RUNNING":
                self._run(backend, task)
            elif known is not None and known.exit_code is None:
                self._follow(task, known)

    def _run(self, backend: Any, task: Any) -> None:
        definition = backend.describe_task_definition(task.task_definition_arn)
        container = definition.container_definitions[0]
        overrides = next(
            (o for o in task.overrides.get("containerOverrides", []) if o.get("name") == container["name"]), {}
        )
        manager = client(self.endpoint, "secretsmanager")
        role = {k.upper(): v for k, v in MOTO_CREDS.items()}  # the task role's credentials
        environment = {
            **self.base_env,
            **(role if getattr(definition, "task_role_arn", None) else {}),
            **{e["name"]: e["value"] for e in container.get("environment") or []},
            **{
                s["name"]: manager.get_secret_value(SecretId=s["valueFrom"])["SecretString"]
                for s in container.get("secrets") or []
            },
            **{e["name"]: e["value"] for e in overrides.get("environment") or []},
        }
        command = list(overrides.get("command") or container.get("command") or [])
        family = task.task_definition_arn.rsplit("/", 1)[-1].split(":")[0]
        log = self.log_dir / f"{task.id}.log"
        process = subprocess.Popen(
            command,
            env=environment,
            cwd=self.cwd,
            start_new_session=True,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        record = AgentTask(
            task.task_arn,
            family,
            command,
            environment,
            dict(task.overrides),
            {t["key"]: t.get("value", "") for t in task.tags},
            dict(getattr(task, "network_configuration", None) or {}),
            process,
            log,
        )
        for each in task.containers:
            each.exitCode = None  # running: ECS reports no exit code yet
            each.last_status = "RUNNING"
        task.last_status = "RUNNING"
        with self._lock:
            self.tasks[task.task_arn] = record

    def _follow(self, task: Any, known: AgentTask) -> None:
        if task.desired_status == "STOPPED" and not known.stopped_from_outside:
            known.stopped_from_outside = True  # StopTask: SIGTERM now, SIGKILL after the stop timeout
            os.killpg(known.process.pid, signal.SIGTERM)
            threading.Timer(self.stop_timeout, self._kill, args=(known,)).start()
        returncode = known.process.poll()
        if returncode is None:
            return
        code = _exit_code(returncode)
        for each in task.containers:
            each.exitCode = code
            each.last_status = "STOPPED"
        if not known.stopped_from_outside:
            task.stopped_reason = ESSENTIAL_EXITED
        task.desired_status = "STOPPED"
        task.last_status = "STOPPED"
        known.exit_code = code

    @staticmethod
    def _kill(known: AgentTask) -> None:
        if known.process.poll() is None:
            os.killpg(known.process.pid, signal.SIGKILL)
