"""FTP downloads: anonymous or URL credentials, passive mode, streamed to disk with retries.

The reference read the whole file into memory and turned every error into a fake HTTP 400; here a
permanent FTP error (5xx reply, e.g. 550 no such file) fails at once and a transient one is retried.
The content cache uses the server's size and modification time (`SIZE`, `MDTM`) as the validator.
The download's deadline and minimum throughput (`Pace`) are checked as each block arrives; a transfer
given up that way closes the connection without the polite `QUIT`, whose reply could wait on the server.
"""

from __future__ import annotations

import contextlib
import ftplib
import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from oa_dagster.errors import DownloadError
from oa_dagster.fetch.cache import CacheEntry, Sink, SizeCapExceeded, open_cache
from oa_dagster.fetch.dns import resolution_message, unresolvable_host
from oa_dagster.fetch.filetype import guess_suffix
from oa_dagster.fetch.hosts import HostPolicy
from oa_dagster.fetch.options import Download, FetchOptions, Pace, Throttle

_TRANSIENT = (ftplib.error_temp, ftplib.error_reply, ftplib.error_proto, OSError, EOFError)


def _validator(ftp: ftplib.FTP, path: str) -> tuple[int | None, str | None]:
    """(size, mtime) if the server answers SIZE/MDTM; either may be None."""
    size = mtime = None
    try:
        ftp.voidcmd("TYPE I")
        size = ftp.size(path)
    except ftplib.all_errors:
        pass
    with contextlib.suppress(ftplib.all_errors):
        mtime = ftp.voidcmd(f"MDTM {path}")[4:].strip() or None
    return size, mtime


def _open_control(ftp: ftplib.FTP, host: str, port: int, options: FetchOptions) -> None:
    """Connect the control connection; under a `HostPolicy`, to a checked address of `host` (an IP literal,
    so `ftplib` resolves nothing). Data connections then follow: `ftplib` sends them to the control
    connection's peer, not to the address a PASV reply names (`trust_server_pasv_ipv4_address` is off)."""
    policy = HostPolicy.of(options)
    if policy is None:
        ftp.connect(host, port, timeout=options.timeouts[0])
        return
    ftp.trust_server_pasv_ipv4_address = False
    error: OSError | None = None
    for answer in policy.resolve(host, port):
        try:
            ftp.connect(str(answer[4][0]), port, timeout=options.timeouts[0])
            return
        except OSError as exc:
            ftp.close()
            error = exc
    raise error or OSError(f"no address for {host}")


def _connect(parts, options: FetchOptions) -> ftplib.FTP:
    ftp = ftplib.FTP(timeout=options.timeout)
    try:
        _open_control(ftp, parts.hostname or "", parts.port or 21, options)
        ftp.timeout = options.timeout  # connect() kept the connect timeout for every later read and transfer
        ftp.sock.settimeout(options.timeout)
        user = unquote(parts.username) if parts.username else "anonymous"
        password = unquote(parts.password) if parts.password else ("anonymous@" if user == "anonymous" else "")
        ftp.login(user, password)
    except BaseException:
        ftp.close()
        raise
    ftp.set_pasv(True)
    return ftp


def _attempt(
    url: str,
    part: Path,
    options: FetchOptions,
    cached: CacheEntry | None,
    pace: Pace,
) -> tuple[Sink | None, str | None]:
    parts = urlsplit(url)
    path = unquote(parts.path)
    ftp = _connect(parts, options)
    try:
        result = _retrieve(ftp, url, path, part, options, cached, pace)
    except BaseException:
        ftp.close()  # no QUIT: after an abandoned transfer its reply may never come
        raise
    with contextlib.suppress(*ftplib.all_errors):
        ftp.quit()
    ftp.close()
    return result


