"""`fetch_entry`: download one layer entry's data, whatever its protocol, into the run's work directory."""

from __future__ import annotations

import logging
import os
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from oa_dagster.conform.fields import referenced_columns
from oa_dagster.errors import DownloadError
from oa_dagster.fetch.cache import Sink, SizeCapExceeded
from oa_dagster.fetch.filetype import guess_suffix
from oa_dagster.fetch.options import Download, FetchOptions, get_logger
from oa_dagster.sources.local_data import LocalDataRefused, inside, local_data_path
from oa_dagster.sources.model import LayerEntry

if TYPE_CHECKING:
    from oa_dagster.fetch.esri import LonLat

URL_PROTOCOLS = frozenset({"http", "ftp", "file"})


def local_file(entry: LayerEntry) -> Path | None:
    """The local file the entry's `data` names (a value without a scheme is relative to the source file), or None
    for a download URL.

    The local-file rule of `sources.local_data` is applied again here (the source was checked when loaded, but
    a catalog may be older than the rule, and an entry can be built without loading a file).
    """
    data = entry.data.strip()
    if not data:
        raise DownloadError("the entry has no data URL")
    try:
        return local_data_path(
            data,
            source_dir=entry.source_dir,
            sources_root=entry.sources_root,
            allow_local_files=entry.allow_local_files,
        )
    except LocalDataRefused as exc:
        raise DownloadError(f"data {data[:80]!r} refused: {exc}") from None


def _tree(entry: LayerEntry) -> Path | None:
    """The directory a local file must be in when opened, or None when the entry may read any local file."""
    if entry.allow_local_files:
        return None
    return entry.sources_root or entry.source_dir


_KINDS = (
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
)


def _open_local(path: Path, tree: Path | None, cap: int) -> int:
    """Open `path` for reading and check what was opened: inside `tree`, a regular file, not over the size cap.

    The checks look at the open descriptor, not the name, so a symlink swapped in after the source was
    validated (or after `local_file`) cannot redirect the read. Non-blocking open: a named pipe can't hang it.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise DownloadError(f"local file {path} does not exist") from None
    except OSError as exc:
        raise DownloadError(f"local file {path} cannot be read: {exc.strerror or exc}") from None
    try:
        real = _real_path(fd, path)
        if tree is not None and not inside(real, tree):
            raise DownloadError(f"local file {path} leads outside the sources tree (symbolic links are followed)")
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise DownloadError(f"local path {path} is a directory, not a file")
        if not stat.S_ISREG(info.st_mode):
            kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a regular file")
            raise DownloadError(f"local path {path} is {kind}, not a regular file")
        if info.st_size > cap:
            raise DownloadError(
                f"download size cap: {path.name}: the file has {info.st_size:,} bytes, over the cap of {cap:,} bytes"
            )
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _real_path(fd: int, path: Path) -> Path:
    """Where the open descriptor really points (Linux: /proc), else the name resolved again."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        pass
    try:
        real = path.resolve()
        same = os.path.samestat(os.fstat(fd), os.stat(real))
    except OSError:
        same = False
    if not same:
        raise DownloadError(f"local file {path} changed while it was opened")
    return real


def _copy_file(path: Path, workdir: Path, options: FetchOptions, log: logging.Logger, tree: Path | None) -> Download:
    started = time.perf_counter()
    fd = _open_local(path, tree, options.max_download_bytes)
    part = workdir / "cache.part"
    sink = Sink(part, options.max_download_bytes, hash_behind=True)
    try:
        with os.fdopen(fd, "rb") as src:
            while chunk := src.read(1 << 20):
                sink.write(chunk)
    except SizeCapExceeded as exc:  # a file that grew while being read
        sink.discard()
        raise DownloadError(f"download size cap: {path.name}: {exc}") from exc
    sink.close()
    ext = guess_suffix(path.name, head=sink.head)
    target = workdir / f"cache{ext}"
    part.replace(target)
    log.info("copied %s (%s bytes)", path.name, f"{sink.size:,}")
    return Download(target, ext, sink.md5, path.as_uri(), time.perf_counter() - started, False)


def _lonlat(entry: LayerEntry) -> LonLat | None:
    from oa_dagster.fetch.esri import LonLat

    conform = entry.conform or {}
    lon, lat = conform.get("lon"), conform.get("lat")
    return LonLat(lon, lat) if isinstance(lon, str) and isinstance(lat, str) else None


def fetch_entry(
    entry: LayerEntry, workdir: Path, options: FetchOptions | None = None, log: logging.Logger | None = None
) -> Download:
    """Download the entry's data to `workdir/cache.<ext>` (ArcGIS: `cache.geojsonl`).

    Raises `DownloadError` (or `EsriTokenRequired`) with a detail naming the cause.
    """
    options = options or FetchOptions()
    log = get_logger(log)
    workdir.mkdir(parents=True, exist_ok=True)
    protocol = entry.protocol.lower()
    # each protocol's client is imported when used: a local file's run never pays for requests' import
    if protocol == "esri":
        from oa_dagster.fetch.esri import dump_layer

        fields = referenced_columns(entry.conform, entry.layer)
        return dump_layer(
            entry.data.strip(),
            workdir,
            fields=fields,
            lonlat=_lonlat(entry),
            headers=entry.request_headers,
            options=options,
            log=log,
        )
    if protocol not in URL_PROTOCOLS:
        raise DownloadError(f"unknown protocol {entry.protocol!r}")
    local = local_file(entry)
    if local is not None:
        return _copy_file(local, workdir, options, log, _tree(entry))
    url = entry.data.strip()
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        from oa_dagster.fetch.http import fetch_http

        return fetch_http(url, workdir, entry.request_headers, options, log)
    if scheme == "ftp":
        from oa_dagster.fetch.ftp import fetch_ftp

        return fetch_ftp(url, workdir, options, log)
    raise DownloadError(f"unsupported URL scheme in {url!r}")
