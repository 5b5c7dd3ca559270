"""End to end under the real `dagster-daemon`: a signed pull_request delivery posted over HTTP to `oa-dagster
serve` becomes, with no clicks, a `pending` status, a `ci_job` run launched by the daemon, and the final status
and results comment on the (fake) GitHub; nothing is left `pending`."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from tests.ci_daemon import pending_and_final, running_ci_platform
from tests.ci_deliveries import BASE, HEAD, REPO, pr_payload
from tests.platform_helpers import wait_for
from tests.servers.downloads import DownloadServer
from tests.servers.github import FakeGitHubServer, file_entry
from tests.test_ci_scenarios import csv_rows, source_json

pytest_plugins = ["tests.servers.fixtures"]

PATH = "sources/us/ca/berkeley.json"


def test_a_signed_delivery_becomes_a_checked_pull_request_through_the_daemon(
    tmp_path: Path, github_server: FakeGitHubServer, download_server: DownloadServer
) -> None:
    download_server.route("/berkeley.csv", body=csv_rows(7), content_type="text/csv")
    github_server.add_file(REPO, PATH, HEAD, source_json(download_server.url("/berkeley.csv")))
    github_server.add_pull(REPO, 42, [file_entry(PATH, "added")], head_sha=HEAD, base_sha=BASE, author="someone")
    with running_ci_platform(tmp_path, github_server, download_server) as platform:
        answer = platform.receiver.post("pull_request", pr_payload("opened", 42))
        assert answer.status_code == 200
        wait_for("the pending status", lambda: pending_and_final(github_server, HEAD), 120, platform.daemon_log)
        wait_for("the final status", lambda: len(pending_and_final(github_server, HEAD)) >= 2, 240, platform.daemon_log)
        with dg.DagsterInstance.from_config(str(platform.home)) as instance:
            [run] = instance.get_runs(dg.RunsFilter(tags={"oa/ci_job": f"pr-42-{HEAD[:7]}"}))
            assert run.tags["dagster/priority"] == "0" and run.tags["oa/ci_pr"] == "42"
            wait_for("the run to end", lambda: instance.get_run_by_id(run.run_id).is_finished, 60)
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.SUCCESS
    statuses = github_server.statuses[(REPO, HEAD)]
    assert [(s["state"], s["description"]) for s in statuses] == [
        ("pending", f"Checking 1 entry in {PATH}"),
        ("success", "1 entry processed: 7 features"),
    ]
    assert statuses[-1]["target_url"] == f"http://dagster.example.test/runs/{run.run_id}"
    [comment] = github_server.comments[(REPO, 42)]
    assert "us/ca/berkeley/city" in comment["body"] and "| 7 |" in comment["body"]
    assert (tmp_path / "data" / "jobs" / f"pr-42-{HEAD[:7]}" / "result.json").is_file()


BURST = 80  # pull requests delivered at once
GITHUB_SECONDS = 0.25  # each GitHub call: planning all of them in one tick would take 80 x 3 x 0.25 s = 60 s


def sensor_ids(instance: dg.DagsterInstance, name: str) -> tuple[str, str]:
    """(origin id, selector id) of the sensor `name`, for its ticks."""
    [state] = [s for s in instance.all_instigator_state() if s.name == name]
    return state.instigator_origin_id, state.selector_id


def invalid_pull(github: FakeGitHubServer, number: int) -> str:
    """A pull request adding a source file without its `data`: a run with nothing to download, a failure and a
    comment. Returns its head."""
    head = f"{number:07x}" + "f" * 33
    bad = json.dumps({"schema": 2, "coverage": {"country": "us"}, "layers": {"addresses": [{"name": "city"}]}})
    github.add_file(REPO, PATH, head, bad)
    github.add_pull(REPO, number, [file_entry(PATH, "added")], head_sha=head, base_sha=BASE)
    return head


def every_status_final(github: FakeGitHubServer, heads: dict[int, str]) -> bool:
    return all(pending_and_final(github, head)[-1:] in (["failure"], ["error"]) for head in heads.values())


def assert_one_failure_and_one_comment_each(github: FakeGitHubServer, heads: dict[int, str]) -> None:
    for number, head in heads.items():
        assert pending_and_final(github, head)[-1] == "failure", (number, pending_and_final(github, head))
        assert len(github.comments.get((REPO, number), [])) == 1, number


def test_a_burst_of_pull_requests_past_one_ticks_time_ends_with_every_status_final(
    tmp_path: Path, github_server: FakeGitHubServer, download_server: DownloadServer
) -> None:
    heads = {number: invalid_pull(github_server, number) for number in range(1, BURST + 1)}
    github_server.delay = GITHUB_SECONDS
    with running_ci_platform(tmp_path, github_server, download_server) as platform:
        for number, head in heads.items():
            assert platform.receiver.post("pull_request", pr_payload("opened", number, head)).status_code == 200
        wait_for("every final status", lambda: every_status_final(github_server, heads), 1800, platform.daemon_log)
        with dg.DagsterInstance.from_config(str(platform.home)) as instance:
            ticks = instance.get_ticks(*sensor_ids(instance, "ci_jobs_sensor"), limit=100)
    assert_one_failure_and_one_comment_each(github_server, heads)
    assert not [tick for tick in ticks if tick.status == dg.TickStatus.FAILURE]
    assert len([tick for tick in ticks if tick.run_ids]) > 1  # the burst took more than one tick


def test_a_daemon_killed_right_after_a_pending_status_leaves_nothing_pending(
    tmp_path: Path, github_server: FakeGitHubServer, download_server: DownloadServer
) -> None:
    heads = {number: invalid_pull(github_server, number) for number in (1, 2)}
    held = github_server.pause("GET", "/pulls/2/files")  # the tick is still busy with #2 after #1 went pending
    with running_ci_platform(tmp_path, github_server, download_server) as platform:
        for number, head in heads.items():
            assert platform.receiver.post("pull_request", pr_payload("opened", number, head)).status_code == 200
        wait_for("#1 pending", lambda: pending_and_final(github_server, heads[1]), 300, platform.daemon_log)
        platform.kill_daemon()
        held.set()
        assert pending_and_final(github_server, heads[1]) == ["pending"]
        platform.start_daemon("daemon-restarted.log")
        wait_for("every final status", lambda: every_status_final(github_server, heads), 600, platform.daemon_log)
    assert_one_failure_and_one_comment_each(github_server, heads)
