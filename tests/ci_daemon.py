"""The CI platform as it runs for real: `oa-dagster serve` receiving signed deliveries over HTTP and
`dagster-daemon run` evaluating the CI sensors and launching `ci_job` runs, on a local instance home, against the
fake GitHub API and a local download server. Shared by the end-to-end test and `bench/bench_ci_jobs.py`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.ci_deliveries import REPO, SECRET, Receiver
from tests.platform_helpers import local_instance_home, running_daemon, running_serve
from tests.servers.downloads import DownloadServer
from tests.servers.fixtures import GITHUB_TOKEN
from tests.servers.github import FakeGitHubServer


@dataclass
class CiPlatform:
    receiver: Receiver
    home: Path
    data: Path
    daemon_log: Path


def ci_env(tmp: Path, github: FakeGitHubServer, downloads: DownloadServer) -> dict[str, str]:
    """What an operator sets for CI jobs (README), pointed at the fakes; the sources folder stays empty."""
    (tmp / "sources" / "sources").mkdir(parents=True, exist_ok=True)
    return {
        "OA_ENV": "local",
        "OA_DATA_DIR": str(tmp / "data"),
        "OA_WORK_DIR": str(tmp / "work"),
        "OA_SOURCES_DIR": str(tmp / "sources"),
        "OA_WEBHOOK_SECRET": SECRET,
        "GITHUB_TOKEN": GITHUB_TOKEN,
        "OA_GITHUB_API_URL": github.url(),
        "OA_SOURCES_REPO": REPO,
        "OA_CI_ALLOW_HOSTS": f"127.0.0.1:{downloads.server_address[1]}",
        "OA_DAGSTER_UI_URL": "http://dagster.example.test",
    }


@contextmanager
def running_ci_platform(tmp: Path, github: FakeGitHubServer, downloads: DownloadServer) -> Iterator[CiPlatform]:
    """Serve and daemon started (both stopped at the end, process groups killed); `/hook` answering."""
    home = local_instance_home(tmp / "home")
    env = {**os.environ, **ci_env(tmp, github, downloads), "DAGSTER_HOME": str(home)}
    log = tmp / "daemon.log"
    with ExitStack() as stack:
        base = stack.enter_context(running_serve(env, tmp / "serve.log"))
        stack.enter_context(running_daemon(home, ci_env(tmp, github, downloads), log))
        yield CiPlatform(Receiver(base, None), home, tmp / "data", log)


def pending_and_final(github: FakeGitHubServer, sha: str) -> list[str]:
    return [status["state"] for status in github.statuses.get((REPO, sha), [])]
