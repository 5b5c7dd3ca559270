"""End to end under the real `dagster-daemon`: a signed pull_request delivery posted over HTTP to `oa-dagster
serve` becomes, with no clicks, a `pending` status, a `ci_job` run launched by the daemon, and the final status
and results comment on the (fake) GitHub; nothing is left `pending`."""

from __future__ import annotations

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
