"""Streamed HTTP(S) downloads with timeouts, retries, conditional GETs and typed file names.

Differences from the reference on purpose: 5xx and 429 are retried with backoff (honouring
`Retry-After`) instead of being saved as data; a host name that does not resolve fails at once (`dns.py`), as
retrying cannot change the answer; a TLS failure is an error, never a silent retry without
verification; the file type comes from the one response, not from downloading twice.

Bodies are read with `read1`, which returns what has arrived instead of waiting for a full chunk, so the
deadline and minimum throughput (`Pace`) are checked while a server trickles, and the bytes received are
known when a body is cut short. A `Content-Encoding` the HTTP layer decodes is held to the archive caps:
decoded size (`max_unpacked_bytes`) and expansion ratio (`max_unpack_ratio` past `BOMB_MIN_BYTES`),
measured against the bytes on the wire.
"""

from __future__ import annotations

import email.utils
import logging
import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3

from oa_dagster.errors import DownloadError
from oa_dagster.fetch.archive import expands_like_bomb
from oa_dagster.fetch.cache import CacheEntry, Sink, SizeCapExceeded, open_cache
from oa_dagster.fetch.dns import resolution_message, unresolvable_host
from oa_dagster.fetch.filetype import guess_suffix
from oa_dagster.fetch.hosts import HostPolicy, PublicHostsAdapter
from oa_dagster.fetch.options import Download, FetchOptions, LimitExceeded, Pace, Throttle

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 520, 521, 522, 523, 524})
TRANSIENT_ERRORS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)
BODY_ERRORS = urllib3.exceptions.HTTPError  # a body cut, stalled or badly encoded (urllib3 wraps socket errors)
CHUNK = 1 << 16
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an RFC 9110 token
_FORBIDDEN_IN_VALUE = re.compile(r"[\r\n\x00]")


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


def checked_headers(headers: Mapping[Any, Any]) -> dict[str, str]:
    """The source's `request.headers`, refused before any request when one could inject or break a header.

    A CR, LF or NUL would let a source add headers or requests of its own, and `requests`/`http.client`
    raise exceptions that are no source problem for those and for characters beyond Latin-1; surrounding
    white space is dropped as HTTP does.
    """
    clean: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise DownloadError(
                f"request header name {str(name)[:80]!r} is not a valid HTTP header name "
                "(letters, digits and !#$%&'*+.^_`|~- only); no request was sent"
            )
        if not isinstance(value, str):
            raise DownloadError(
                f"request header {name!r} has a {type(value).__name__} value, not a string; no request was sent"
            )
        if _FORBIDDEN_IN_VALUE.search(value):
            raise DownloadError(
                f"request header {name!r} contains a line break (CR/LF) or NUL character, "
                "which could inject headers; no request was sent"
            )
        if not value.isascii() and any(ord(c) > 0xFF for c in value):
            raise DownloadError(
                f"request header {name!r} has characters HTTP headers cannot carry (beyond "
                "Latin-1); no request was sent"
            )
        clean[name] = value.strip(" \t")
    return clean


