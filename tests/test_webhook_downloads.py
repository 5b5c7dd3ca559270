"""The web app's download URLs over real HTTP: uvicorn in a thread, a moto S3 server, a local store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
import uvicorn
from starlette.applications import Starlette

from oa_dagster.cli import main
from oa_dagster.platform import store_layout as layout
from oa_dagster.platform.store import LocalStore, OutputStore, S3Store, put_json
from oa_dagster.webhook.app import create_app
from oa_dagster.webhook.server import BoundedH11Protocol
from tests.servers.apps import AppServers
from tests.servers.fixtures import moto_bucket

ENTRY = "us/ca/example/city"
OUTPUT = f"runs/addresses/{ENTRY}/r1/out.geojson"
STATE = f"runs/addresses/{ENTRY}/r1/state.json"
DATA = b'{"type":"Feature","properties":{"number":"1"},"geometry":null}\n' * 100


@pytest.fixture
def serve() -> Iterator[Callable[[Starlette], str]]:
    """Start an app on a free port; returns its base URL. Every server started is stopped at the end."""
    servers = AppServers()
    yield servers.start
    servers.stop_all()


def _publish(store: OutputStore) -> None:
    """A run's files and the latest good pointer to them, as `publish_run` leaves them."""
    store.put_bytes(OUTPUT, DATA)
    store.put_bytes(STATE, b'{"layer": "addresses"}\n')
    put_json(
        store,
        layout.latest_key("addresses", ENTRY),
        {
            "partition_key": ENTRY,
            "layer": "addresses",
            "run_id": "r1",
            "prefix": f"runs/addresses/{ENTRY}/r1",
            "files": {"output": OUTPUT, "state": STATE},
            "sizes": {"output": len(DATA)},
            "feature_count": 100,
        },
    )


def _s3_store(url: str, bucket: str) -> S3Store:
    return moto_bucket(url, bucket, download_url="https://oa.example.org/download")


def test_s3_download_redirects_to_a_fresh_presigned_url(moto_url: str, serve: Callable[[Starlette], str]) -> None:
    store = _s3_store(moto_url, "downloads")
    _publish(store)
    base = serve(create_app(store, presign_seconds=600))

    first = requests.get(f"{base}/download/{OUTPUT}", allow_redirects=False, timeout=10)
    assert first.status_code == 307 and first.headers["Cache-Control"] == "no-store"
    location = first.headers["Location"]
    assert location.startswith(f"{moto_url}/downloads/oa/{OUTPUT}?")
    assert "X-Amz-Signature" in location or "Signature=" in location
    assert requests.get(location, timeout=10).content == DATA
    assert requests.get(f"{base}/download/{OUTPUT}", timeout=10).content == DATA  # followed by requests

    head = requests.head(f"{base}/download/{OUTPUT}", allow_redirects=False, timeout=10)
    assert head.status_code == 307 and head.headers["Location"].startswith(f"{moto_url}/downloads/oa/{OUTPUT}?")

    missing = requests.get(f"{base}/download/runs/addresses/nope/out.geojson", allow_redirects=False, timeout=10)
    assert missing.status_code == 404 and "runs/addresses/nope/out.geojson" in missing.text
    # the URL the store records in metadata is this app's route for the same key
    assert store.url(OUTPUT) == f"https://oa.example.org/download/{OUTPUT}"


def test_s3_latest_redirects_twice_to_the_output(moto_url: str, serve: Callable[[Starlette], str]) -> None:
    store = _s3_store(moto_url, "latest")
    _publish(store)
    base = serve(create_app(store))
    response = requests.get(f"{base}/latest/addresses/{ENTRY}", timeout=10)
    assert response.status_code == 200 and response.content == DATA
    assert [r.status_code for r in response.history] == [307, 307]


def test_local_store_serves_the_file(tmp_path: Path, serve: Callable[[Starlette], str]) -> None:
    store = LocalStore(tmp_path / "data")
    _publish(store)
    base = serve(create_app(store))

    response = requests.get(f"{base}/download/{OUTPUT}", allow_redirects=False, timeout=10)
    assert response.status_code == 200 and response.content == DATA
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"] == "sandbox" and "Cache-Control" not in response.headers
    head = requests.head(f"{base}/download/{OUTPUT}", timeout=10)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(DATA) and head.content == b""
    pointer = requests.get(f"{base}/download/{layout.latest_key('addresses', ENTRY)}", timeout=10)
    assert pointer.json()["files"]["output"] == OUTPUT and pointer.headers["Cache-Control"] == "no-cache"

    health = requests.get(f"{base}/health", timeout=10)
    assert health.json() == {"ok": True, "store": str(tmp_path / "data")}


def test_latest_redirects_to_the_pointer_files(tmp_path: Path, serve: Callable[[Starlette], str]) -> None:
    store = LocalStore(tmp_path / "data")
    _publish(store)
    base = serve(create_app(store))

    response = requests.get(f"{base}/latest/addresses/{ENTRY}", allow_redirects=False, timeout=10)
    assert response.status_code == 307 and response.headers["Location"] == f"/download/{OUTPUT}"
    assert response.headers["Cache-Control"] == "no-store"
    state = requests.get(f"{base}/latest/addresses/{ENTRY}?file=state", allow_redirects=False, timeout=10)
    assert state.headers["Location"] == f"/download/{STATE}"
    assert requests.head(f"{base}/latest/addresses/{ENTRY}", timeout=10).status_code == 307
    assert requests.get(f"{base}/latest/addresses/{ENTRY}", timeout=10).content == DATA

    unknown = requests.get(f"{base}/latest/addresses/{ENTRY}?file=preview", timeout=10)
    assert unknown.status_code == 404 and "output, state" in unknown.text
    none = requests.get(f"{base}/latest/parcels/{ENTRY}", timeout=10)
    assert none.status_code == 404 and "no good output" in none.text
    assert requests.get(f"{base}/latest/roads/{ENTRY}", timeout=10).status_code == 404
    assert requests.get(f"{base}/latest/addresses/us/%2E%2E/city", timeout=10).status_code == 400