def _retrieve(
    ftp: ftplib.FTP, url: str, path: str, part: Path, options: FetchOptions, cached: CacheEntry | None, pace: Pace
) -> tuple[Sink | None, str | None]:
    size, mtime = _validator(ftp, path)
    validator = f"{size} {mtime}" if size is not None and mtime else None
    if cached is not None and validator and cached.validator == validator:
        return None, validator
    if size is not None and size > options.max_download_bytes:
        raise DownloadError(
            f"download size cap: {url} is {size:,} bytes, more than the cap of {options.max_download_bytes:,}"
        )
    throttle = Throttle(options, "download", size)
    sink = Sink(part, options.max_download_bytes, throttle)

    def write(block: bytes) -> None:
        sink.write(block)
        pace.received(len(block), sink.size)

    pace.start_body()
    try:
        ftp.retrbinary(f"RETR {path}", write, blocksize=1 << 16)
    except BaseException:
        sink.discard()
        raise
    sink.close()
    if size is not None and sink.size != size:
        part.unlink(missing_ok=True)
        raise ftplib.error_temp(f"426 transfer truncated: got {sink.size:,} of {size:,} bytes")
    throttle(sink.size, final=True)
    return sink, validator


def fetch_ftp(url: str, workdir: Path, options: FetchOptions, log: logging.Logger) -> Download:
    """Download an `ftp://` URL to `workdir/cache<ext>`."""
    started = time.perf_counter()
    cache = open_cache(options.cache_dir)
    cached = cache.get(url) if cache else None
    part = workdir / "cache.part"
    pace = Pace(f"download of {url}", options.download_deadline, options)
    for attempt in range(options.retries + 1):
        try:
            sink, validator = _attempt(url, part, options, cached, pace)
            break
        except SizeCapExceeded as exc:
            raise DownloadError(f"download size cap: {url}: {exc}") from exc
        except ftplib.error_perm as exc:
            raise DownloadError(f"FTP error from {url}: {exc}") from exc
        except (TimeoutError, *_TRANSIENT) as exc:
            if (host := unresolvable_host(exc, urlsplit(url).hostname)) is not None:
                raise DownloadError(resolution_message(host)) from exc  # a missing name stays missing
            if attempt == options.retries:
                raise DownloadError(f"{url} failed after {attempt + 1} attempts: {exc}") from exc
            wait = options.delay(attempt + 1)
            log.warning("FTP attempt %d of %s failed (%s); retrying in %.1f s", attempt + 1, url, exc, wait)
            pace.sleep_before_retry(wait, url)
    if sink is None:
        assert cached is not None and cache is not None
        target = workdir / f"cache{cached.ext}"
        cache.restore(cached, target)
        log.info("%s unchanged since the cached copy (md5 %s)", url, cached.md5)
        seconds = time.perf_counter() - started
        return Download(target, cached.ext, cached.md5, url, seconds, True, validators=ftp_validators(validator))
    ext = guess_suffix(url, head=sink.head)
    target = workdir / f"cache{ext}"
    part.replace(target)
    if cache is not None:
        cache.put(CacheEntry(url, ext, sink.md5, sink.size, validator=validator), target)
    log.info("downloaded %s bytes from %s as %s", f"{sink.size:,}", url, target.name)
    seconds = time.perf_counter() - started
    return Download(target, ext, sink.md5, url, seconds, False, validators=ftp_validators(validator))


def ftp_validators(validator: str | None) -> dict[str, Any]:
    """`SIZE` and `MDTM` as recorded with an output; empty when the server answered neither fully."""
    if not validator:
        return {}
    size, _, mtime = validator.partition(" ")
    return {"protocol": "ftp", "size": int(size), "mtime": mtime}


def ftp_signal(url: str, options: FetchOptions) -> dict[str, Any]:
    """The file's size and modification time now (one control connection, no transfer), for change detection."""
    parts = urlsplit(url)
    ftp = _connect(parts, options)
    try:
        size, mtime = _validator(ftp, unquote(parts.path))
    finally:
        ftp.close()
    return ftp_validators(f"{size} {mtime}" if size is not None and mtime else None)
