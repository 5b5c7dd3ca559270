"""ASGI apps under uvicorn in a thread, on a free port: what the web app's tests talk to over real HTTP."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

from oa_dagster.webhook.server import ServerLimits, bounded_server


class AppServers:
    """Starts apps on free ports and stops every one of them at `stop_all()` (a fixture's teardown)."""

    def __init__(self) -> None:
        self.running: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(self, app: Any, limits: ServerLimits = ServerLimits()) -> str:
        """Serve `app` as `oa-dagster serve` does, with `limits`, until `stop_all()`; returns its base URL once it
        accepts connections."""
        server = bounded_server(app, limits=limits, log_level="warning")
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        self.running.append((server, thread))
        port = server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def stop_all(self) -> None:
        for server, thread in self.running:
            server.should_exit = True
            thread.join(timeout=10)
