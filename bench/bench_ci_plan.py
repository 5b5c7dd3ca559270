"""Planning one CI job against a slow GitHub: seconds and files/s with the planner's concurrent calls, against
one call at a time in the same process.

    python bench/bench_ci_plan.py [--files 64] [--delay 0.25] [--modified]

The fake GitHub API (tests/servers/github.py) answers every call after `--delay` seconds, as a loaded GitHub
does. A pull request adds `--files` source files (one call each: the file at the head), or with `--modified`
changes them (two calls each: head and base). The planner's own bound (`ci/plan.py` `CONCURRENCY`) is what the
CI sensor uses; at concurrency 1 the plan is what the sensor made before calls ran concurrently. Both plans must
be equal, else the exit code is 1. What the sensor can plan in its 25 s tick budget follows from the files/s.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=64)
    parser.add_argument("--delay", type=float, default=0.25)
    parser.add_argument("--modified", action="store_true", help="changed files: the base is read too")
    args = parser.parse_args()

    from oa_dagster.ci.github_api import ChangedFile, GitHubClient
    from oa_dagster.ci.plan import CONCURRENCY, plan_job
    from tests.servers.github import FakeGitHubServer

    repo, head, base = "openaddresses/openaddresses", "1" * 40, "2" * 40
    github = FakeGitHubServer().start()
    try:
        files = []
        for n in range(args.files):
            path = f"sources/us/ca/city{n}.json"
            for ref, street in ((head, "STREET"), (base, "OLD_STREET")):
                entry = {
                    "name": "city",
                    "protocol": "http",
                    "data": f"https://data.example.com/{n}.csv",
                    "license": {"text": "Public domain"},
                    "conform": {"format": "csv", "lon": "X", "lat": "Y", "number": "N", "street": street},
                }
                source = {"schema": 2, "coverage": {"country": "us"}, "layers": {"addresses": [entry]}}
                github.add_file(repo, path, ref, json.dumps(source))
            files.append(ChangedFile(path, "modified" if args.modified else "added"))
        github.delay = args.delay
        client = GitHubClient(github.url(), retries=0)
        plans, seconds = {}, {}
        for concurrency in (1, CONCURRENCY):
            started = time.perf_counter()
            plans[concurrency] = plan_job(
                client, repo, head_sha=head, base_sha=base, files=files, concurrency=concurrency
            )
            seconds[concurrency] = time.perf_counter() - started
            rate = args.files / seconds[concurrency]
            print(
                f"concurrency {concurrency}: {args.files} files in {seconds[concurrency]:.2f} s ({rate:.1f} files/s, "
                f"at most {github.most_at_once} calls at once)"
            )
            github.most_at_once = 0
    finally:
        github.stop()
    same = plans[1] == plans[CONCURRENCY] and len(plans[1].entries) == args.files
    print(
        f"{args.files} {'changed' if args.modified else 'new'} files, GitHub answering in {args.delay:g} s: "
        f"concurrent planning {seconds[1] / seconds[CONCURRENCY]:.1f}x one call at a time; plans equal: {same}; "
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
