"""Pytest fixtures starting the local fake servers on free 127.0.0.1 ports (register with
`pytest_plugins = ["tests.servers.fixtures"]`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers.arcgis import FakeArcGISServer
from tests.servers.downloads import DownloadServer
from tests.servers.ftp import FTPTestServer
from tests.servers.github import FakeGitHubServer

logging.getLogger("pyftpdlib").setLevel(logging.WARNING)


@pytest.fixture
def arcgis_server() -> Iterator[FakeArcGISServer]:
    server = FakeArcGISServer().start()
    yield server
    server.stop()


@pytest.fixture
def download_server() -> Iterator[DownloadServer]:
    server = DownloadServer().start()
    yield server
    server.stop()


@pytest.fixture
def ftp_root(tmp_path: Path) -> Path:
    root = tmp_path / "ftp-root"
    root.mkdir()
    return root


@pytest.fixture
def ftp_server(ftp_root: Path) -> Iterator[FTPTestServer]:
    server = FTPTestServer(ftp_root).start()
    yield server
    server.stop()


MOTO_CREDS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}


def moto_bucket(url: str, bucket: str, **store_options: Any) -> Any:
    """An `S3Store` under prefix `oa` of a new bucket on the moto server at `url`."""
    import boto3

    from oa_dagster.platform.store import S3Store

    client = boto3.client("s3", endpoint_url=url, region_name="us-east-1", **MOTO_CREDS)
    client.create_bucket(Bucket=bucket)
    return S3Store(client, bucket, "oa", **store_options)


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """moto's S3 server over HTTP; tests create their own buckets (credentials: `MOTO_CREDS`)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


GITHUB_TOKEN = "ghs_test-token-0123456789"


@pytest.fixture
def github_server() -> Iterator[FakeGitHubServer]:
    """A fake GitHub API requiring `GITHUB_TOKEN` as its bearer token."""
    server = FakeGitHubServer(token=GITHUB_TOKEN).start()
    yield server
    server.stop()


# what a public bucket must serve each kind of object as (by suffix), written out rather than read from the code
PUBLIC_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".png": "image/png",
    ".json": "application/json",
    ".zip": "application/zip",
    ".parquet": "application/vnd.apache.parquet",
    ".geojson": "application/x-ndjson",  # GeoJSON lines: one Feature per line
    ".txt": "text/plain; charset=utf-8",
}
