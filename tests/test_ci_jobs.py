"""CI jobs end to end: a stored pull_request delivery, the sensor planning it against the fake GitHub (pending),
the `ci_job` run processing the entry from the local download server under `jobs/<key>/` and reporting back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg

from oa_dagster.assets.ci_jobs import ci_job, plan_key
from oa_dagster.resources.deployments import local_resources
from oa_dagster.resources.github import CiSettings, GitHubResource
from oa_dagster.run_tags import CI_PRIORITY, PRIORITY_TAG
from oa_dagster.sensors.ci_jobs import ci_jobs_sensor
from oa_dagster.webhook.deliveries import DeliveryFields, DeliveryStore
from tests.servers.downloads import DownloadServer
from tests.servers.fixtures import GITHUB_TOKEN
from tests.servers.github import FakeGitHubServer, file_entry

REPO = "openaddresses/openaddresses"
NUMBER = 7
HEAD = "c0ffee" + "1" * 34
BASE = "ba5e00" + "2" * 34
PATH = "sources/us/ca/berkeley.json"
KEY = f"pr-{NUMBER}-{HEAD[:7]}"
CSV = "X,Y,NUM,STREET\n" + "".join(f"-122.{i:04d},37.{i:04d},{i + 1},MAIN ST\n" for i in range(5))


def _source(data_url: str) -> str:
    entry = {
        "name": "city",
        "protocol": "http",
        "data": data_url,
        "license": {"text": "Public domain"},
        "conform": {"format": "csv", "lon": "X", "lat": "Y", "number": "NUM", "street": "STREET"},
    }
    return json.dumps({"schema": 2, "coverage": {"country": "us", "state": "ca"}, "layers": {"addresses": [entry]}})


def _setup(
    tmp_path: Path, github: FakeGitHubServer, files: list[dict[str, Any]], allowed_hosts: str = ""
) -> dict[str, Any]:
    """The resources, with one stored `pull_request` opened delivery for the fake GitHub's pull request."""
    github.add_pull(REPO, NUMBER, files, head_sha=HEAD, base_sha=BASE)
    url = f"sqlite:///{tmp_path / 'webhook.db'}"
    deliveries = DeliveryStore(url)
    fields = DeliveryFields(
        delivery_id="d-1",
        event="pull_request",
        action="opened",
        repository=REPO,
        pr_number=NUMBER,
        head_sha=HEAD,
        base_sha=BASE,
    )
    deliveries.record(fields, payload="{}")
    deliveries.record(DeliveryFields(delivery_id="d-2", event="ping"), payload="{}")
    deliveries.close()
    return {
        **local_resources(tmp_path / "data"),
        "github": GitHubResource(api_url=github.url(), token=GITHUB_TOKEN, repo=REPO),
        "ci": CiSettings(deliveries_url=url, allowed_hosts=allowed_hosts),
    }


def _tick(instance: dg.DagsterInstance, resources: dict[str, Any]) -> dg.SensorResult:
    result = ci_jobs_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert isinstance(result, dg.SensorResult)
    return result


