"""Knobs and results of a fetch, shared by the HTTP, FTP, file and ArcGIS fetchers.

Every delay (timeouts, backoff) is a field so tests can shrink them; defaults suit real servers.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oa_dagster import __version__
from oa_dagster.errors import DownloadError

ProgressCallback = Callable[[str, int, "int | None"], None]

USER_AGENT = f"oa-dagster/{__version__} (OpenAddresses processing; +https://github.com/openaddresses/openaddresses)"


@dataclass
class FetchOptions:
    """How to download: limits, retries, concurrency and where the content cache lives."""

    cache_dir: Path | None = None  # content cache keyed by URL (ETag/Last-Modified); None = no cache
    timeout: float = 60.0  # read timeout, seconds
    connect_timeout: float | None = None  # None: min(10, timeout)
    retries: int = 4  # extra attempts after the first, for connection errors, 5xx and 429
    backoff: float = 1.0  # first retry delay in seconds, doubled per attempt
    max_backoff: float = 60.0
    max_retry_after: float = 300.0  # a longer Retry-After fails the download instead of stalling the run
    max_download_bytes: int = 8 * 2**30
    max_unpacked_bytes: int = 32 * 2**30
    max_unpack_ratio: float = 1000.0  # uncompressed/compressed size above which a member is a bomb
    # (archive members and Content-Encoding alike, once past `archive.BOMB_MIN_BYTES` decoded)
    download_deadline: float = 6 * 3600.0  # wall clock for one HTTP/FTP download, retries included; 0 = none
    esri_request_deadline: float = 600.0  # wall clock for one ArcGIS request (a page), retries included
    esri_max_response_bytes: int = 2**30  # one ArcGIS response, decoded (a page is held in memory)
    min_throughput: float = 1024.0  # bytes/s averaged over `throughput_window`; slower fails; 0 = no rule
    throughput_window: float = 120.0  # seconds; the read timeout already covers a server sending nothing
    esri_workers: int = 6  # concurrent page requests; 6 keeps ~5x a sequential dump on slow servers
    esri_page_size_cap: int = 2000
    esri_geometry_precision: int = 7
    user_agent: str = USER_AGENT
    verify_tls: bool | str = True  # or a CA bundle path; never turned off behind the user's back
    # CI jobs: connect to public addresses only (`fetch/hosts.py`); also turns off proxies and other settings
    # taken from the environment (`trust_env`), which would connect for us to addresses never checked
    public_hosts_only: bool = False
    allowed_hosts: frozenset[str] = frozenset()  # exceptions, `hosts.parse_allowed_hosts` entries
    progress: ProgressCallback | None = None  # (what, done, total): bytes for HTTP/FTP, features for ArcGIS

    @property
    def timeouts(self) -> tuple[float, float]:
        """(connect, read) for requests."""
        connect = self.connect_timeout if self.connect_timeout is not None else min(10.0, self.timeout)
        return connect, self.timeout

    def delay(self, attempt: int) -> float:
        """Backoff before retry number `attempt` (1-based)."""
        return min(self.max_backoff, self.backoff * 2 ** (attempt - 1))


@dataclass
class Download:
    """A fetched source file inside the run's work directory."""

    path: Path  # `cache.<ext>` in the workdir; `cache.geojsonl` for ArcGIS
    ext: str  # ".zip", ".csv", ".csv.gz", ".json", ".geojsonl", ...
    fingerprint: str  # md5 hex of the bytes (ArcGIS: of the written geojsonl)
    url: str
    seconds: float
    from_cache: bool  # served from the local content cache after a 304 / unchanged validator
    feature_count: int | None = None  # ArcGIS: features written
    # What the upstream said about this content, recorded with the output so the next set can ask whether it
    # changed (`fetch/upstream.py`): HTTP ETag / Last-Modified / Content-Length, FTP size + MDTM, ArcGIS edit
    # dates + count + object-id extent. Empty: no usable signal (the entry is always downloaded again).
    validators: dict[str, Any] = field(default_factory=dict)


