"""End to end under the real `dagster-daemon`: a signed pull_request delivery posted over HTTP to `oa-dagster
serve` becomes, with no clicks, a `pending` status, a `ci_job` run launched by the daemon, and the final status
and results comment on the (fake) GitHub; nothing is left `pending`."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from tests.ci_daemon import all_answered, invalid_pull, pending_and_final, running_ci_platform, sensor_ids
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


# Planning every pull request of the burst in one tick would take BURST x 3 calls x GITHUB_SECONDS = 61 s, past
# Dagster's limit: the same as 80 pull requests with GitHub answering in 0.25 s, with 6 run processes instead of
# 80 (`bench/bench_ci_jobs.py --burst 80 --github-seconds 0.25` runs that one).
BURST = 6
GITHUB_SECONDS = 3.4


def assert_one_failure_and_one_comment_each(github: FakeGitHubServer, heads: dict[int, str]) -> None:
    for number, head in heads.items():
        assert pending_and_final(github, head)[-1] == "failure", (number, pending_and_final(github, head))
        assert len(github.comments.get((REPO, number), [])) == 1, number


def test_a_burst_of_pull_requests_past_one_ticks_time_ends_with_every_status_final_and_one_comment(
    tmp_path: Path, github_server: FakeGitHubServer, download_server: DownloadServer
) -> None:
    heads = {number: invalid_pull(github_server, number) for number in range(1, BURST + 1)}
    github_server.delay = GITHUB_SECONDS
    with running_ci_platform(tmp_path, github_server, download_server) as platform:
        for number, head in heads.items():
            assert platform.receiver.post("pull_request", pr_payload("opened", number, head)).status_code == 200
        wait_for("every answer", lambda: all_answered(github_server, heads), 1800, platform.daemon_log)
        with dg.DagsterInstance.from_config(str(platform.home)) as instance:
            ticks = instance.get_ticks(*sensor_ids(instance, "ci_jobs_sensor"), limit=100)
    assert_one_failure_and_one_comment_each(github_server, heads)
    assert not [tick for tick in ticks if tick.status.value == "FAILURE"]
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
        wait_for("every answer", lambda: all_answered(github_server, heads), 600, platform.daemon_log)
    assert_one_failure_and_one_comment_each(github_server, heads)
