"""Streamed HTTP(S) downloads with timeouts, retries, conditional GETs and typed file names.

Differences from the reference on purpose: 5xx and 429 are retried with backoff (honouring
`Retry-After`) instead of being saved as data; a TLS failure is an error, never a silent retry without
verification; the file type comes from the one response, not from downloading twice.
"""

from __future__ import annotations

import email.utils
import logging
import time
from pathlib import Path

import requests

from oa_dagster.errors import DownloadError
from oa_dagster.fetch.cache import CacheEntry, Sink, SizeCapExceeded, open_cache
from oa_dagster.fetch.filetype import guess_suffix
from oa_dagster.fetch.options import Download, FetchOptions, Throttle

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 520, 521, 522, 523, 524})
TRANSIENT_ERRORS = (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                    requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)


class RetryableError(Exception):
    """One attempt failed in a way worth retrying; `wait` overrides the backoff (Retry-After)."""

    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.wait = wait


def retry_after_seconds(value: str | None) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def make_session(options: FetchOptions, headers: dict[str, str] | None = None, pool: int = 10) -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = options.user_agent
    session.headers.update(headers or {})
    session.verify = options.verify_tls
    adapter = requests.adapters.HTTPAdapter(pool_connections=pool, pool_maxsize=pool, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _check_status(response: requests.Response, options: FetchOptions) -> None:
    status = response.status_code
    if status in RETRY_STATUSES:
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        if wait is not None and wait > options.max_retry_after:
            raise DownloadError(f"HTTP {status} from {response.url} with Retry-After {wait:.0f} s, longer than "
                                f"the {options.max_retry_after:.0f} s this run waits")
        raise RetryableError(f"HTTP {status} {response.reason}", wait)
    if 400 <= status < 600:
        raise DownloadError(f"HTTP {status} {response.reason} from {response.url}")


def _attempt(session: requests.Session, url: str, part: Path, headers: dict[str, str],
             options: FetchOptions, cached: CacheEntry | None) -> tuple[requests.Response, Sink | None]:
    """One GET; returns the response and the written sink (None on 304)."""
    try:
        response = session.get(url, headers=headers, stream=True, timeout=options.timeouts,
                               verify=options.verify_tls)  # explicit: env CA bundles must not override
    except requests.exceptions.SSLError as exc:
        raise DownloadError(f"TLS certificate verification failed for {url} ({exc}); the download is not "
                            "retried without verification") from exc
    except requests.exceptions.TooManyRedirects as exc:
        raise DownloadError(f"too many redirects from {url}") from exc
    except requests.exceptions.InvalidURL as exc:
        raise DownloadError(f"invalid URL {url}: {exc}") from exc
    except TRANSIENT_ERRORS as exc:
        raise RetryableError(f"{type(exc).__name__}: {exc}") from exc
    with response:
        if response.status_code == 304 and cached is not None:
            return response, None
        _check_status(response, options)
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        if total is not None and total > options.max_download_bytes:
            raise DownloadError(f"download size cap: {url} is {total:,} bytes, more than the cap of "
                                f"{options.max_download_bytes:,}")
        throttle = Throttle(options, "download", total)
        sink = Sink(part, options.max_download_bytes, throttle)
        try:
            for chunk in response.iter_content(chunk_size=1 << 16):
                sink.write(chunk)
        except SizeCapExceeded as exc:
            sink.discard()
            raise DownloadError(f"download size cap: {url}: {exc}") from exc
        except TRANSIENT_ERRORS as exc:
            sink.discard()
            got = f" after {sink.size:,} of {total:,} bytes" if total else f" after {sink.size:,} bytes"
            raise RetryableError(f"body truncated or stalled{got}: {type(exc).__name__}") from exc
        except BaseException:
            sink.discard()
            raise
        sink.close()
        throttle(sink.size, final=True)
        return response, sink


def fetch_http(url: str, workdir: Path, headers: dict[str, str], options: FetchOptions,
               log: logging.Logger) -> Download:
    """Download `url` to `workdir/cache<ext>`, from the content cache when the server says unchanged."""
    started = time.perf_counter()
    cache = open_cache(options.cache_dir)
    cached = cache.get(url, headers) if cache else None
    request_headers = dict(headers)
    if cached is not None:
        request_headers.update(cached.conditional_headers())
    part = workdir / "cache.part"
    with make_session(options, pool=1) as session:
        for attempt in range(options.retries + 1):
            try:
                response, sink = _attempt(session, url, part, request_headers, options, cached)
                break
            except RetryableError as retry:
                if attempt == options.retries:
                    raise DownloadError(f"{url} failed after {attempt + 1} attempts: {retry}") from retry
                wait = retry.wait if retry.wait is not None else options.delay(attempt + 1)
                log.warning("download attempt %d of %s failed (%s); retrying in %.1f s", attempt + 1, url,
                            retry, wait)
                time.sleep(wait)
    if sink is None:
        assert cached is not None and cache is not None
        target = workdir / f"cache{cached.ext}"
        cache.restore(cached, target)
        log.info("%s not modified since the cached copy (md5 %s)", url, cached.md5)
        return Download(target, cached.ext, cached.md5, url, time.perf_counter() - started, True)
    ext = guess_suffix(url, final_url=response.url, disposition=response.headers.get("Content-Disposition"),
                       content_type=response.headers.get("Content-Type"), head=sink.head)
    target = workdir / f"cache{ext}"
    part.replace(target)
    if cache is not None:
        cache.put(CacheEntry(url, ext, sink.md5, sink.size, response.headers.get("ETag"),
                             response.headers.get("Last-Modified")), target, headers)
    log.info("downloaded %s bytes from %s as %s", f"{sink.size:,}", response.url, target.name)
    return Download(target, ext, sink.md5, url, time.perf_counter() - started, False)
