"""A fault-injecting HTTP proxy in front of an S3 server (moto): it forwards every request, except that during an
outage it answers the matching ones 503 with S3's own error XML, the way S3 does when it sheds load.

An outage lasts a number of seconds, or a number of requests (deterministic under any load: the client's backoff is
random), and can wait for a first request matching a pattern before it starts (so a fault can open in the middle
of a publish). Every request is kept in `seen` with the status it got, so a test can count the retries.
"""

from __future__ import annotations

import http.client
import re
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

WRITES = frozenset({"PUT", "POST", "DELETE"})
EVERYTHING = frozenset({"GET", "HEAD", "PUT", "POST", "DELETE"})
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


@dataclass
class Outage:
    """Which requests fail (`methods`, and `path` a regex searched in the request path) and for how long: `seconds`
    from its start, or the next `requests` matching ones. With `starts_at` (a regex) it opens at the first matching
    request whose path matches it, which is the first one it fails."""

    methods: frozenset[str] = EVERYTHING
    path: str = ""
    seconds: float | None = None
    requests: int | None = None
    starts_at: str | None = None
    code: str = "ServiceUnavailable"  # or SlowDown: both are S3's 503s
    started: float | None = None  # monotonic time it opened
    failed: int = 0

    def matches(self, method: str, path: str) -> bool:
        return method in self.methods and re.search(self.path, path) is not None

    def fails(self, method: str, path: str) -> bool:
        """Whether this request gets a 503 (counting it); opens the outage when its start is met."""
        if not self.matches(method, path):
            return False
        if self.started is None:
            if self.starts_at is not None and re.search(self.starts_at, path) is None:
                return False
            self.started = time.monotonic()
        if self.over():
            return False
        self.failed += 1
        return True

    def over(self) -> bool:
        if self.started is None:
            return False
        if self.requests is not None:
            return self.failed >= self.requests
        return self.seconds is not None and time.monotonic() - self.started >= self.seconds


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    status: int


def error_xml(code: str, path: str) -> bytes:
    message = "Please reduce your request rate." if code == "SlowDown" else "Service is unable to handle request."
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message><Resource>{path}</Resource>"
        "<RequestId>fault-proxy</RequestId></Error>"
    ).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: S3FaultProxy

    def log_message(self, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            body = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    return bytes(body)
                body += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def _handle(self) -> None:
        body = self._body()
        path = urlsplit(self.path).path
        outage = self.server.outage
        with self.server.lock:
            failing = outage is not None and outage.fails(self.command, path)
        if failing:
            assert outage is not None
            self._answer(503, error_xml(outage.code, path), {"Content-Type": "application/xml"})
        else:
            status, headers, answer = self.server.forward(self.command, self.path, self.headers, body)
            self._answer(status, answer, headers)
        with self.server.lock:
            self.server.seen.append(Seen(self.command, path, 503 if failing else status))

    def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _handle


class S3FaultProxy(ThreadingHTTPServer):
    """`url` forwards to `upstream` (an S3 endpoint) unless `outage` says otherwise; `seen` is every request."""

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = urlsplit(upstream)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.lock = threading.Lock()
        self.outage: Outage | None = None
        self.seen: list[Seen] = []
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if not isinstance(exc, ConnectionError | TimeoutError):
            super().handle_error(request, client_address)

    def fail(self, outage: Outage) -> Outage:
        """Start (or arm, with `starts_at`) an outage; it replaces any earlier one."""
        with self.lock:
            self.outage = outage
        return outage

    def forward(self, method: str, target: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=60)
        try:
            sent = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"}
            sent["Content-Length"] = str(len(body))
            connection.request(method, target, body=body, headers=sent)  # Host kept: the signature covers it
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def statuses(self, method: str, path: str) -> list[int]:
        """What every request `method` with a path matching the regex `path` got, in order."""
        with self.lock:
            return [s.status for s in self.seen if s.method == method and re.search(path, s.path)]

    def start(self) -> S3FaultProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
