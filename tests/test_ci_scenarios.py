"""CI jobs scenario by scenario, as GitHub drives them: signed deliveries posted over HTTP to the running web app,
the CI sensor evaluated on what it stored, `ci_job` runs materialized, and what the fake GitHub API received,
in order, asserted each time."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import requests

from oa_dagster.assets.ci_jobs import ci_job, result_key, superseded_key, write_job_record
from oa_dagster.ci.github_api import RESULTS_MARKER
from oa_dagster.ci.outbox import ReportOutbox
from oa_dagster.ci.plan import JobPlan, PlannedEntry
from oa_dagster.ci.report_sender import ReportSender
from oa_dagster.platform.store import LocalStore
from oa_dagster.resources.deployments import local_resources
from oa_dagster.resources.github import CiSettings, GitHubResource
from oa_dagster.run_tags import CI_JOB_TAG, CI_PR_TAG, CI_PUSH_TAG
from oa_dagster.sensors import ci_jobs as ci_jobs_module
from oa_dagster.sensors.ci_job_reports import ci_reports_sensor
from oa_dagster.sensors.ci_jobs import ci_jobs_sensor
from oa_dagster.webhook.app import create_app
from oa_dagster.webhook.deliveries import DeliveryFields, DeliveryStore
from oa_dagster.webhook.hooks import DEFAULT_MAX_BODY_BYTES, hook_routes
from tests.ci_deliveries import (
    BASE,
    BEFORE,
    DEFAULT_BRANCH,
    HEAD,
    REPO,
    SECRET,
    Receiver,
    comment_payload,
    pr_payload,
    push_payload,
)
from tests.servers.apps import AppServers
from tests.servers.downloads import DownloadServer
from tests.servers.fixtures import GITHUB_TOKEN
from tests.servers.github import FakeGitHubServer, file_entry

pytest_plugins = ["tests.servers.fixtures"]

NUMBER = 42
BERKELEY, OAKLAND = "sources/us/ca/berkeley.json", "sources/us/ca/oakland.json"
NEW_HEAD = "d" * 40


def csv_rows(n: int) -> bytes:
    return ("X,Y,NUM,STREET\n" + "".join(f"-122.{i:04d},37.{i:04d},{i + 1},MAIN ST\n" for i in range(n))).encode()


def source_json(data_url: str, street: str = "STREET") -> str:
    entry = {
        "name": "city",
        "protocol": "http",
        "data": data_url,
        "license": {"text": "Public domain"},
        "conform": {"format": "csv", "lon": "X", "lat": "Y", "number": "NUM", "street": street},
    }
    return json.dumps({"schema": 2, "coverage": {"country": "us", "state": "ca"}, "layers": {"addresses": [entry]}})


@dataclass
class CiWorld:
    """The web app with `/hook`, the fake GitHub, a download server, a Dagster instance and the CI resources."""

    tmp: Path
    github: FakeGitHubServer
    downloads: DownloadServer
    receiver: Receiver
    instance: dg.DagsterInstance
    resources: dict[str, Any]
    cursor: str | None = None
    results: list[dg.ExecuteInProcessResult] = field(default_factory=list)

    def deliver(self, event: str, payload: dict[str, Any], delivery: str | None = None) -> requests.Response:
        answer = self.receiver.post(event, payload, delivery=delivery)
        assert answer.status_code in (200, 202), answer.text
        return answer

    def tick(self) -> dg.SensorResult:
        context = dg.build_sensor_context(instance=self.instance, resources=self.resources, cursor=self.cursor)
        result = ci_jobs_sensor(context)
        assert isinstance(result, dg.SensorResult), result
        self.cursor = result.cursor
        for request in result.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys or []))
        return result

    def run(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        result = dg.materialize(
            [ci_job],
            partition_key=request.partition_key,
            instance=self.instance,
            resources=self.resources,
            tags=request.tags,
        )
        self.results.append(result)
        return result

    def states(self, sha: str = HEAD) -> list[tuple[str, str]]:
        return [(s["state"], s["description"]) for s in self.github.statuses.get((REPO, sha), [])]

    def comments(self, number: int = NUMBER) -> list[str]:
        return [c["body"] for c in self.github.comments.get((REPO, number), [])]

    @property
    def store(self) -> LocalStore:
        return LocalStore(self.tmp / "data")

    def serve_csv(self, path: str, rows: int = 5, **route: Any) -> str:
        self.downloads.route(path, body=csv_rows(rows), content_type="text/csv", **route)
        return self.downloads.url(path)


@pytest.fixture
def world(tmp_path: Path, github_server: FakeGitHubServer, download_server: DownloadServer) -> Iterator[CiWorld]:
    url = f"sqlite:///{tmp_path / 'webhook.db'}"
    deliveries = DeliveryStore(url, maintenance_cache_seconds=0)
    servers = AppServers()
    app = create_app(LocalStore(tmp_path / "data"), hooks=hook_routes(deliveries, [SECRET]))
    receiver = Receiver(servers.start(app), deliveries)
    resources = {
        **local_resources(tmp_path / "data"),
        "github": GitHubResource(api_url=github_server.url(), token=GITHUB_TOKEN, repo=REPO, retries=0),
        "ci": CiSettings(
            deliveries_url=url,
            allowed_hosts=f"127.0.0.1:{download_server.server_address[1]}",
            report_backoff_seconds=0,
        ),
    }
    with dg.instance_for_test() as instance:
        yield CiWorld(tmp_path, github_server, download_server, receiver, instance, resources)
    servers.stop_all()
    deliveries.close()


def open_pull(world: CiWorld, files: list[dict[str, Any]], *, head: str = HEAD, author: str = "someone") -> None:
    world.github.add_pull(REPO, NUMBER, files, head_sha=head, base_sha=BASE, author=author)
    world.deliver("pull_request", pr_payload("opened", NUMBER, head, BASE, author))


def test_a_pull_request_adding_one_source_succeeds(world: CiWorld) -> None:
    world.github.add_file(REPO, BERKELEY, HEAD, source_json(world.serve_csv("/berkeley.csv")))
    open_pull(world, [file_entry(BERKELEY, "added")])
    [request] = world.tick().run_requests
    assert request.tags[CI_PR_TAG] == str(NUMBER) and request.tags[CI_JOB_TAG] == f"pr-{NUMBER}-{HEAD[:7]}"
    assert world.states() == [("pending", f"Checking 1 entry in {BERKELEY}")]
    assert world.run(request).success
    assert world.states()[-1] == ("success", "1 entry processed: 5 features")
    [comment] = world.comments()
    assert "us/ca/berkeley/city" in comment and "| 5 |" in comment
    writes = [
        (method, path.split("/")[-2] if "statuses" in path else path.split("/")[-1])
        for method, path, _ in world.github.writes()
    ]
    assert writes == [("POST", "statuses"), ("POST", "statuses"), ("POST", "comments")]


def test_a_pull_request_changing_two_sources_where_one_fails(world: CiWorld) -> None:
    good, broken = world.serve_csv("/berkeley.csv", rows=3), world.downloads.url("/gone.csv")
    world.downloads.route("/gone.csv", status=404)
    for path, url in ((BERKELEY, good), (OAKLAND, broken)):
        world.github.add_file(REPO, path, BASE, source_json(url, street="OLD_STREET"))
        world.github.add_file(REPO, path, HEAD, source_json(url))
    open_pull(world, [file_entry(BERKELEY), file_entry(OAKLAND)])
    [request] = world.tick().run_requests
    assert world.states() == [("pending", "Checking 2 entries in 2 files")]
    assert world.run(request).success  # a contributor's broken source is a failure status, not a failed run
    state, description = world.states()[-1]
    assert state == "failure" and description.startswith("addresses us/ca/oakland/city:")
    assert "404" in description and len(description) <= 140
    [comment] = world.comments()
    assert "us/ca/berkeley/city" in comment and "| 3 |" in comment and "❌" in comment


def test_a_pull_request_with_an_invalid_source_file_fails_naming_it(world: CiWorld) -> None:
    bad = "sources/us/ca/bad.json"
    world.github.add_file(
        REPO,
        bad,
        HEAD,
        json.dumps({"schema": 2, "coverage": {"country": "us"}, "layers": {"addresses": [{"name": "city"}]}}),
    )
    open_pull(world, [file_entry(bad, "added")])
    result = world.tick()
    for request in result.run_requests:
        assert world.run(request).success
    state, description = world.states()[-1]
    assert state == "failure" and description.startswith(f"{bad}: $.layers.addresses[0]")
    assert "missing required 'data', 'protocol'" in description


def test_a_pull_request_removing_a_source_checks_nothing(world: CiWorld) -> None:
    open_pull(world, [file_entry(BERKELEY, "removed")])
    result = world.tick()
    assert not result.run_requests and not result.dynamic_partitions_requests
    assert world.states() == [("success", f"Removes {BERKELEY}: nothing to check")]


def test_a_pull_request_without_source_changes_is_told_so(world: CiWorld) -> None:
    open_pull(world, [file_entry("README.md")])
    assert not world.tick().run_requests
    assert world.states() == [("success", "No source changes")]


def supersede_running_job(world: CiWorld) -> tuple[dg.RunRequest, dg.RunRequest]:
    """Pull request NUMBER: a job superseded while it downloads by NEW_HEAD's, which succeeds: (old, new) requests.

    Shared with the retention tests, which prune what it leaves."""
    world.github.add_file(REPO, BERKELEY, HEAD, source_json(world.serve_csv("/slow.csv", delay=2.0)))
    world.github.add_pull(REPO, NUMBER, [file_entry(BERKELEY, "added")], head_sha=HEAD, base_sha=BASE)
    world.deliver("pull_request", pr_payload("opened", NUMBER, HEAD, BASE))
    [first] = world.tick().run_requests
    running = threading.Thread(target=world.run, args=(first,))
    running.start()
    deadline = time.monotonic() + 60
    while world.downloads.routes["/slow.csv"].hits == 0:
        assert time.monotonic() < deadline and running.is_alive()
        time.sleep(0.05)
    world.github.add_file(REPO, BERKELEY, NEW_HEAD, source_json(world.serve_csv("/fast.csv", rows=2)))
    world.github.add_pull(REPO, NUMBER, [file_entry(BERKELEY, "added")], head_sha=NEW_HEAD, base_sha=BASE)
    world.deliver("pull_request", pr_payload("synchronize", NUMBER, NEW_HEAD))
    [second] = world.tick().run_requests
    running.join(timeout=120)
    assert world.store.exists(superseded_key(str(first.partition_key)))
    assert world.run(second).success
    return first, second


def test_a_new_head_supersedes_the_job_still_running(world: CiWorld) -> None:
    first, _ = supersede_running_job(world)

    assert world.states(HEAD) == [
        ("pending", f"Checking 1 entry in {BERKELEY}"),
        ("error", f"Superseded by {NEW_HEAD[:7]}: the newer commit is checked"),
    ]  # the old job's own end said nothing more
    assert world.states(NEW_HEAD) == [
        ("pending", f"Checking 1 entry in {BERKELEY}"),
        ("success", "1 entry processed: 2 features"),
    ]
    [comment] = world.comments()
    assert NEW_HEAD[:7] in comment and HEAD[:7] not in comment
    assert world.store.exists(result_key(first.partition_key))  # its result is kept all the same

    # the contributor force-pushes back to the first head: checked again, and it reports (nothing stays pending)
    world.github.add_pull(REPO, NUMBER, [file_entry(BERKELEY, "added")], head_sha=HEAD, base_sha=BASE)
    world.downloads.routes["/slow.csv"].delay = 0
    world.deliver("pull_request", pr_payload("synchronize", NUMBER, HEAD))
    [again] = world.tick().run_requests
    assert again.partition_key == first.partition_key and again.run_key != first.run_key
    assert not world.store.exists(superseded_key(first.partition_key))
    assert world.run(again).success
    assert world.states(HEAD)[-2:] == [
        ("pending", f"Checking 1 entry in {BERKELEY}"),
        ("success", "1 entry processed: 5 features"),
    ]


def test_a_rerun_comment_by_the_author_reruns_and_a_strangers_is_ignored(world: CiWorld) -> None:
    world.github.add_file(REPO, BERKELEY, HEAD, source_json(world.serve_csv("/berkeley.csv")))
    open_pull(world, [file_entry(BERKELEY, "added")], author="contributor")
    [request] = world.tick().run_requests
    assert world.run(request).success
    before = list(world.github.writes())

    world.deliver(
        "issue_comment", comment_payload("Re-run this, please!", number=NUMBER, author="passer-by", association="NONE")
    )
    assert not world.tick().run_requests
    assert world.github.writes() == before  # nothing told to GitHub either

    world.deliver(
        "issue_comment",
        comment_payload("RE-RUN THIS, PLEASE", number=NUMBER, author="contributor", association="CONTRIBUTOR"),
    )
    [rerun] = world.tick().run_requests
    assert rerun.partition_key == request.partition_key and rerun.run_key != request.run_key
    assert world.run(rerun).success
    assert [state for state, _ in world.states()] == ["pending", "success", "pending", "success"]
    assert len(world.comments()) == 1  # edited, not added again
    assert world.downloads.routes["/berkeley.csv"].hits == 2


def test_edited_comments_and_our_own_results_comment_never_ask_for_a_rerun(world: CiWorld) -> None:
    world.github.add_file(REPO, BERKELEY, HEAD, source_json(world.serve_csv("/berkeley.csv")))
    open_pull(world, [file_entry(BERKELEY, "added")], author="contributor")
    [request] = world.tick().run_requests
    assert world.run(request).success
    before = list(world.github.writes())
    edited = comment_payload("re-run this, please", number=NUMBER, author="contributor", association="NONE")
    world.deliver("issue_comment", {**edited, "action": "edited"})
    ours = comment_payload(f"{RESULTS_MARKER}\n| x | re-run this, please |", number=NUMBER, association="MEMBER")
    world.deliver("issue_comment", ours)  # the bot's results comment quoting a contributor's problem text
    assert not world.tick().run_requests
    assert world.github.writes() == before


def test_a_delivery_that_cannot_be_handled_is_skipped_not_retried_forever(world: CiWorld) -> None:
    assert world.receiver.store is not None
    world.receiver.store.record(  # a row the receiver of an older version let through: not a commit sha
        DeliveryFields(
            delivery_id="bad", event="pull_request", action="opened", repository=REPO, pr_number=NUMBER, head_sha="zz"
        ),
        payload="{}",
    )
    world.github.add_file(REPO, BERKELEY, HEAD, source_json(world.serve_csv("/berkeley.csv")))
    open_pull(world, [file_entry(BERKELEY, "added")])
    result = world.tick()
    assert result.cursor == "2" and len(result.run_requests) == 1  # the next delivery was handled in the same tick


def test_a_push_to_a_branch_is_a_push_job_without_a_comment(world: CiWorld) -> None:
    world.github.add_file(REPO, BERKELEY, HEAD, source_json(world.serve_csv("/berkeley.csv")))
    world.github.add_compare(REPO, BEFORE, HEAD, [file_entry(BERKELEY, "added")])
    world.deliver("push", push_payload())
    [request] = world.tick().run_requests
    assert request.partition_key == f"push-{HEAD[:7]}" and CI_PR_TAG not in request.tags
    assert world.run(request).success
    assert world.states() == [
        ("pending", f"Checking 1 entry in {BERKELEY}"),
        ("success", "1 entry processed: 5 features"),
    ]
    assert not world.github.comments


def test_a_push_to_the_default_branch_runs_production_entries_not_a_ci_job(world: CiWorld) -> None:
    world.deliver("push", push_payload(ref=f"refs/heads/{DEFAULT_BRANCH}"))
    result = world.tick()
    [request] = result.run_requests
    assert request.job_name == "launch_changed_entries_job" and request.tags[CI_PUSH_TAG] == HEAD
    assert request.run_config == {"ops": {"source_catalog": {"config": {"ref": HEAD}}}}
    assert not result.dynamic_partitions_requests and not world.github.received


def test_a_branch_deletion_and_a_closed_pull_request_do_nothing(world: CiWorld) -> None:
    world.github.add_pull(REPO, NUMBER, [file_entry(BERKELEY)], head_sha=HEAD, base_sha=BASE)
    world.deliver("push", push_payload(deleted=True))
    world.deliver("pull_request", pr_payload("closed", NUMBER))
    result = world.tick()
    assert not result.run_requests and result.cursor == "2"
    assert not world.github.received


def test_github_down_when_reporting_keeps_the_result_and_sends_it_when_back(world: CiWorld) -> None:
    world.github.add_file(REPO, BERKELEY, HEAD, source_json(world.serve_csv("/berkeley.csv")))
    open_pull(world, [file_entry(BERKELEY, "added")])
    [request] = world.tick().run_requests
    world.github.fail_next(50, status=503)  # down for every request the run makes
    run = world.run(request)
    assert run.success
    metadata = run.asset_materializations_for_node("ci_job")[0].metadata
    assert len(metadata["github_errors"].value) == 2  # the final status and the comment, kept
    assert world.states() == [("pending", f"Checking 1 entry in {BERKELEY}")]
    assert json.loads((world.tmp / "data" / result_key(request.partition_key)).read_text())["state"] == "success"

    context = dg.build_sensor_context(instance=world.instance, resources=world.resources)
    still_down = ci_reports_sensor(context)
    assert "2 still waiting" in str(still_down.skip_message)
    world.github.failures.clear()  # GitHub is back
    sent = ci_reports_sensor(dg.build_sensor_context(instance=world.instance, resources=world.resources))
    assert "2 report(s) sent, 0 still waiting" in str(sent.skip_message)
    assert world.states() == [
        ("pending", f"Checking 1 entry in {BERKELEY}"),
        ("success", "1 entry processed: 5 features"),
    ]
    assert len(world.comments()) == 1
    nothing = ci_reports_sensor(dg.build_sensor_context(instance=world.instance, resources=world.resources))
    assert "no report is waiting" in str(nothing.skip_message)


def test_a_duplicate_delivery_makes_one_job(world: CiWorld) -> None:
    world.github.add_file(REPO, BERKELEY, HEAD, source_json(world.serve_csv("/berkeley.csv")))
    world.github.add_pull(REPO, NUMBER, [file_entry(BERKELEY, "added")], head_sha=HEAD, base_sha=BASE)
    for _ in range(2):
        world.deliver("pull_request", pr_payload("opened", NUMBER), delivery="same-delivery-id")
    world.deliver("pull_request", pr_payload("reopened", NUMBER))  # another delivery, same commit
    assert len(world.tick().run_requests) == 1
    assert world.states() == [("pending", f"Checking 1 entry in {BERKELEY}")]


def test_badly_signed_unsigned_and_oversized_deliveries_reach_nobody(world: CiWorld) -> None:
    body = pr_payload("opened", NUMBER)
    assert world.receiver.post("pull_request", body, secret=None).status_code == 401
    assert world.receiver.post("pull_request", body, secret="not-the-secret").status_code == 401
    huge = {**body, "padding": "x" * DEFAULT_MAX_BODY_BYTES}
    assert world.receiver.post("pull_request", huge).status_code == 413
    result = world.tick()
    assert not result.run_requests and result.cursor == "0"
    assert not world.github.received


@pytest.mark.parametrize(
    ("url", "kind"),
    [("http://169.254.169.254/latest/meta-data/addresses.csv", "link-local"), ("http://127.0.0.1:9/a.csv", "loopback")],
)
def test_a_source_pointing_at_internal_addresses_is_refused_without_the_allowlist(
    world: CiWorld, url: str, kind: str
) -> None:
    world.resources["ci"] = CiSettings(deliveries_url=world.resources["ci"].deliveries_url, report_backoff_seconds=0)
    world.github.add_file(REPO, BERKELEY, HEAD, source_json(url))
    open_pull(world, [file_entry(BERKELEY, "added")])
    [request] = world.tick().run_requests
    assert world.run(request).success
    state, description = world.states()[-1]
    assert state == "failure" and description.startswith("addresses us/ca/berkeley/city:")
    assert kind in description and "CI jobs download from publi" in description


# ---- ticks that fail, run out of time or meet malformed input ----------------------------------------------------


def test_a_planned_job_whose_run_was_never_requested_is_requested_again(world: CiWorld) -> None:
    world.github.add_file(REPO, BERKELEY, HEAD, source_json(world.serve_csv("/berkeley.csv")))
    open_pull(world, [file_entry(BERKELEY, "added")])
    [lost] = world.tick().run_requests
    world.cursor = None  # the tick failed after `pending` (its 60 s, a killed daemon): no cursor, no run
    [again] = world.tick().run_requests
    assert again.run_key == lost.run_key  # the same run key: had the run been created, Dagster would skip it
    assert world.run(again).success
    assert [state for state, _ in world.states()] == ["pending", "pending", "success"]
    assert world.tick().run_requests == []  # now its run exists: done


def test_a_tick_keeps_to_its_budget_and_the_next_tick_goes_on(world: CiWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ci_jobs_module, "TICK_BUDGET_SECONDS", 1.0)
    world.github.delay = 0.2  # three calls a pull request: files, the file, the pending status
    heads = {number: f"{number:07x}" + "e" * 33 for number in range(1, 9)}
    for number, head in heads.items():
        world.github.add_file(REPO, BERKELEY, head, source_json(world.downloads.url("/x.csv")))
        world.github.add_pull(REPO, number, [file_entry(BERKELEY, "added")], head_sha=head, base_sha=BASE)
        world.deliver("pull_request", pr_payload("opened", number, head))
    per_tick = [len(world.tick().run_requests)]
    assert 0 < per_tick[0] < len(heads) and int(world.cursor or 0) == per_tick[0]
    while int(world.cursor or 0) < len(heads):
        per_tick.append(len(world.tick().run_requests))
    assert sum(per_tick) == len(heads)
    assert all(world.states(head) == [("pending", f"Checking 1 entry in {BERKELEY}")] for head in heads.values())


def test_a_malformed_github_answer_fails_that_job_and_the_next_delivery_goes_on(world: CiWorld) -> None:
    bad = {**file_entry(BERKELEY, "renamed"), "previous_filename": 5}
    world.github.add_pull(REPO, 7, [bad], head_sha=NEW_HEAD, base_sha=BASE)
    world.deliver("pull_request", pr_payload("opened", 7, NEW_HEAD))
    world.github.add_file(REPO, BERKELEY, HEAD, source_json(world.serve_csv("/berkeley.csv")))
    open_pull(world, [file_entry(BERKELEY, "added")])
    result = world.tick()
    assert result.cursor == "2" and [r.tags[CI_PR_TAG] for r in result.run_requests] == [str(NUMBER)]
    [(state, description)] = world.states(NEW_HEAD)
    assert state == "error" and "previous_filename is int" in description


def test_thirty_rerun_comments_between_two_ticks_queue_one_run(world: CiWorld) -> None:
    world.github.add_file(REPO, BERKELEY, HEAD, source_json(world.serve_csv("/berkeley.csv")))
    open_pull(world, [file_entry(BERKELEY, "added")], author="contributor")
    [request] = world.tick().run_requests
    assert world.run(request).success
    for _ in range(30):
        world.deliver("issue_comment", comment_payload(number=NUMBER, author="contributor", association="NONE"))
    [rerun] = world.tick().run_requests
    assert rerun.partition_key == request.partition_key
    assert [state for state, _ in world.states()] == ["pending", "success", "pending"]


def test_a_newer_head_in_the_same_tick_drops_the_older_heads_request(world: CiWorld) -> None:
    for head in (HEAD, NEW_HEAD):
        world.github.add_file(REPO, BERKELEY, head, source_json(world.serve_csv("/berkeley.csv")))
        open_pull(world, [file_entry(BERKELEY, "added")], head=head)
    [request] = world.tick().run_requests
    assert request.partition_key == f"pr-{NUMBER}-{NEW_HEAD[:7]}"
    assert world.states(HEAD)[-1] == ("error", f"Superseded by {NEW_HEAD[:7]}: the newer commit is checked")


def test_the_sweep_requests_a_lost_run_again_or_closes_the_status_saying_why(world: CiWorld) -> None:
    """Two `pending` statuses set ten minutes ago with no run behind them: one job's plan is stored (its run is
    requested again), the other's is not (error, naming why)."""
    planned, unplanned = f"pr-{NUMBER}-{HEAD[:7]}", f"pr-{NUMBER + 1}-{NEW_HEAD[:7]}"
    plan = JobPlan(
        HEAD,
        BASE,
        entries=(
            PlannedEntry(
                "addresses",
                "us/ca/berkeley/city",
                "us/ca/berkeley",
                "city",
                "v",
                BERKELEY,
                json.loads(source_json(world.serve_csv("/b.csv"))),
            ),
        ),
        files=(BERKELEY,),
    )
    write_job_record(world.store, planned, REPO, NUMBER, plan)
    ten_minutes_ago = ReportOutbox(world.resources["ci"].deliveries_url, clock=lambda: time.time() - 600)
    sender = ReportSender(world.resources["github"].client(), ten_minutes_ago)
    for key, sha in ((planned, HEAD), (unplanned, NEW_HEAD)):
        sender.status(REPO, sha, key, "pending", "Checking 1 entry", "oa-dagster")
    sender.close()
    [request] = world.tick().run_requests
    assert request.partition_key == planned and request.run_key.startswith(f"{planned}:sweep:")
    assert world.states(NEW_HEAD)[-1] == ("error", "The check could not run: its plan could not be read")
    assert world.run(request).success
    assert world.states(HEAD)[-1] == ("success", "1 entry processed: 5 features")
    assert world.tick().run_requests == []  # swept once: the status is final now