def _run(instance: dg.DagsterInstance, resources: dict[str, Any], request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    instance.add_dynamic_partitions("ci_jobs", [request.partition_key])
    return dg.materialize(
        [ci_job], partition_key=request.partition_key, instance=instance, resources=resources, tags=request.tags
    )


def _states(github: FakeGitHubServer) -> list[tuple[str, str]]:
    return [(s["state"], s["description"]) for s in github.statuses.get((REPO, HEAD), [])]


def test_a_pull_request_adding_a_source_is_checked_and_reported(
    tmp_path: Path, github_server: FakeGitHubServer, download_server: DownloadServer
) -> None:
    download_server.route("/addresses.csv", body=CSV.encode(), content_type="text/csv")
    github_server.add_file(REPO, PATH, HEAD, _source(download_server.url("/addresses.csv")))
    port = download_server.server_address[1]
    resources = _setup(tmp_path, github_server, [file_entry(PATH, "added")], allowed_hosts=f"127.0.0.1:{port}")
    with dg.instance_for_test() as instance:
        result = _tick(instance, resources)
        assert result.cursor == "2"  # the ping is passed over too
        assert [r.partition_key for r in result.run_requests] == [KEY]
        request = result.run_requests[0]
        assert request.tags[PRIORITY_TAG] == CI_PRIORITY
        assert _states(github_server) == [("pending", f"Checking 1 entry in {PATH}")]
        assert (tmp_path / "data" / plan_key(KEY)).is_file()

        again = ci_jobs_sensor(dg.build_sensor_context(instance=instance, resources=resources, cursor=result.cursor))
        assert isinstance(again, dg.SensorResult) and not again.run_requests and again.cursor == "2"

        run = _run(instance, resources, request)
        assert run.success
    assert _states(github_server)[-1] == ("success", "1 entry processed: 5 features")
    comments = github_server.comments[(REPO, NUMBER)]
    assert len(comments) == 1 and "us/ca/berkeley/city" in comments[0]["body"] and "| 5 |" in comments[0]["body"]
    data = tmp_path / "data"
    assert list((data / "jobs" / KEY / "latest" / "addresses").rglob("*.json"))
    assert list((data / "jobs" / KEY / "runs" / "addresses").rglob("manifest.json"))
    assert not (data / "latest").exists() and not (data / "runs").exists()


def test_a_source_pointing_at_a_private_address_fails_naming_the_entry(
    tmp_path: Path, github_server: FakeGitHubServer, download_server: DownloadServer
) -> None:
    download_server.route("/addresses.csv", body=CSV.encode(), content_type="text/csv")
    github_server.add_file(REPO, PATH, HEAD, _source(download_server.url("/addresses.csv")))
    resources = _setup(tmp_path, github_server, [file_entry(PATH, "added")])  # no allowlist
    with dg.instance_for_test() as instance:
        [request] = _tick(instance, resources).run_requests
        assert _run(instance, resources, request).success  # the contributor's problem, not a failed run
    state, description = _states(github_server)[-1]
    assert state == "failure"
    assert description.startswith("addresses us/ca/berkeley/city:")
    assert "public" in description.lower()
    assert download_server.routes["/addresses.csv"].hits == 0
    assert not (tmp_path / "data" / "latest").exists()


def test_a_pull_request_without_source_changes_succeeds_at_once(
    tmp_path: Path, github_server: FakeGitHubServer
) -> None:
    resources = _setup(tmp_path, github_server, [file_entry("README.md")])
    with dg.instance_for_test() as instance:
        result = _tick(instance, resources)
        assert not result.run_requests and not result.dynamic_partitions_requests
        assert result.cursor == "2"
    assert _states(github_server) == [("success", "No source changes")]
    assert not (tmp_path / "data" / "jobs").exists()


def test_the_sensor_skips_without_a_webhook_secret_or_a_token(tmp_path: Path) -> None:
    resources = local_resources(tmp_path)
    with dg.instance_for_test() as instance:
        skipped = ci_jobs_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        assert isinstance(skipped, dg.SkipReason) and "OA_WEBHOOK_SECRET" in str(skipped.skip_message)
        resources["ci"] = CiSettings(deliveries_url=f"sqlite:///{tmp_path / 'w.db'}")
        skipped = ci_jobs_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        assert isinstance(skipped, dg.SkipReason) and "GITHUB_TOKEN" in str(skipped.skip_message)


def test_a_corrupt_deliveries_database_is_a_skipped_tick_naming_the_file(
    tmp_path: Path, github_server: FakeGitHubServer
) -> None:
    corrupt = tmp_path / "webhook.db"
    corrupt.write_bytes(b"not a database at all, " * 1000)
    resources = {
        **local_resources(tmp_path / "data"),
        "github": GitHubResource(api_url=github_server.url(), token=GITHUB_TOKEN, repo=REPO),
        "ci": CiSettings(deliveries_url=f"sqlite:///{corrupt}"),
    }
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources=resources, cursor="3")
        skipped = ci_jobs_sensor(context)
    assert isinstance(skipped, dg.SkipReason)
    assert str(corrupt) in str(skipped.skip_message) and "file is not a database" in str(skipped.skip_message)
    assert github_server.received == []
