"""No status stays `pending`: the outbox keeps the newest wanted report per target, the failure and cancel
sensors close the status of a run that ended without reporting, and a job is held to its wall-clock cap."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from oa_dagster.assets.ci_jobs import ci_job, result_key, superseded_key, write_job_record
from oa_dagster.ci.github_api import RESULTS_MARKER
from oa_dagster.ci.outbox import Report, ReportOutbox, backoff
from oa_dagster.ci.plan import JobPlan, PlannedEntry
from oa_dagster.ci.report_sender import ReportSender
from oa_dagster.definitions import defs
from oa_dagster.platform.store import LocalStore, put_json
from oa_dagster.resources.deployments import local_resources
from oa_dagster.resources.github import CiSettings, GitHubResource
from oa_dagster.run_tags import CI_JOB_TAG, WILL_RETRY_TAG
from oa_dagster.sensors.ci_job_reports import ci_job_canceled_sensor, ci_job_failure_sensor, ci_reports_sensor
from tests.ci_deliveries import HEAD, REPO
from tests.platform_helpers import wait_for
from tests.servers.downloads import DownloadServer
from tests.servers.fixtures import GITHUB_TOKEN
from tests.servers.github import FakeGitHubServer
from tests.test_ci_scenarios import csv_rows, source_json

pytest_plugins = ["tests.servers.fixtures"]

KEY = f"pr-5-{HEAD[:7]}"


def status(state: str, version_note: str = "") -> Report:
    body = {"state": state, "description": f"{state}{version_note}", "context": "oa-dagster", "target_url": None}
    return Report("status", REPO, KEY, body, sha=HEAD)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_the_outbox_keeps_the_newest_state_and_a_stale_send_leaves_it_unsent(tmp_path: Path) -> None:
    outbox = ReportOutbox(f"sqlite:///{tmp_path / 'w.db'}")
    pending = outbox.want(status("pending"))
    success = outbox.want(status("success"))
    assert (pending, success) == (1, 2)
    [due] = outbox.due()
    assert due.report.body["state"] == "success" and due.version == 2  # only the newest of the target
    outbox.sent(status("pending"), pending)  # a late send of the old state: the newest must still go out
    [due] = outbox.due()
    assert due.version == 2
    outbox.sent(status("success"), success)
    assert outbox.due() == [] and outbox.unsent() == []
    comment = Report("comment", REPO, KEY, {"body": "results"}, number=5)
    outbox.want(comment)
    assert [p.report.target for p in outbox.unsent(KEY)] == [f"comment {REPO}#5"]
    outbox.close()


def test_a_failed_send_waits_its_backoff_and_counts_its_attempts(tmp_path: Path) -> None:
    clock = Clock()
    outbox = ReportOutbox(f"sqlite:///{tmp_path / 'w.db'}", backoff_seconds=30, clock=clock)
    version = outbox.want(status("success"))
    outbox.failed(status("success"), version, "GitHubUnavailable: 503")
    assert outbox.due() == []
    clock.now += backoff(1, 30)
    [due] = outbox.due()
    assert (due.attempts, due.last_error) == (1, "GitHubUnavailable: 503")
    outbox.failed(status("success"), version, "again")
    clock.now += backoff(1, 30)
    assert outbox.due() == []  # the second wait is twice as long
    clock.now += backoff(2, 30)
    assert [d.attempts for d in outbox.due()] == [2]
    assert [backoff(n) for n in (1, 2, 3, 10)] == [30, 60, 120, 3600]
    outbox.close()


def test_the_sender_records_before_sending_and_marks_what_github_took(
    tmp_path: Path, github_server: FakeGitHubServer
) -> None:
    outbox = ReportOutbox(f"sqlite:///{tmp_path / 'w.db'}", backoff_seconds=0)
    sender = ReportSender(GitHubResource(api_url=github_server.url(), token=GITHUB_TOKEN, retries=0).client(), outbox)
    github_server.fail_next(1, status=502)
    error = sender.status(REPO, HEAD, KEY, "pending", "Checking 1 entry", "oa-dagster")
    assert error and "502" in error
    assert [p.report.body["state"] for p in outbox.unsent()] == ["pending"]
    assert sender.status(REPO, HEAD, KEY, "success", "1 entry processed", "oa-dagster") is None
    assert outbox.unsent() == []  # the newer state went out: the old pending is never sent after it
    assert [r.error for r in sender.resend_due()] == []
    assert [s["state"] for s in github_server.statuses[(REPO, HEAD)]] == ["success"]
    sender.close()


def resources_for(tmp_path: Path, github: FakeGitHubServer, **ci: Any) -> dict[str, Any]:
    return {
        **local_resources(tmp_path / "data"),
        "github": GitHubResource(api_url=github.url(), token=GITHUB_TOKEN, repo=REPO, retries=0),
        "ci": CiSettings(deliveries_url=f"sqlite:///{tmp_path / 'webhook.db'}", report_backoff_seconds=0, **ci),
    }


def planned(path: str, url: str, name: str) -> PlannedEntry:
    data = json.loads(source_json(url).replace('"city"', f'"{name}"'))
    return PlannedEntry("addresses", f"us/ca/berkeley/{name}", "us/ca/berkeley", name, "v1", path, data)


def ended_run(instance: dg.DagsterInstance, status: dg.DagsterRunStatus, tags: dict[str, str]) -> Any:
    """A ci_job_job run that ended without its step reporting (a killed worker, an operator's cancel)."""
    job = defs.resolve_job_def("ci_job_job")
    run = instance.create_run_for_job(job_def=job, tags=tags)
    if status == dg.DagsterRunStatus.FAILURE:
        instance.report_run_failed(run)
        kind = dg.DagsterEventType.RUN_FAILURE
    else:
        instance.report_run_canceled(run)
        kind = dg.DagsterEventType.RUN_CANCELED
    [record] = instance.get_records_for_run(run.run_id, of_type=kind).records
    return instance.get_run_by_id(run.run_id), record.event_log_entry.dagster_event


@pytest.mark.parametrize(
    ("status", "sensor", "reason"),
    [
        (dg.DagsterRunStatus.FAILURE, ci_job_failure_sensor, "its run failed"),
        (dg.DagsterRunStatus.CANCELED, ci_job_canceled_sensor, "its run was canceled"),
    ],
)
def test_a_run_that_ended_without_reporting_gets_an_error_status(
    tmp_path: Path, github_server: FakeGitHubServer, status: dg.DagsterRunStatus, sensor: Any, reason: str
) -> None:
    resources = resources_for(tmp_path, github_server)
    store = LocalStore(tmp_path / "data")
    write_job_record(store, KEY, REPO, 5, JobPlan(head_sha=HEAD, base_sha=None, files=("sources/x.json",)))
    with dg.instance_for_test() as instance:

        def evaluate(tags: dict[str, str], before: Any = None) -> None:
            run, event = ended_run(instance, status, tags)
            if before is not None:
                before(run)
            context = dg.build_run_status_sensor_context(
                sensor_name=sensor.name,
                dagster_event=event,
                dagster_instance=instance,
                dagster_run=run,
                resources=resources,
            )
            sensor(context.for_run_failure() if status == dg.DagsterRunStatus.FAILURE else context)

        evaluate({CI_JOB_TAG: KEY, WILL_RETRY_TAG: "true"})  # its retry will report
        evaluate({"some": "other run"})
        evaluate(  # the run's own end reported already
            {CI_JOB_TAG: KEY}, before=lambda run: put_json(store, result_key(KEY), {"run_id": run.run_id})
        )
        assert not github_server.received
        evaluate({CI_JOB_TAG: KEY})  # ended without a word
        states = [(s["state"], s["description"]) for s in github_server.statuses[(REPO, HEAD)]]
        assert states == [("error", f"The check could not run: {reason}")]
        store.put_bytes(superseded_key(KEY), b"{}")
        evaluate({CI_JOB_TAG: KEY})  # superseded: the CI sensor has said so already
        assert len(github_server.statuses[(REPO, HEAD)]) == 1


def test_a_job_over_its_wall_clock_cap_stops_and_fails_naming_the_cap(
    tmp_path: Path, github_server: FakeGitHubServer, download_server: DownloadServer
) -> None:
    download_server.route("/slow.csv", body=csv_rows(2000), content_type="text/csv", drip=0.2, drip_bytes=64)
    download_server.route("/next.csv", body=csv_rows(3), content_type="text/csv")
    port = download_server.server_address[1]
    resources = resources_for(tmp_path, github_server, allowed_hosts=f"127.0.0.1:{port}", job_max_runtime_seconds=2)
    store = LocalStore(tmp_path / "data")
    plan = JobPlan(
        head_sha=HEAD,
        base_sha=None,
        entries=(
            planned("sources/us/ca/berkeley.json", download_server.url("/slow.csv"), "slow"),
            planned("sources/us/ca/berkeley.json", download_server.url("/next.csv"), "next"),
        ),
        files=("sources/us/ca/berkeley.json",),
    )
    write_job_record(store, KEY, REPO, 5, plan)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("ci_jobs", [KEY])
        result = dg.materialize([ci_job], partition_key=KEY, instance=instance, resources=resources)
    assert result.success
    cap = "the job's time cap of 2 s was reached"
    [(state, description)] = [(s["state"], s["description"]) for s in github_server.statuses[(REPO, HEAD)]]
    assert state == "failure" and description == f"addresses us/ca/berkeley/slow: stopped: {cap} (and 1 other)"
    assert download_server.routes["/next.csv"].hits == 0
    entries = json.loads((tmp_path / "data" / result_key(KEY)).read_text())["entries"]
    assert [e["problem"] for e in entries] == [f"stopped: {cap}", f"not run: {cap}"]


class RefusingClient:
    """A GitHub client whose every status is refused with `status`."""

    def __init__(self, status: int) -> None:
        self.status = status

    def set_status(self, *args: Any) -> None:
        from oa_dagster.ci.github_api import GitHubError

        raise GitHubError(self.status, "Validation Failed")


@pytest.mark.parametrize(("status", "kept"), [(422, False), (404, False), (403, True), (429, True)])
def test_a_refusal_no_retry_can_change_is_given_up_not_sent_forever(tmp_path: Path, status: int, kept: bool) -> None:
    outbox = ReportOutbox(f"sqlite:///{tmp_path / 'w.db'}", backoff_seconds=0)
    sender = ReportSender(RefusingClient(status), outbox)  # type: ignore[arg-type]
    assert sender.status(REPO, HEAD, KEY, "success", "1 entry processed", "oa-dagster")
    assert bool(outbox.due()) is kept
    if not kept:
        assert outbox.unsent() == []
    sender.close()


def test_a_comment_being_sent_is_not_due_so_it_is_posted_once(tmp_path: Path, github_server: FakeGitHubServer) -> None:
    resources = resources_for(tmp_path, github_server)
    sender = resources["ci"].report_sender(resources["github"].client())
    held = github_server.pause("POST", f"/issues/{5}/comments")  # the run's post, after it found no comment
    posting = threading.Thread(target=sender.comment, args=(REPO, 5, KEY, "results"))
    posting.start()
    wait_for("the run's post", lambda: any(m == "POST" and "comments" in p for m, p, _ in github_server.received), 10)
    answer = ci_reports_sensor(dg.build_sensor_context(resources=resources))  # every 30 s, whatever the runs do
    held.set()
    posting.join(30)
    assert [c["body"] for c in github_server.comments[(REPO, 5)]] == [f"{RESULTS_MARKER}\nresults"]
    assert "no report is waiting" in str(answer.skip_message)
    sender.close()


def test_a_newer_report_wanted_while_one_is_sent_goes_out_right_after_it(
    tmp_path: Path, github_server: FakeGitHubServer
) -> None:
    resources = resources_for(tmp_path, github_server)
    first, second = (resources["ci"].report_sender(resources["github"].client()) for _ in range(2))
    held = github_server.pause("POST", f"/statuses/{HEAD}")
    sending = threading.Thread(target=first.status, args=(REPO, HEAD, KEY, "pending", "Checking", "oa-dagster"))
    sending.start()
    wait_for("the first post", lambda: github_server.received, 10)
    assert second.status(REPO, HEAD, KEY, "success", "1 entry processed", "oa-dagster") is None  # left to `first`
    held.set()
    sending.join(30)
    assert [s["state"] for s in github_server.statuses[(REPO, HEAD)]] == ["pending", "success"]
    assert first.outbox is not None and first.outbox.unsent() == []
    first.close()
    second.close()
