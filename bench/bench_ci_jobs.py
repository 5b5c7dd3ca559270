"""A one-entry pull request through the real daemon: seconds from the signed delivery to `pending` and to the
final status on the (fake) GitHub.

    python bench/bench_ci_jobs.py [--prs 5] [--rows 1000]

`oa-dagster serve` receives each delivery over loopback, `dagster-daemon run` (deploy/local/dagster.yaml: queued
runs, run monitoring) evaluates `ci_jobs_sensor` and launches the `ci_job` run, which downloads the entry's CSV
(`--rows` rows) from a local server and reports. Pull requests are sent one after the other, each waiting for
its final status, so each number is one job's latency on an idle platform. The sensor's minimum interval (15 s)
bounds the time to `pending`; a run process's start (loading the code location) dominates the rest.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prs", type=int, default=5)
    parser.add_argument("--rows", type=int, default=1000)
    args = parser.parse_args()

    from tests.ci_daemon import pending_and_final, running_ci_platform
    from tests.ci_deliveries import BASE, REPO, pr_payload
    from tests.platform_helpers import wait_for
    from tests.servers.downloads import DownloadServer
    from tests.servers.fixtures import GITHUB_TOKEN
    from tests.servers.github import FakeGitHubServer, file_entry
    from tests.test_ci_scenarios import csv_rows, source_json

    to_pending: list[float] = []
    to_final: list[float] = []
    github = FakeGitHubServer(token=GITHUB_TOKEN).start()
    downloads = DownloadServer().start()
    downloads.route("/berkeley.csv", body=csv_rows(args.rows), content_type="text/csv")
    path = "sources/us/ca/berkeley.json"
    try:
        with tempfile.TemporaryDirectory() as tmp, running_ci_platform(Path(tmp), github, downloads) as platform:
            for number in range(1, args.prs + 1):
                head = f"{number:07x}" + "e" * 33
                github.add_file(REPO, path, head, source_json(downloads.url("/berkeley.csv")))
                github.add_pull(REPO, number, [file_entry(path, "added")], head_sha=head, base_sha=BASE)
                sent = time.monotonic()
                answer = platform.receiver.post("pull_request", pr_payload("opened", number, head))
                assert answer.status_code == 200, answer.text
                wait_for("pending", lambda h=head: pending_and_final(github, h), 300, platform.daemon_log)
                to_pending.append(time.monotonic() - sent)
                wait_for("final", lambda h=head: len(pending_and_final(github, h)) >= 2, 600, platform.daemon_log)
                to_final.append(time.monotonic() - sent)
                final = pending_and_final(github, head)[-1]
                print(f"PR #{number}: pending after {to_pending[-1]:.1f} s, {final} after {to_final[-1]:.1f} s")
    finally:
        github.stop()
        downloads.stop()
    print(
        f"{args.prs} pull requests of one entry ({args.rows:,} rows): delivery -> pending "
        f"median {statistics.median(to_pending):.1f} s (max {max(to_pending):.1f}); delivery -> final status "
        f"median {statistics.median(to_final):.1f} s (max {max(to_final):.1f}); bench process peak RSS "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
