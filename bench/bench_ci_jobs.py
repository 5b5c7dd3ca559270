"""A one-entry pull request through the real daemon: seconds from the signed delivery to `pending` and to the
final status on the (fake) GitHub.

    python bench/bench_ci_jobs.py [--prs 5] [--rows 1000]
    python bench/bench_ci_jobs.py --burst 80 [--github-seconds 0.25]

`oa-dagster serve` receives each delivery over loopback, `dagster-daemon run` (deploy/local/dagster.yaml: queued
runs, run monitoring) evaluates `ci_jobs_sensor` and launches the `ci_job` run, which downloads the entry's CSV
(`--rows` rows) from a local server and reports. Pull requests are sent one after the other, each waiting for
its final status, so each number is one job's latency on an idle platform. The sensor's minimum interval (15 s)
bounds the time to `pending`; a run process's start (loading the code location) dominates the rest.

`--burst N` posts N pull requests at once instead, each adding a source without its `data` (a run with nothing
to download: a failure and a comment), with the fake GitHub answering every call after `--github-seconds`:
planning all of them takes N x 3 calls (files, the file, the pending status), past Dagster's 60 s sensor limit
for 80 at 0.25 s. It prints the seconds until every status is final and the sensor's ticks; the exit code is 1
unless every pull request ends with one final status and one comment.
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
    parser.add_argument("--burst", type=int, default=0, help="post this many pull requests at once")
    parser.add_argument("--github-seconds", type=float, default=0.25, help="every GitHub answer's delay (--burst)")
    args = parser.parse_args()
    if args.burst:
        return burst(args.burst, args.github_seconds)

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


def burst(count: int, github_seconds: float) -> int:
    """`count` pull requests posted at once against a GitHub answering in `github_seconds`: time to all final."""
    import dagster as dg

    from tests.ci_daemon import all_answered, invalid_pull, pending_and_final, running_ci_platform, sensor_ids
    from tests.ci_deliveries import REPO, pr_payload
    from tests.platform_helpers import wait_for
    from tests.servers.downloads import DownloadServer
    from tests.servers.fixtures import GITHUB_TOKEN
    from tests.servers.github import FakeGitHubServer

    github = FakeGitHubServer(token=GITHUB_TOKEN).start()
    downloads = DownloadServer().start()
    heads = {number: invalid_pull(github, number) for number in range(1, count + 1)}
    github.delay = github_seconds
    try:
        with tempfile.TemporaryDirectory() as tmp, running_ci_platform(Path(tmp), github, downloads) as platform:
            sent = time.monotonic()
            for number, head in heads.items():
                assert platform.receiver.post("pull_request", pr_payload("opened", number, head)).status_code == 200
            wait_for("every answer", lambda: all_answered(github, heads), 7200, platform.daemon_log)
            seconds = time.monotonic() - sent
            with dg.DagsterInstance.from_config(str(platform.home)) as instance:
                ticks = instance.get_ticks(*sensor_ids(instance, "ci_jobs_sensor"), limit=1000)
    finally:
        github.stop()
        downloads.stop()
    finals = [pending_and_final(github, head)[-1] for head in heads.values()]
    comments = [len(github.comments.get((REPO, number), [])) for number in heads]
    requesting = [len(tick.run_ids) for tick in reversed(ticks) if tick.run_ids]
    failed = sum(tick.status.value == "FAILURE" for tick in ticks)
    print(
        f"{count} pull requests at once, GitHub answering in {github_seconds:g} s: every status final after "
        f"{seconds:.0f} s ({finals.count('failure')} failure as expected); comments per pull request "
        f"{min(comments)}..{max(comments)}; runs requested per tick {requesting}; failed ticks {failed}"
    )
    return 0 if set(finals) == {"failure"} and set(comments) == {1} and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
