"""What a newcomer meets first, through the command line: quickstart on sources with problems, the download
command's messages, a host that does not resolve, the ignored local folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.platform_helpers import csv_entry, write_csv, write_source

ROOT = Path(__file__).resolve().parent.parent
OA = Path(sys.executable).with_name("oa-dagster")
UNRESOLVABLE = "no-such-host.invalid"  # RFC 2606: never resolves
LOCAL_VARIABLES = ("OA_DATA_DIR", "DAGSTER_HOME", "OA_ENV", "OA_DOWNLOAD_URL", "OA_SOURCES_DIR")


def clean_env() -> dict[str, str]:
    """This machine's environment without the variables that choose a deployment or a store."""
    return {k: v for k, v in os.environ.items() if k not in LOCAL_VARIABLES}


@dataclass
class HeldServer:
    """Answers 503 (retry at once) to every request, but holds the first one until `release` is set."""

    release: threading.Event = field(default_factory=threading.Event)
    released_by_test: bool | None = None
    requests: int = 0
    url: str = ""


@pytest.fixture(scope="module")
def held_server() -> Iterator[HeldServer]:
    state = HeldServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server spelling)
            state.requests += 1
            if state.released_by_test is None:
                state.released_by_test = state.release.wait(30)  # a guard: the test releases it long before
            self.send_response(503)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/held.csv"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()


@dataclass
class Quickstarted:
    cwd: Path
    out: str
    err: str
    code: int


@pytest.fixture(scope="module")
def troubled_quickstart(tmp_path_factory: pytest.TempPathFactory, held_server: HeldServer) -> Quickstarted:
    """`quickstart --sources` on a good source, one whose server answers 503 (holding its first request until the
    good entry's line was printed) and one whose host does not resolve."""
    tmp_path = tmp_path_factory.mktemp("troubled")
    sources = tmp_path / "src" / "sources"
    write_csv(tmp_path / "src" / "data" / "good.csv", 3)
    write_source(sources, "us/ca/a_good", {"addresses": [csv_entry("city", "../../../data/good.csv")]})
    write_source(sources, "us/ca/b_busy", {"addresses": [csv_entry("city", held_server.url)]})
    write_source(sources, "us/ca/c_gone", {"addresses": [csv_entry("city", f"http://{UNRESOLVABLE}/a.csv")]})
    child = subprocess.Popen(
        [str(OA), "quickstart", "--sources", str(sources)],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stderr is not None
    lines = []
    for line in child.stdout:
        lines.append(line)
        if line.startswith("  addresses us/ca/a_good/city: "):
            held_server.release.set()  # the next entry's download may go on: the line came as it happened
    err = child.stderr.read()
    return Quickstarted(tmp_path, "".join(lines), err, child.wait(120))


def test_quickstart_reports_each_entry_as_it_finishes_with_warnings_once_and_no_traceback(
    troubled_quickstart: Quickstarted, held_server: HeldServer
) -> None:
    result = troubled_quickstart
    assert held_server.released_by_test is True, result.out  # the good entry's line came before the busy one ended
    assert result.code == 1, result.out + result.err
    printed = result.out + result.err
    assert "Traceback" not in printed and "Stack Trace" not in printed and "dagster._core" not in printed
    assert "  addresses us/ca/a_good/city: promoted, 3 features" in result.out
    assert (
        f"  addresses us/ca/c_gone/city: failed: Could not download source data: could not resolve host "
        f"{UNRESOLVABLE}" in result.out
    )
    # the busy entry: 5 attempts, then 5 more in the batch's second attempt; each warning is printed once
    assert held_server.requests == 10
    first_retry = f"download attempt 1 of {held_server.url} failed"
    assert printed.count(first_retry) == 1
    assert [line for line in result.out.splitlines() if first_retry in line][0].endswith("(2 times)")
    summary = result.out[result.out.index("\nSummary") :]
    rows = {line.split()[1]: line for line in summary.splitlines()[2:] if line.startswith("  addresses")}
    assert "promoted, 3 features" in rows["us/ca/a_good/city"]
    assert "failed: Could not download source data" in rows["us/ca/b_busy/city"]
    assert f"could not resolve host {UNRESOLVABLE}" in rows["us/ca/c_gone/city"]


def test_quickstart_runs_are_the_named_jobs_and_never_retried_by_a_daemon(troubled_quickstart: Quickstarted) -> None:
    import dagster as dg

    with dg.DagsterInstance.from_config(str(troubled_quickstart.cwd / ".oa-dagster" / "dagster_home")) as instance:
        runs = list(reversed(instance.get_runs()))
    # the catalog, the layer, then one run for the collections of its areas (us/ca: us_west and global) and the
    # coverage job
    assert [run.job_name for run in runs] == ["source_catalog_job", "addresses_job", "collections_job", "coverage_job"]
    # reported in the terminal: the daemon of a later `oa-dagster ui` must not re-run the failed one
    assert {run.tags.get("dagster/max_retries") for run in runs} == {"0"}


def test_download_names_an_unknown_source_a_missing_layer_and_an_entry_without_output(
    troubled_quickstart: Quickstarted,
) -> None:
    def download(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(OA), "download", *args],
            cwd=troubled_quickstart.cwd,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )

    unknown = download("us/ca/nowhere", "--layer", "addresses")
    assert unknown.returncode == 2
    assert "us/ca/nowhere: unknown source: it is not in the current catalog" in unknown.stderr
    assert "choose an entry" not in unknown.stderr
    no_layer = download("us/ca/a_good", "--layer", "parcels")
    assert no_layer.returncode == 2
    assert "us/ca/a_good has no parcels entries (its layers: addresses)" in no_layer.stderr
    no_name = download("us/ca/a_good", "--layer", "addresses", "--name", "county")
    assert (
        no_name.returncode == 2 and "no addresses entry named 'county' (its addresses entries: city)" in no_name.stderr
    )
    failed = download("us/ca/b_busy", "--layer", "addresses")
    assert failed.returncode == 1 and "us/ca/b_busy/city addresses: no good output yet" in failed.stderr
    outside = download("us/../../ca", "--layer", "addresses")
    assert outside.returncode == 2 and "without empty, '.' or '..' parts" in outside.stderr
    assert "Traceback" not in outside.stderr


def test_processing_a_source_whose_host_does_not_resolve_fails_at_once(tmp_path: Path) -> None:
    """Through the CLI: one attempt (no retry warning), and the problem names the host."""
    source = write_source(
        tmp_path / "sources", "us/ca/gone", {"addresses": [csv_entry("city", f"http://{UNRESOLVABLE}/a.csv")]}
    )
    done = subprocess.run(
        [str(OA), "process", str(source), "--layer", "addresses", "--output", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.count("download attempt") == 0, done.stderr
    assert done.stderr.strip().endswith(f"Could not download source data: could not resolve host {UNRESOLVABLE}")


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_the_quickstart_folder_is_ignored_by_git() -> None:
    for path in (".oa-dagster/data/latest/x.json", ".oa-dagster/dagster_home/dagster.yaml"):
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0, path