class Throttle:
    """Rate-limits progress callbacks so a fast stream does not spend its time reporting."""

    def __init__(self, options: FetchOptions, what: str, total: int | None, every: float = 0.25) -> None:
        self.callback = options.progress
        self.what = what
        self.total = total
        self.every = every
        self.last = 0.0

    def __call__(self, done: int, *, final: bool = False) -> None:
        if self.callback is None:
            return
        now = time.monotonic()
        if final or now - self.last >= self.every:
            self.last = now
            self.callback(self.what, done, self.total)


class LimitExceeded(DownloadError):
    """A transfer refused by a limit (deadline, throughput, size, expansion): asking again, or another way, is
    no use, so fallbacks that follow other download errors (ArcGIS formats and paging) re-raise it."""


def seconds(value: float) -> str:
    """`21,600 s`, `60 s`, `0.5 s`: whole seconds unless the value is small (tests shrink the limits)."""
    return f"{value:,.0f} s" if value >= 10 else f"{value:.2g} s"


class Pace:
    """The wall-clock deadline and minimum throughput of one transfer (all its attempts).

    A read timeout only fires when a server sends nothing at all; one that drips a byte a second keeps the
    connection alive forever. `received` is called with every chunk and fails the transfer when the
    deadline has passed or when a whole `throughput_window` brought less than `min_throughput` bytes/s.
    The window restarts with each attempt's body (`start_body`), so time to the first byte, governed by
    the read timeout, is not counted as slowness. Both failures are `LimitExceeded`, never retried: a
    spent deadline is spent, and retrying a trickling server would multiply the time the run waits.
    """

    def __init__(self, what: str, deadline: float, options: FetchOptions) -> None:
        self.what = what
        self.deadline = deadline
        self.min_rate = options.min_throughput
        self.window = options.throughput_window
        self.started = time.monotonic()
        self.ends = self.started + deadline if deadline > 0 else math.inf
        self.start_body()

    def start_body(self) -> None:
        self.window_start = time.monotonic()
        self.window_bytes = 0

    def left(self) -> float:
        """Seconds before the deadline."""
        return self.ends - time.monotonic()

    def sleep_before_retry(self, wait: float, what: str) -> None:
        """Sleep `wait` seconds before a retry, unless that would pass the deadline."""
        if wait > self.left():
            raise LimitExceeded(f"{what}: a retry in {seconds(wait)} would pass the {seconds(self.deadline)} deadline")
        time.sleep(wait)

    def timeouts(self, timeouts: tuple[float, float]) -> tuple[float, float]:
        """(connect, read) timeouts no longer than the time left: a server that accepts the connection and never
        answers would otherwise hold each attempt for the whole read timeout, past the deadline."""
        left = max(self.left(), 0.5)  # a last attempt near the deadline still gets a moment
        return min(timeouts[0], left), min(timeouts[1], left)

    def check_deadline(self, received: int | None = None) -> None:
        if time.monotonic() > self.ends:
            got = f" ({received:,} bytes received)" if received is not None else ""
            raise LimitExceeded(f"{self.what} took longer than the {seconds(self.deadline)} deadline{got}")

    def received(self, n: int, total: int) -> None:
        """Account for `n` more bytes (`total` so far in this attempt)."""
        self.check_deadline(total)
        if self.min_rate <= 0:
            return
        now = time.monotonic()
        self.window_bytes += n
        elapsed = now - self.window_start
        if elapsed >= self.window:
            if self.window_bytes < self.min_rate * elapsed:
                raise LimitExceeded(
                    f"{self.what} too slow: {self.window_bytes:,} bytes in {seconds(elapsed)} "
                    f"(minimum {self.min_rate:,.0f} bytes/s over {seconds(self.window)})"
                )
            self.window_start, self.window_bytes = now, 0


def get_logger(log: logging.Logger | None) -> logging.Logger:
    return log if log is not None else logging.getLogger("oa_dagster.fetch")
