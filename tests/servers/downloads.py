"""A local HTTP server for download tests: redirects, Content-Disposition, ETag/304, Retry-After, slow,
dripping, held (a server that hangs until the test lets it answer) and truncated responses. Each route counts its
hits and keeps the request headers it saw."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Route:
    body: bytes = b""
    content_type: str | None = "application/octet-stream"
    headers: dict[str, str] = field(default_factory=dict)
    statuses: list[int] = field(default_factory=list)  # served (empty body) before the real response
    retry_after: str | None = None  # sent with 429/503 statuses
    etag: str | None = None  # answers 304 to a matching If-None-Match
    last_modified: str | None = None  # answers 304 to an equal If-Modified-Since
    redirect: str | None = None  # 302 to this path
    delay: float = 0.0  # seconds before the response headers
    hold: threading.Event | None = None  # GETs wait for it before answering (never set: a server that hangs)
    stall: float = 0.0  # seconds between the first half of the body and the rest
    truncate: int = 0  # first N responses: half the body (or `cut_at` bytes), then the connection closes
    cut_at: int | None = None
    drip: float = 0.0  # seconds between `drip_bytes`-byte pieces of the body (a server that trickles)
    drip_bytes: int = 1
    status: int = 200
    ignore_conditional: bool = False  # answers 200 with the body whatever If-None-Match / If-Modified-Since say
    hits: int = 0  # GET requests
    heads: int = 0  # HEAD requests (headers of the GET answer, no body)
    bytes_sent: int = 0  # body bytes of GET answers
    seen_headers: list[dict[str, str]] = field(default_factory=list)


def drip_body(handler: BaseHTTPRequestHandler, body: bytes, step: int, pause: float) -> None:
    """Send `body` `step` bytes at a time, `pause` seconds apart (a server that trickles), then close."""
    handler.close_connection = True
    try:
        for start in range(0, len(body), step):
            handler.wfile.write(body[start : start + step])
            handler.wfile.flush()
            time.sleep(pause)
    except OSError:  # the client gave up, as it should
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: DownloadServer

    def log_message(self, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self.server.requests.append(f"HEAD {self.path}")
        route = self.server.routes.get(urlsplit(self.path).path)
        if route is None or route.statuses or route.redirect or route.drip:
            self._reply(404 if route is None else 405, b"", head=True)
            return
        route.heads += 1
        if route.delay:
            time.sleep(route.delay)
        self._reply(route.status, route.body, self._headers(route), head=True)

    def _headers(self, route: Route) -> dict[str, str]:
        headers = dict(route.headers)
        if route.content_type:
            headers["Content-Type"] = route.content_type
        if route.etag:
            headers["ETag"] = route.etag
        if route.last_modified:
            headers["Last-Modified"] = route.last_modified
        return headers

    def do_GET(self) -> None:
        self.server.requests.append(f"GET {self.path}")
        route = self.server.routes.get(urlsplit(self.path).path)
        if route is None:
            self._reply(404, b"not found")
            return
        route.hits += 1
        route.seen_headers.append(dict(self.headers.items()))
        if route.hold is not None:
            route.hold.wait(timeout=900)  # bounded: a forgotten hold ends with the test session, not never
        if route.delay:
            time.sleep(route.delay)
        if route.statuses:
            status = route.statuses.pop(0)
            extra = {"Retry-After": route.retry_after} if route.retry_after and status in (429, 503) else {}
            self._reply(status, b"try later", extra)
            return
        if route.redirect:
            self._reply(302, b"", {"Location": route.redirect})
            return
        if not route.ignore_conditional and (
            (route.etag and self.headers.get("If-None-Match") == route.etag)
            or (route.last_modified and self.headers.get("If-Modified-Since") == route.last_modified)
        ):
            self._reply(304, b"")
            return
        headers = self._headers(route)
        route.bytes_sent += len(route.body)
        truncate = route.truncate > 0
        route.truncate -= truncate
        if route.drip:
            self._drip(route, headers)
            return
        self._reply(route.status, route.body, headers, truncate=truncate, stall=route.stall, cut_at=route.cut_at)

    def _drip(self, route: Route, headers: dict[str, str]) -> None:
        self.send_response(route.status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(route.body)))
        self.end_headers()
        drip_body(self, route.body, route.drip_bytes, route.drip)

    def _reply(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        *,
        truncate: bool = False,
        stall: float = 0.0,
        cut_at: int | None = None,
        head: bool = False,
    ) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)) if status != 304 else "0")
        self.end_headers()
        if status == 304 or head:
            return
        half = cut_at if truncate and cut_at is not None else len(body) // 2
        self.wfile.write(body[:half])
        self.wfile.flush()
        if truncate:
            self.close_connection = True
            return
        if stall:
            time.sleep(stall)
        self.wfile.write(body[half:])


class DownloadServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes: dict[str, Route] = {}
        self.requests: list[str] = []  # every request, routed or not ("GET /path?query")
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that stops reading (a probe closing a 200 it does not want) is no server error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def route(self, path: str, **kwargs: Any) -> Route:
        self.routes[path] = Route(**kwargs)
        return self.routes[path]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def start(self) -> DownloadServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
