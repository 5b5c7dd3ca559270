"""Runs launched as ECS tasks: the instance of deploy/production/dagster.yaml (Postgres, S3 compute logs on moto,
`EcsRunLauncher` against moto's ECS), the real gRPC code server, daemon and webserver as processes, and the fake
ECS agent running each task's container command as a local process (`tests/ecs_deployment.py`).

One deployment serves the module's tests (starting it costs most of their time); each test launches its own runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import dagster as dg
import pytest

from tests.ecs_deployment import IMAGE, SECRETS, Deployment, production_deployment, task_of
from tests.platform_helpers import csv_entry, wait_for, write_source
from tests.servers.downloads import DownloadServer
from tests.servers.ecs import client


@pytest.fixture(scope="module")
def downloads() -> Iterator[DownloadServer]:
    """The entries' upstream: `/fast.csv` and `/slow.csv` (tests delay the slow one)."""
    server = DownloadServer().start()
    rows = "lon,lat,num,street\n" + "".join(f"-122.{i:04d},37.{i:04d},{i + 1},MAIN ST\n" for i in range(20))
    for name in ("fast", "slow"):
        server.route(f"/{name}.csv", body=rows.encode(), content_type="text/csv")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def deployment(
    moto_url: str, downloads: DownloadServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("ecs")
    for name in ("fast", "slow"):
        write_source(
            tmp / "sources", f"us/xx/{name}", {"addresses": [csv_entry("city", downloads.url(f"/{name}.csv"))]}
        )
    with production_deployment(moto_url, tmp, tmp / "sources", env={"OA_BATCH_MAX_ENTRIES": "1"}) as deployment:
        yield deployment  # one run (one task) per entry


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
    assert definition["executionRoleArn"] == deployment.env["OA_ECS_EXECUTION_ROLE_ARN"]
    assert task.network["awsvpcConfiguration"] == {
        "subnets": deployment.ecs.subnets,
        "securityGroups": deployment.ecs.security_groups,
        "assignPublicIp": deployment.env["OA_ECS_ASSIGN_PUBLIC_IP"],
    }
    assert container["logConfiguration"]["options"]["awslogs-group"] == deployment.ecs.log_group
    assert {s["name"]: s["valueFrom"] for s in container["secrets"]} == deployment.ecs.secret_arns
    # the task's container saw the secrets' values (ECS reads them from Secrets Manager) ...
    assert {name: task.environment[name] for name in SECRETS} == SECRETS
    # ... which appear nowhere the UI or the ECS API shows: run tags, run config, events, the task definition
    shown = json.dumps(deployment.graphql(RUN_QUERY, runId=run_id))
    events = json.dumps([e.message for e in deployment.instance.all_logs(run_id)])
    exposed = json.dumps([definition, task.overrides, task.tags])
    for value in SECRETS.values():
        assert value not in shown and value not in events and value not in exposed
    assert "ecs/task_arn" in shown  # the query did read the run's tags


def runs_of_set(instance: dg.DagsterInstance, set_id: str, job: str) -> list[dg.DagsterRun]:
    return [r for r in instance.get_runs(dg.RunsFilter(tags={"oa/set": set_id})) if r.job_name == job]


def test_a_task_stopped_from_outside_fails_its_run_through_run_monitoring_and_the_retry_succeeds(
    deployment: Deployment, downloads: DownloadServer
) -> None:
    slow = downloads.routes["/slow.csv"]
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


def test_terminate_from_the_ui_stops_the_task(deployment: Deployment, downloads: DownloadServer) -> None:
    slow = downloads.routes["/slow.csv"]
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
    answer = deployment.graphql(TERMINATE, runId=run_id)["terminateRun"]
    assert answer["__typename"] == "TerminateRunSuccess", answer
    assert deployment.agent.wait_for_exit(task, timeout=60) != 0
    assert task.stopped_from_outside
    tasks = client(deployment.endpoint, "ecs").describe_tasks(cluster=deployment.ecs.cluster, tasks=[task.arn])
    assert tasks["tasks"][0]["lastStatus"] == "STOPPED"
    run = deployment.wait_for_status(run_id, dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.FAILURE)
    assert run.status == dg.DagsterRunStatus.CANCELED
    slow.delay = 0.0


def test_the_run_tasks_network_comes_from_comma_separated_ids() -> None:
    from oa_dagster.ecs_launcher import network_configuration

    assert network_configuration("subnet-a, subnet-b", "sg-1", "enabled") == {
        "awsvpcConfiguration": {
            "subnets": ["subnet-a", "subnet-b"],
            "securityGroups": ["sg-1"],
            "assignPublicIp": "ENABLED",
        }
    }
    with pytest.raises(ValueError, match="at least one subnet \\(OA_ECS_SUBNETS\\)"):
        network_configuration(" , ", "sg-1", "DISABLED")
