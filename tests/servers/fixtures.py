"""Pytest fixtures starting the local fake servers on free 127.0.0.1 ports (register with
`pytest_plugins = ["tests.servers.fixtures"]`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.arcgis import FakeArcGISServer
from tests.servers.downloads import DownloadServer
from tests.servers.ftp import FTPTestServer

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
