"""Shared helpers for the platform tests: definitions on a throwaway instance with a chosen store."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import dagster as dg
import pytest
import requests

from oa_dagster.resources.deployments import local_resources
from oa_dagster.resources.sources_repo import EXAMPLES_DIR
from oa_dagster.run_tags import RANGE_END_TAG, RANGE_START_TAG

EXAMPLE_DATA = EXAMPLES_DIR.parent / "data"
ROOT = Path(__file__).resolve().parent.parent


PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


@contextmanager
def throwaway_postgres(prefix: str) -> Iterator[str]:
    """A new database on the machine's PostgreSQL (over TCP), dropped afterwards: its SQLAlchemy URL.

    Raises psycopg2.OperationalError when no server answers.
    """
    import psycopg2

    admin = psycopg2.connect(dbname="postgres", connect_timeout=3, **PG)
    admin.autocommit = True
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@contextmanager
def postgres_or_skip(prefix: str) -> Iterator[str]:
    """`throwaway_postgres`, or the test is skipped where no server answers (never in CI, which starts one)."""
    import psycopg2

    with ExitStack() as stack:
        try:
            url = stack.enter_context(throwaway_postgres(prefix))
        except psycopg2.OperationalError:
            if os.environ.get("CI"):
                raise
            pytest.skip("no PostgreSQL on 127.0.0.1:5432")
        yield url


def copy_examples(dest: Path) -> Path:
    """A writable copy of the bundled example sources and data, keeping their relative layout."""
    shutil.copytree(EXAMPLES_DIR.parent, dest / "examples")
    return dest / "examples" / "sources"


def write_source(sources: Path, key: str, layers: dict[str, list[dict[str, Any]]]) -> Path:
    path = sources / f"{key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"schema": 2, "coverage": {"ISO 3166": {"alpha2": "US-CA"}, "country": "us"}, "layers": layers}
    path.write_text(json.dumps(data, indent=1))
    return path


def csv_entry(name: str, data: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "protocol": "http",
        "data": data,
        "conform": {"format": "csv", "lon": "lon", "lat": "lat", "number": "num", "street": "street"},
        **extra,
    }


def city_sources(tmp: Path, files: dict[str, str]) -> Path:
    """`tmp/sources` with one addresses entry `city` per source key, reading the CSV `tmp/<file>`."""
    sources = tmp / "sources"
    for key, file in files.items():
        relative = os.path.relpath(tmp / file, (sources / key).parent)
        write_source(sources, key, {"addresses": [csv_entry("city", relative)]})
    return sources


def write_csv(path: Path, rows: int, *, street: str = "MAIN ST") -> None:
    lines = ["lon,lat,num,street"] + [f"-122.{i:04d},37.{i:04d},{i + 1},{street}" for i in range(rows)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def all_assets() -> list[Any]:
    from oa_dagster.assets.catalog import source_catalog
    from oa_dagster.assets.layers import LAYER_ASSETS

    return [source_catalog, *LAYER_ASSETS]


def materialize_catalog(
    instance: dg.DagsterInstance, resources: dict[str, Any], tags: dict[str, str] | None = None
) -> dg.ExecuteInProcessResult:
    from oa_dagster.assets.catalog import source_catalog

    return dg.materialize(
        [source_catalog], instance=instance, resources=resources, tags=tags or {}, selection=[source_catalog]
    )


def materialize_range(
    instance: dg.DagsterInstance,
    resources: dict[str, Any],
    layer: str,
    start: str,
    end: str,
    tags: dict[str, str] | None = None,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        all_assets(),
        instance=instance,
        resources=resources,
        selection=[layer],
        tags={RANGE_START_TAG: start, RANGE_END_TAG: end, **(tags or {})},
        raise_on_error=False,
    )


def partition_status(instance: dg.DagsterInstance, layer: str, keys: list[str]) -> dict[str, dg.AssetPartitionStatus]:
    """What the UI shows for each of a layer's partitions (materialized, failed, ...)."""
    return dict(instance.get_status_by_partition(dg.AssetKey(layer), keys, dg.DynamicPartitionsDefinition(name=layer)))


def local(tmp: Path, sources: Path | None = None, **settings: Any) -> dict[str, Any]:
    return local_resources(tmp / "data", sources, preview=settings.pop("preview", False), **settings)


