"""A local FTP server (pyftpdlib) serving one directory anonymously and to user `alice`."""

from __future__ import annotations

import threading
from pathlib import Path

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import ThreadedFTPServer

USER, PASSWORD = "alice", "s3cret"


class FTPTestServer:
    def __init__(self, root: Path, *, anonymous: bool = True) -> None:
        self.root = root
        authorizer = DummyAuthorizer()
        authorizer.add_user(USER, PASSWORD, str(root), perm="elr")
        if anonymous:
            authorizer.add_anonymous(str(root))
        handler = type("Handler", (FTPHandler,), {"authorizer": authorizer, "banner": "test ftp"})
        handler.masquerade_address = None
        handler.auth_failed_timeout = 0.05
        self.server = ThreadedFTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"timeout": 0.1},
                                       daemon=True)

    @property
    def port(self) -> int:
        return self.server.address[1]

    def url(self, path: str, *, user: str | None = None, password: str | None = None) -> str:
        auth = f"{user}:{password}@" if user else ""
        return f"ftp://{auth}127.0.0.1:{self.port}/{path.lstrip('/')}"

    def start(self) -> FTPTestServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.close_all()
