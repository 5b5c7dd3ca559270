"""The uvicorn server every command runs the web app with (`oa-dagster serve`, the UI's download app), with limits
on what one client can hold: header bytes, time to send the headers and the body, idle time, and connections.

Uvicorn alone bounds none of the first three with its default protocol (httptools keeps any amount of header
bytes, and no uvicorn protocol times out a request that is still arriving), and its `limit_concurrency` answers
503 to everyone once idle connections fill it. So the server runs uvicorn's h11 protocol with a cap on header
bytes, and `BoundedH11Protocol` adds the deadlines and evicts the least recently active idle connection when the
connection cap is reached, so `/health` and signed deliveries are still served while idle ones are dropped.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from dataclasses import dataclass, replace
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("oa_dagster.webhook.server")

FD_RESERVE = 64  # descriptors left for the database, the store, logs and the listening socket
LOG_EVERY_SECONDS = 10.0  # a flood of slow or idle connections is one warning per period, not one per connection


class _Throttled:
    """One warning per `LOG_EVERY_SECONDS` per kind, saying how many were not logged since the last one."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def warning(self, kind: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -LOG_EVERY_SECONDS) < LOG_EVERY_SECONDS:
            self._skipped[kind] = self._skipped.get(kind, 0) + 1
            return
        skipped = self._skipped.pop(kind, 0)
        self._last[kind] = now
        log.warning(message + (f" (and {skipped} more like it)" if skipped else ""), *args)


_warnings = _Throttled()


@dataclass(frozen=True)
class ServerLimits:
    """What one client may hold. GitHub sends a delivery in well under a second and gives up after 10 s; browsers
    and download tools send a few KiB of headers at once."""

    max_header_bytes: int = 64 * 1024  # request line and headers; over it: 431 and the connection closed
    header_seconds: float = 10.0  # from a request's first byte (or the connection) to the end of its headers
    body_seconds: float = 30.0  # from the end of the headers to the end of the body: 10 MiB at 350 KB/s
    keep_alive_seconds: int = 5  # an idle keep-alive connection is closed after this
    max_connections: int = 256  # open client connections; the least recently active idle one is dropped past it

    def __post_init__(self) -> None:
        if min(self.max_header_bytes, self.header_seconds, self.body_seconds, self.keep_alive_seconds) <= 0:
            raise ValueError(f"every server limit must be positive: {self}")
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, not {self.max_connections}")


def connection_cap(wanted: int) -> int:
    """`wanted`, lowered so that the connections fit the process's descriptor limit with a reserve left over."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - FD_RESERVE))


def _timeout_response(phase: str) -> bytes:
    body = f"the request {phase} did not arrive in time\n".encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


class BoundedH11Protocol(H11Protocol):
    """Uvicorn's h11 protocol with a deadline for each request's headers and body (408, then closed), 431 for
    headers over the cap, and eviction of idle connections when the server holds `max_connections`.

    A connection is idle while no request of it is in the app: waiting for a first request, between keep-alive
    requests, or still sending headers. A request in the app is never cut short by eviction.
    """

    limits: ServerLimits = ServerLimits()  # set on the subclass `bounded_server` makes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._phase: str | None = None  # "headers" or "body" while a deadline runs
        self.last_active = time.monotonic()

    # -- the connection cap --------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm("headers", self.limits.header_seconds)
        excess = len(self.connections) - self.limits.max_connections
        if excess > 0:
            self._evict(excess)

    def is_idle(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _evict(self, count: int) -> None:
        """Drop the `count` least recently active idle connections; this new one if none is idle."""
        idle = sorted(
            (c for c in self.connections if isinstance(c, BoundedH11Protocol) and c.is_idle() and c is not self),
            key=lambda c: c.last_active,
        )
        victims = idle[:count] or [self]
        _warnings.warning(
            "evicted",
            "%d connections open, over the cap of %d: dropped %d (the least recently active idle, else the new one)",
            len(self.connections),
            self.limits.max_connections,
            len(victims),
        )
        for victim in victims:
            victim.drop()

    def drop(self) -> None:
        """Close at once: the descriptor is freed now, not after a peer that reads nothing takes its bytes."""
        self._disarm()
        self.connections.discard(self)
        self.transport.abort()

    # -- deadlines -----------------------------------------------------------------------------------------

    def _arm(self, phase: str, seconds: float) -> None:
        self._disarm()
        self._phase = phase
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = None
        self._phase = None

    def _expired(self) -> None:
        phase, self._deadline = self._phase, None
        if self.transport.is_closing() or phase is None:
            return
        _warnings.warning(
            "expired", "request %s from %s not received within the deadline: 408, connection closed", phase, self.client
        )
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # the app's receive() answers http.disconnect, its response is dropped
            self.cycle.message_event.set()
        if phase == "headers" or (self.cycle is not None and not self.cycle.response_started):
            self.transport.write(_timeout_response(phase))
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        if self._deadline is None and self.is_idle():  # the first bytes of a keep-alive connection's next request
            self._arm("headers", self.limits.header_seconds)
        super().data_received(data)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a request's headers are complete: its body has its own deadline
            self._disarm()
            if self.conn.their_state is h11.SEND_BODY:
                self._arm("body", self.limits.body_seconds)
        elif self._phase == "body" and self.conn.their_state is not h11.SEND_BODY:
            self._disarm()

    def on_response_complete(self) -> None:
        self.last_active = time.monotonic()
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """h11 refuses a request line and headers over the cap as a protocol error: say 431 for that one."""
        if len(self.conn.trailing_data[0]) > self.limits.max_header_bytes:
            self._disarm()
            body = b"request headers too large\n"
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
            )
            self.transport.close()
            return
        super().send_400_response(msg)


def bounded_server(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    limits: ServerLimits = ServerLimits(),
    log_level: str | None = None,
) -> uvicorn.Server:
    """A uvicorn server for `app` with `limits` (the connection cap lowered to fit the descriptor limit); run it
    with `.run()`, or `.run(sockets=[...])` on sockets bound beforehand."""
    limits = replace(limits, max_connections=connection_cap(limits.max_connections))
    protocol = type("BoundedH11", (BoundedH11Protocol,), {"limits": limits})
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        lifespan="off",
        log_level=log_level,
        timeout_keep_alive=limits.keep_alive_seconds,
        h11_max_incomplete_event_size=limits.max_header_bytes,
    )
    return uvicorn.Server(config)
