"""Knobs and results of a fetch, shared by the HTTP, FTP, file and ArcGIS fetchers.

Every delay (timeouts, backoff) is a field so tests can shrink them; defaults suit real servers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from oa_dagster import __version__

ProgressCallback = Callable[[str, int, "int | None"], None]

USER_AGENT = (f"oa-dagster/{__version__} (OpenAddresses processing; "
              "+https://github.com/openaddresses/openaddresses)")


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
    esri_workers: int = 6  # concurrent page requests; 6 keeps ~5x a sequential dump on slow servers
    esri_page_size_cap: int = 2000
    esri_geometry_precision: int = 7
    user_agent: str = USER_AGENT
    verify_tls: bool | str = True  # or a CA bundle path; never turned off behind the user's back
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


def get_logger(log: logging.Logger | None) -> logging.Logger:
    return log if log is not None else logging.getLogger("oa_dagster.fetch")
