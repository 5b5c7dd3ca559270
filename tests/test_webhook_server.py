"""The web app's server limits over real sockets: header bytes, header and body deadlines, the connection cap (with
`/health` and signed deliveries still served), and the memory of `oa-dagster serve` under oversized headers."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from oa_dagster.platform.store import LocalStore
from oa_dagster.webhook.app import create_app
from oa_dagster.webhook.deliveries import DeliveryStore
from oa_dagster.webhook.hooks import hook_routes
from oa_dagster.webhook.server import ServerLimits
from tests.ci_deliveries import SECRET, Receiver, pr_payload
from tests.platform_helpers import free_port, wait_for
from tests.servers.apps import AppServers

WAIT = 15.0  # a socket read that waits longer means the server held the connection: the test fails


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Receiver]]:
    """The web app with `/hook` on SQLite, served with the given limits on a free port."""
    servers = AppServers()
    stores: list[DeliveryStore] = []

    def run(**limits: Any) -> Receiver:
        store = DeliveryStore(f"sqlite:///{tmp_path}/webhook.db", maintenance_cache_seconds=0)
        stores.append(store)
        app = create_app(LocalStore(tmp_path / "data"), hooks=hook_routes(store, [SECRET]))
        return Receiver(servers.start(app, ServerLimits(**limits)), store)

    yield run
    servers.stop_all()
    for store in stores:
        store.close()


def connect(base: str) -> socket.socket:
    parts = urlsplit(base)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=WAIT)
    return sock


def answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (b"" for a reset); a server that keeps the
    connection open past `WAIT` raises `TimeoutError`."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def drip(sock: socket.socket, pieces: int, piece: bytes, every: float = 0.2) -> int:
    """Send `piece` `pieces` times, `every` seconds apart, until the server closes; returns how many were sent."""
    for sent in range(pieces):
        try:
            sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            return sent
        sock.settimeout(every)
        try:
            sock.recv(1, socket.MSG_PEEK)  # returns once the server answered or closed: stop dripping
            return sent + 1
        except TimeoutError:
            pass
        except ConnectionResetError:
            return sent + 1
        finally:
            sock.settimeout(WAIT)
    return pieces


def test_oversize_headers_are_refused_with_431_and_the_connection_closed(start: Callable[..., Receiver]) -> None:
    receiver = start(max_header_bytes=16 * 1024)
    with connect(receiver.base) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the server may close before the end
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1024 * 1024))
        got = answer(sock)
    assert got == b"" or got.startswith(b"HTTP/1.1 431 "), got[:200]
    # headers under the cap are fine, and the server is still answering
    assert requests.get(f"{receiver.base}/health", headers={"X-Ok": "a" * 8000}, timeout=WAIT).status_code == 200


def test_headers_dripped_slowly_get_408_and_the_connection_closed(start: Callable[..., Receiver]) -> None:
    receiver = start(header_seconds=1)
    with connect(receiver.base) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        sent = drip(sock, 50, b"X-Drip: 1\r\n")  # 10 s of dripping if nobody stops it
        got = answer(sock)
    assert sent < 50 and got.startswith(b"HTTP/1.1 408 "), (sent, got[:200])
    assert b"headers did not arrive in time" in got


def test_a_connection_that_sends_nothing_is_closed(start: Callable[..., Receiver]) -> None:
    receiver = start(header_seconds=1)
    with connect(receiver.base) as sock:
        got = answer(sock)
    assert got.startswith(b"HTTP/1.1 408 ")


def test_an_idle_keep_alive_connection_is_closed(start: Callable[..., Receiver]) -> None:
    receiver = start(keep_alive_seconds=1, header_seconds=60)
    with connect(receiver.base) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        got = answer(sock)  # the answer, then the server's close once the connection sat idle
    assert got.startswith(b"HTTP/1.1 200 ") and got.count(b"HTTP/1.1 ") == 1


def test_a_body_dripped_slowly_gets_408_and_is_not_recorded(start: Callable[..., Receiver]) -> None:
    receiver = start(body_seconds=1)
    body = b'{"zen": "dripped"}' + b" " * 100
    with connect(receiver.base) as sock:
        sock.sendall(
            b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-GitHub-Event: ping\r\n"
            b"X-GitHub-Delivery: dripped-1\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        sent = drip(sock, len(body), b" ")
        got = answer(sock)
    assert sent < len(body) and got.startswith(b"HTTP/1.1 408 "), (sent, got[:200])
    assert b"body did not arrive in time" in got
    assert receiver.store is not None and receiver.store.count() == 0


def test_idle_connections_over_the_cap_are_dropped_while_health_and_deliveries_are_served(
    start: Callable[..., Receiver],
) -> None:
    receiver = start(max_connections=16)
    idle = []
    for number in range(120):  # half send nothing, half a request line and stop
        sock = connect(receiver.base)
        if number % 2:
            sock.sendall(b"GET /health HTTP/1.1\r\n")
        idle.append(sock)
    try:
        assert requests.get(f"{receiver.base}/health", timeout=WAIT).status_code == 200
        delivered = receiver.post("pull_request", pr_payload("opened"))
        assert delivered.status_code == 200 and delivered.json()["status"] == "recorded", delivered.text
        assert receiver.store is not None and receiver.store.count() == 1
        closed = 0
        for sock in idle:
            sock.settimeout(0.5)
            try:
                closed += sock.recv(1) == b""
            except ConnectionResetError:
                closed += 1
            except TimeoutError:
                pass
        assert closed >= len(idle) - 16, f"only {closed} of {len(idle)} idle connections were dropped"
    finally:
        for sock in idle:
            sock.close()


def _rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))


def test_serve_memory_stays_flat_under_oversized_headers(tmp_path: Path) -> None:
    """`oa-dagster serve` as deployed: six connections each sending 32 MiB of headers grow it by far less than
    the 192 MiB sent (each is cut off at the header cap)."""
    port = free_port()
    env = {**os.environ, "OA_ENV": "local", "OA_DATA_DIR": str(tmp_path / "data"), "OA_WORK_DIR": str(tmp_path)}
    env.pop("OA_WEBHOOK_SECRET", None)
    serve = subprocess.Popen(
        [sys.executable, "-m", "oa_dagster.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "serve.log").open("wb"),
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def answering() -> bool:
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
            try:
                return requests.get(f"{base}/health", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for("oa-dagster serve", answering, 60)
        before = _rss_kib(serve.pid)
        chunk = b"a" * (1024 * 1024)
        socks = [connect(base) for _ in range(6)]
        for sock in socks:
            try:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ")
                for _ in range(32):
                    sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass
        time.sleep(0.5)  # let the server take whatever it is going to take
        grown_mib = (_rss_kib(serve.pid) - before) / 1024
        for sock in socks:
            sock.close()
        assert grown_mib < 48, f"serve grew by {grown_mib:.0f} MiB for 192 MiB of headers"
        assert requests.get(f"{base}/health", timeout=WAIT).status_code == 200
    finally:
        os.killpg(serve.pid, signal.SIGKILL)
        serve.wait()
