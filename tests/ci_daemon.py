"""The CI platform as it runs for real: `oa-dagster serve` receiving signed deliveries over HTTP and
`dagster-daemon run` evaluating the CI sensors and launching `ci_job` runs, on a local instance home, against the
fake GitHub API and a local download server. Shared by the end-to-end test and `bench/bench_ci_jobs.py`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from tests.ci_deliveries import BASE, REPO, SECRET, Receiver
from tests.platform_helpers import local_instance_home, running_daemon, running_serve
from tests.servers.downloads import DownloadServer
from tests.servers.fixtures import GITHUB_TOKEN
from tests.servers.github import FakeGitHubServer, file_entry

SOURCE_PATH = "sources/us/ca/berkeley.json"


@dataclass
class CiPlatform:
    receiver: Receiver
    home: Path
    data: Path
    daemon_log: Path
    env: dict[str, str]
    stack: ExitStack
    daemon: subprocess.Popen[bytes] | None = None

    def kill_daemon(self) -> None:
        """SIGKILL the daemon with its code server and run workers (one process group), as a crash would."""
        assert self.daemon is not None
        os.killpg(self.daemon.pid, signal.SIGKILL)
        self.daemon.wait()

    def start_daemon(self, log: str = "daemon.log") -> None:
        self.daemon_log = self.home.parent / log
        self.daemon = self.stack.enter_context(running_daemon(self.home, self.env, self.daemon_log))


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
        platform = CiPlatform(Receiver(base, None), home, tmp / "data", log, ci_env(tmp, github, downloads), stack)
        platform.start_daemon()
        yield platform


def pending_and_final(github: FakeGitHubServer, sha: str) -> list[str]:
    return [status["state"] for status in github.statuses.get((REPO, sha), [])]


def sensor_ids(instance: dg.DagsterInstance, name: str) -> tuple[str, str]:
    """(origin id, selector id) of the sensor `name`, for its ticks."""
    [state] = [s for s in instance.all_instigator_state() if s.name == name]
    return state.instigator_origin_id, state.selector_id


def invalid_pull(github: FakeGitHubServer, number: int) -> str:
    """A pull request adding a source file without its `data`: a run with nothing to download, a failure and a
    comment. Returns its head."""
    head = f"{number:07x}" + "f" * 33
    bad = json.dumps({"schema": 2, "coverage": {"country": "us"}, "layers": {"addresses": [{"name": "city"}]}})
    github.add_file(REPO, SOURCE_PATH, head, bad)
    github.add_pull(REPO, number, [file_entry(SOURCE_PATH, "added")], head_sha=head, base_sha=BASE)
    return head


def all_answered(github: FakeGitHubServer, heads: dict[int, str]) -> bool:
    """Every pull request's status final (failure or error) and its results comment posted (the run posts it
    after the status)."""
    final = all(pending_and_final(github, head)[-1:] in (["failure"], ["error"]) for head in heads.values())
    return final and all(github.comments.get((REPO, number)) for number in heads)