def local_instance_home(home: Path) -> Path:
    """A DAGSTER_HOME with deploy/local/dagster.yaml (queued runs, run monitoring, crash retries)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text((ROOT / "deploy" / "local" / "dagster.yaml").read_text())
    return home


def create_instance_storage(home: Path, env: dict[str, str] | None = None) -> None:
    """Open the instance at `home` once in this process, so its storages exist (tables created, alembic stamped)
    before any Dagster process starts on it. Every helper that starts one calls this first: two processes opening
    a new SQLite instance at the same moment both create and stamp it, and one of them fails with alembic's
    `CommandError` (a daemon that dies that way never launches a run; the test then times out waiting).
    `env` is what the processes get (a Postgres instance reads its database from it)."""
    with mock.patch.dict(os.environ, env or {}), dg.DagsterInstance.from_config(str(home)):
        pass


def production_instance_home(home: Path) -> Path:
    """A DAGSTER_HOME with deploy/production/dagster.yaml less its run launcher: runs here go through the default
    launcher (the code server starts each run's process); the ECS launcher has tests of its own."""
    import yaml

    config = yaml.safe_load((ROOT / "deploy" / "production" / "dagster.yaml").read_text())
    config.pop("run_launcher", None)
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return home


@contextmanager
def running_daemon(home: Path, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`dagster-daemon run` on the workspace with DAGSTER_HOME=`home`; its process group is killed at the end.

    The daemon starts a code server, which starts run workers: all in one new session, so one killpg ends them.
    """
    create_instance_storage(home, env)
    daemon = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w", str(ROOT / "workspace.yaml")],
        cwd=ROOT,
        start_new_session=True,
        env={**os.environ, **env, "DAGSTER_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    try:
        yield daemon
    finally:
        with contextlib.suppress(ProcessLookupError):  # a test may have killed it already
            os.killpg(daemon.pid, signal.SIGKILL)
        daemon.wait()


@contextmanager
def running_serve(env: dict[str, str], log: Path) -> Iterator[str]:
    """`oa-dagster serve` as its own process with `env` (on top of this one's): its base URL once `/hook` answers
    (401 unsigned, or 503 without a secret). Its process group is killed at the end."""
    with serve_process(env, log) as (base, _):
        yield base


@contextmanager
def serve_process(
    env: dict[str, str], log: Path, port: int | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`running_serve`, also giving the process (a test may kill it sooner), on `port` if given: a killed server's,
    to restart it where its clients send."""
    port = port or free_port()
    serve = subprocess.Popen(
        [sys.executable, "-m", "oa_dagster.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, **env},
        start_new_session=True,
        stdout=log.with_suffix(".out").open("wb"),
        stderr=log.open("wb"),
    )
    base = f"http://127.0.0.1:{port}"

    def answering() -> bool:
        assert serve.poll() is None, log.read_text()[-2000:]
        try:
            return requests.post(f"{base}/hook", data=b"{}", timeout=2).status_code in (401, 503)
        except requests.ConnectionError:
            return False

    try:
        wait_for("oa-dagster serve", answering, 60)
        yield base, serve
    finally:
        with contextlib.suppress(ProcessLookupError):  # killed by the test already
            os.killpg(serve.pid, signal.SIGKILL)
        serve.wait()


def wait_for(what: str, predicate: Callable[[], Any], timeout: float, log: Path | None = None) -> Any:
    """Poll until `predicate()` returns something truthy (bounded: a stuck daemon fails the test, not CI); the
    end of `log` (the daemon's) is in the message when it times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


GraphQL = Callable[..., dict[str, Any]]  # graphql(query, **variables) -> the answer's "data"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def post_graphql(base: str, query: str, **variables: Any) -> dict[str, Any]:
    """The answer's "data" from the Dagster GraphQL API at `base`; an error answer fails the test."""
    answer = requests.post(f"{base}/graphql", json={"query": query, "variables": variables}, timeout=60)
    assert answer.ok and "errors" not in answer.json(), answer.text
    return answer.json()["data"]


def wait_for_dagster_server(base: str, process: subprocess.Popen[Any], timeout: float = 120) -> None:
    """Until the Dagster webserver at `base` answers, `process` exits, or `timeout` (bounded: a server that never
    comes up fails the caller's check that `process` still runs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if requests.get(f"{base}/server_info", timeout=2).ok:
                return
        except requests.ConnectionError:
            time.sleep(0.5)


@contextmanager
def running_webserver_url(home: Path, env: dict[str, str], log: Path) -> Iterator[str]:
    """`dagster-webserver` on the workspace with DAGSTER_HOME=`home`: its base URL (what a browser opens). Its
    process group (with its code server) is killed at the end."""
    create_instance_storage(home, env)
    port = free_port()
    web = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("dagster-webserver")),
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=ROOT,
        start_new_session=True,
        env={**os.environ, **env, "DAGSTER_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_dagster_server(base, web)
        assert web.poll() is None, log.read_text()[-3000:]
        yield base
    finally:
        os.killpg(web.pid, signal.SIGKILL)
        web.wait()


@contextmanager
def running_webserver(home: Path, env: dict[str, str], log: Path) -> Iterator[GraphQL]:
    """The same, as a function posting to its GraphQL API, which is what the UI reads and sends."""
    with running_webserver_url(home, env, log) as base:

        def graphql(query: str, **variables: Any) -> dict[str, Any]:
            return post_graphql(base, query, **variables)

        yield graphql