def make_session(
    options: FetchOptions,
    headers: Mapping[Any, Any] | None = None,
    pool: int = 10,
) -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = options.user_agent
    session.headers.update(checked_headers(headers or {}))
    session.verify = options.verify_tls
    policy = HostPolicy.of(options)
    adapter: requests.adapters.HTTPAdapter
    if policy is None:
        adapter = requests.adapters.HTTPAdapter(pool_connections=pool, pool_maxsize=pool, max_retries=0)
    else:  # every connection, redirects included, checked where it is made; no proxies from the environment
        session.trust_env = False
        adapter = PublicHostsAdapter(policy, pool_connections=pool, pool_maxsize=pool, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _check_status(response: requests.Response, options: FetchOptions) -> None:
    status = response.status_code
    if status in RETRY_STATUSES:
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        if wait is not None and wait > options.max_retry_after:
            raise DownloadError(
                f"HTTP {status} from {response.url} with Retry-After {wait:.0f} s, longer than "
                f"the {options.max_retry_after:.0f} s this run waits"
            )
        raise RetryableError(f"HTTP {status} {response.reason}", wait)
    if 400 <= status < 600:
        raise DownloadError(f"HTTP {status} {response.reason} from {response.url}")


def _check_expansion(response: requests.Response, decoded: int, limits: FetchOptions, *, final: bool) -> None:
    """Refuse a `Content-Encoding` that decodes past the unpacked-size cap or expands like a bomb.

    Mid-stream the wire count may run up to one read ahead of what was decoded (the decoder keeps a tail),
    which only errs towards letting a body through; the check at the end of the body is exact.
    """
    encoding = response.headers.get("Content-Encoding", "").strip() or "identity"
    if decoded > limits.max_unpacked_bytes:
        raise LimitExceeded(
            f"decompressed size cap: Content-Encoding {encoding} from {response.url} decodes to "
            f"more than the cap of {limits.max_unpacked_bytes:,} bytes"
        )
    wire = response.raw.tell()
    if expands_like_bomb(decoded, wire, limits.max_unpack_ratio):
        when = "" if final else " so far"
        raise LimitExceeded(
            f"Content-Encoding {encoding} from {response.url} expands more than "
            f"{limits.max_unpack_ratio:,.0f}x ({wire:,} bytes received decode to {decoded:,}{when}): "
            "refused as a decompression bomb"
        )


def read_body(response: requests.Response, pace: Pace, limits: FetchOptions) -> Iterator[bytes]:
    """The decoded body of a `stream=True` response, chunk by chunk as it arrives, within the limits.

    Raises `LimitExceeded` for a deadline, a trickle or a decompression bomb, and the `BODY_ERRORS` of a
    body cut short, stalled or badly encoded (`response.raw.tell()` then says how many bytes arrived).
    """
    raw = response.raw
    pace.start_body()
    decoded = wire = 0
    while chunk := raw.read1(CHUNK, decode_content=True):
        decoded += len(chunk)
        now = raw.tell()
        pace.received(now - wire, now)
        wire = now
        if decoded != wire:
            _check_expansion(response, decoded, limits, final=False)
        yield chunk
    if decoded != wire:
        _check_expansion(response, decoded, limits, final=True)


def _attempt(
    session: requests.Session,
    url: str,
    part: Path,
    headers: dict[str, str],
    options: FetchOptions,
    cached: CacheEntry | None,
    pace: Pace,
) -> tuple[requests.Response, Sink | None]:
    """One GET; returns the response and the written sink (None on 304)."""
    try:
        response = session.get(
            url, headers=headers, stream=True, timeout=pace.timeouts(options.timeouts), verify=options.verify_tls
        )  # explicit: env CA bundles must not override
    except requests.exceptions.SSLError as exc:
        raise DownloadError(
            f"TLS certificate verification failed for {url} ({exc}); the download is not retried without verification"
        ) from exc
    except requests.exceptions.TooManyRedirects as exc:
        raise DownloadError(f"too many redirects from {url}") from exc
    except requests.exceptions.InvalidURL as exc:
        raise DownloadError(f"invalid URL {url}: {exc}") from exc
    except requests.exceptions.InvalidHeader as exc:
        raise DownloadError(f"invalid request header for {url}: {exc}") from exc
    except TRANSIENT_ERRORS as exc:
        raise transient_or_final(exc, url) from exc
    with response:
        if response.status_code == 304 and cached is not None:
            return response, None
        _check_status(response, options)
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        if total is not None and total > options.max_download_bytes:
            raise DownloadError(
                f"download size cap: {url} is {total:,} bytes, more than the cap of {options.max_download_bytes:,}"
            )
        throttle = Throttle(options, "download", total)
        sink = Sink(part, options.max_download_bytes, throttle)
        try:
            for chunk in read_body(response, pace, options):
                sink.write(chunk)
        except SizeCapExceeded as exc:
            sink.discard()
            raise DownloadError(f"download size cap: {url}: {exc}") from exc
        except BODY_ERRORS as exc:
            sink.discard()
            got = response.raw.tell()  # bytes on the wire, as Content-Length counts them
            of = f" after {got:,} of {total:,} bytes" if total else f" after {got:,} bytes"
            raise RetryableError(f"body truncated or stalled{of}: {describe_body_error(exc)}") from exc
        except BaseException:
            sink.discard()
            raise
        sink.close()
        throttle(sink.size, final=True)
        return response, sink


def transient_or_final(exc: BaseException, url: str) -> Exception:
    """What a failed request becomes: a `DownloadError` when the host name does not exist (retrying would get the
    same answer), else a `RetryableError`."""
    host = unresolvable_host(exc, urlsplit(url).hostname)
    if host is not None:
        return DownloadError(resolution_message(host))
    return RetryableError(f"{type(exc).__name__}: {exc}")


def describe_body_error(exc: urllib3.exceptions.HTTPError) -> str:
    """Why a body read failed, in words."""
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
        return "read timed out"
    if isinstance(exc, urllib3.exceptions.DecodeError):
        return f"the Content-Encoding could not be decoded ({exc})"
    reason = exc.args[-1] if exc.args else None
    if isinstance(reason, urllib3.exceptions.IncompleteRead):
        return "the connection closed before the end of the body"
    return f"{type(exc).__name__}: {exc}"


def fetch_http(
    url: str, workdir: Path, headers: dict[str, str], options: FetchOptions, log: logging.Logger
) -> Download:
    """Download `url` to `workdir/cache<ext>`, from the content cache when the server says unchanged."""
    started = time.perf_counter()
    request_headers = checked_headers(headers)
    cache = open_cache(options.cache_dir)
    cached = cache.get(url, headers) if cache else None
    if cached is not None:
        request_headers.update(cached.conditional_headers())
    part = workdir / "cache.part"
    pace = Pace(f"download of {url}", options.download_deadline, options)
    with make_session(options, pool=1) as session:
        for attempt in range(options.retries + 1):
            try:
                response, sink = _attempt(session, url, part, request_headers, options, cached, pace)
                break
            except RetryableError as retry:
                pace.check_deadline()  # a server that timed out at the deadline: that is the cause, not the timeout
                if attempt == options.retries:
                    raise DownloadError(f"{url} failed after {attempt + 1} attempts: {retry}") from retry
                wait = retry.wait if retry.wait is not None else options.delay(attempt + 1)
                log.warning("download attempt %d of %s failed (%s); retrying in %.1f s", attempt + 1, url, retry, wait)
                pace.sleep_before_retry(wait, url)
    if sink is None:
        assert cached is not None and cache is not None
        target = workdir / f"cache{cached.ext}"
        cache.restore(cached, target)
        log.info("%s not modified since the cached copy (md5 %s)", url, cached.md5)
        validators = http_validators(
            response.headers, etag=cached.etag, last_modified=cached.last_modified, with_length=False
        )
        return Download(target, cached.ext, cached.md5, url, time.perf_counter() - started, True, validators=validators)
    ext = guess_suffix(
        url,
        final_url=response.url,
        disposition=response.headers.get("Content-Disposition"),
        content_type=response.headers.get("Content-Type"),
        head=sink.head,
    )
    target = workdir / f"cache{ext}"
    part.replace(target)
    if cache is not None:
        cache.put(
            CacheEntry(
                url, ext, sink.md5, sink.size, response.headers.get("ETag"), response.headers.get("Last-Modified")
            ),
            target,
            headers,
        )
    log.info("downloaded %s bytes from %s as %s", f"{sink.size:,}", response.url, target.name)
    validators = http_validators(response.headers)
    return Download(target, ext, sink.md5, url, time.perf_counter() - started, False, validators=validators)


def http_validators(
    headers: Mapping[str, str], *, etag: str | None = None, last_modified: str | None = None, with_length: bool = True
) -> dict[str, Any]:
    """The validators of a response as recorded with an output (`fetch/upstream.py` compares them next time).

    A 304 has no body (`with_length=False`) and often no validators: the cached copy's (`etag`,
    `last_modified`) stand in. No `ETag` and no `Last-Modified`: no signal (a length alone proves nothing).
    """
    etag = headers.get("ETag") or etag
    last_modified = headers.get("Last-Modified") or last_modified
    if not etag and not last_modified:
        return {}
    length = headers.get("Content-Length") if with_length else None
    return {
        "protocol": "http",
        "etag": etag,
        "last_modified": last_modified,
        "length": int(length) if length and length.isdigit() else None,
    }
