"""The catalog read from the GitHub API: one archive download per ref, served by a local fake API."""

from __future__ import annotations

import io
import json
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest

from oa_dagster.resources.sources_repo import SourcesRepository
from tests.platform_helpers import csv_entry, local, materialize_catalog

SHA = "0123456789abcdef0123456789abcdef01234567"


def _tarball() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT, pax_headers={"comment": SHA}) as tar:
        top = f"openaddresses-openaddresses-{SHA[:7]}"
        files = {
            f"{top}/sources/us/xx/a.json": {
                "schema": 2,
                "coverage": {"country": "us"},
                "layers": {"addresses": [csv_entry("city", "https://x.test/a.csv")]},
            },
            f"{top}/sources/us/xx/bad.json": {"schema": 2, "layers": {}},
            f"{top}/README.md": None,
        }
        for name, data in files.items():
            raw = json.dumps(data).encode() if data is not None else b"readme"
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return buffer.getvalue()


@pytest.fixture
def github_api() -> Iterator[tuple[str, list[str]]]:
    requests: list[str] = []
    body = _tarball()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            requests.append(self.path)
            if self.path == "/repos/openaddresses/openaddresses/tarball/master":
                self.send_response(200)
                self.send_header("Content-Type", "application/x-gzip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", requests
    server.shutdown()


def test_catalog_from_github_downloads_one_archive_and_records_the_commit(github_api, tmp_path: Path) -> None:
    url, requests = github_api
    resources = {**local(tmp_path), "sources_repo": SourcesRepository(kind="github", api_url=url)}
    with dg.instance_for_test() as instance:
        meta = materialize_catalog(instance, resources).asset_materializations_for_node("source_catalog")[0].metadata
        assert meta["commit"].value == SHA
        assert instance.get_dynamic_partitions("addresses") == ["us/xx/a/city"]
        assert "us/xx/bad" in meta["invalid"].value
    assert requests == ["/repos/openaddresses/openaddresses/tarball/master"]