def test_bad_and_unserved_keys(tmp_path: Path, serve: Callable[[Starlette], str]) -> None:
    store = LocalStore(tmp_path / "data")
    _publish(store)
    (tmp_path / "secret.txt").write_text("outside the store")
    store.put_bytes(layout.held_key("addresses", ENTRY), b"{}")
    base = serve(create_app(store))

    def get(path: str) -> requests.Response:
        return requests.get(base + path, allow_redirects=False, timeout=10)

    missing = get("/download/runs/addresses/us/ca/none/out.geojson")
    assert missing.status_code == 404 and "runs/addresses/us/ca/none/out.geojson" in missing.text
    assert get(f"/download/{layout.held_key('addresses', ENTRY)}").status_code == 404  # not a served prefix
    assert get("/download/other.txt").status_code == 404
    assert get(f"/download/runs/addresses/{ENTRY}").status_code == 404  # a directory
    (store.path(OUTPUT).parent / ".tmp-abc").write_bytes(b"half")
    assert get(f"/download/runs/addresses/{ENTRY}/r1/.tmp-abc").status_code == 404  # a write in progress
    for bad in (
        "/download/runs/%2E%2E/%2E%2E/secret.txt",
        "/download/%2E%2E/secret.txt",
        "/download//runs/x",
        "/download/runs//x",
        "/download/runs/%2E/x",
        "/download/",
    ):
        response = get(bad)
        assert response.status_code == 400 and response.text.startswith("bad key"), bad


def test_presign_lifetime_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="presign seconds"):
        create_app(LocalStore(tmp_path), presign_seconds=8 * 24 * 3600)


def test_serve_command(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--help"])
    assert exit_info.value.code == 0 and "--presign-seconds" in capsys.readouterr().out

    calls: list[uvicorn.Config] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda server, sockets=None: calls.append(server.config))
    monkeypatch.setenv("OA_ENV", "local")
    monkeypatch.setenv("OA_DATA_DIR", str(tmp_path / "data"))
    assert main(["serve", "--port", "9999"]) == 0
    assert [(config.host, config.port) for config in calls] == [("127.0.0.1", 9999)]
    assert issubclass(calls[0].http, BoundedH11Protocol)  # the bounded server, with its limits
    assert str(tmp_path / "data") in capsys.readouterr().out
    assert main(["serve", "--presign-seconds", "0"]) == 2
    assert "presign seconds" in capsys.readouterr().err


def test_a_store_that_refuses_is_a_502_not_a_404(moto_url: str, serve: Callable[[Starlette], str]) -> None:
    from botocore.stub import Stubber

    store = _s3_store(moto_url, "refusing")
    base = serve(create_app(store))
    with Stubber(store.client) as stub:  # the bucket's policy now denies this role
        stub.add_client_error("head_object", service_error_code="AccessDenied", http_status_code=403)
        stub.add_client_error("get_object", service_error_code="AccessDenied", http_status_code=403)
        denied = requests.get(f"{base}/download/{OUTPUT}", allow_redirects=False, timeout=10)
        assert denied.status_code == 502 and "AccessDenied" in denied.text
        pointer = requests.get(f"{base}/latest/addresses/{ENTRY}", allow_redirects=False, timeout=10)
        assert pointer.status_code == 502 and "AccessDenied" in pointer.text
    assert requests.get(f"{base}/download/{OUTPUT}", allow_redirects=False, timeout=10).status_code == 404


def test_over_long_keys_are_refused_with_400_before_the_store_is_asked(
    tmp_path: Path, moto_url: str, serve: Callable[[Starlette], str]
) -> None:
    """A 6 KB key made the local store fail (file name too long) and S3 refuse it (KeyTooLongError): a 502."""
    for store in (LocalStore(tmp_path / "data"), _s3_store(moto_url, "long-keys")):
        _publish(store)
        base = serve(create_app(store))
        long_key = "runs/addresses/" + "/".join(["x" * 200] * 30) + "/out.geojson"  # 6 KB
        response = requests.get(f"{base}/download/{long_key}", allow_redirects=False, timeout=10)
        assert response.status_code == 400, (store.describe(), response.text)
        assert "over the 1,024-byte limit" in response.text and "bad key" in response.text
        head = requests.head(f"{base}/download/{long_key}", allow_redirects=False, timeout=10)
        assert head.status_code == 400
        segment = requests.get(f"{base}/download/runs/addresses/{'y' * 300}/out.geojson", timeout=10)
        assert segment.status_code == 400 and "300 bytes" in segment.text
        latest = requests.get(f"{base}/latest/addresses/us/ca/{'z' * 2000}", allow_redirects=False, timeout=10)
        assert latest.status_code == 400 and "bad key" in latest.text
        # a long but possible key is still looked up: not there
        near = requests.get(f"{base}/download/runs/addresses/" + "/".join(["w" * 200] * 4), timeout=10)
        assert near.status_code == 404
        assert requests.get(f"{base}/download/{OUTPUT}", timeout=10).content == DATA
