"""A local FTP server (pyftpdlib) serving one directory anonymously and to user `alice`.

Each server owns its IO loop and its stop flag. pyftpdlib's defaults are process-wide: `IOLoop.instance()`
is a singleton and `ThreadedFTPServer._exit` is one class-level Event shared by every server. With those
defaults, stopping one test's server let its `serve_forever` thread wake up later and call `close_all()` a
second time, setting the shared Event while the next test's server was running: that server's session
threads left their loops and dropped the connection (connection reset / EOF at login), so FTP tests
failed at random in a full run. Here the loop runs in our thread, `stop()` ends it, closes everything
from that same thread and waits for it, so nothing of a stopped server outlives `stop()`.
"""

from __future__ import annotations

import threading
from pathlib import Path

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler, ThrottledDTPHandler
from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import ThreadedFTPServer

USER, PASSWORD = "alice", "s3cret"


class FTPTestServer:
    """`write_limit` (bytes/s) throttles file transfers, for the too-slow download tests."""

    def __init__(self, root: Path, *, anonymous: bool = True, write_limit: int = 0) -> None:
        self.root = root
        authorizer = DummyAuthorizer()
        authorizer.add_user(USER, PASSWORD, str(root), perm="elr")
        if anonymous:
            authorizer.add_anonymous(str(root))
        attrs: dict[str, object] = {"authorizer": authorizer, "banner": "test ftp"}
        if write_limit:
            attrs["dtp_handler"] = type("SlowDTP", (ThrottledDTPHandler,), {"write_limit": write_limit})
        handler = type("Handler", (FTPHandler,), attrs)
        handler.masquerade_address = None
        handler.auth_failed_timeout = 0.05
        self.server = ThreadedFTPServer(("127.0.0.1", 0), handler, ioloop=IOLoop())
        self.server._exit = threading.Event()  # not the class-level Event every ThreadedFTPServer shares
        self.server.poll_timeout = 0.05  # session threads notice the stop flag quickly
        self._stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def port(self) -> int:
        return self.server.address[1]

    def url(self, path: str, *, user: str | None = None, password: str | None = None) -> str:
        auth = f"{user}:{password}@" if user else ""
        return f"ftp://{auth}127.0.0.1:{self.port}/{path.lstrip('/')}"

    def _serve(self) -> None:
        try:
            while not self._stopping.is_set():
                self.server.serve_forever(timeout=0.05, blocking=False, handle_exit=False)
        finally:
            self.server.close_all()  # joins the session threads, then closes the listening socket

    def start(self) -> FTPTestServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.thread.join(timeout=10)
