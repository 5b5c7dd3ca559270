"""`fetch_entry`: download one layer entry's data, whatever its protocol, into the run's work directory."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from oa_dagster.conform.fields import referenced_columns
from oa_dagster.errors import DownloadError
from oa_dagster.fetch.cache import Sink, SizeCapExceeded
from oa_dagster.fetch.esri import LonLat, dump_layer
from oa_dagster.fetch.filetype import guess_suffix
from oa_dagster.fetch.ftp import fetch_ftp
from oa_dagster.fetch.http import fetch_http
from oa_dagster.fetch.options import Download, FetchOptions, get_logger
from oa_dagster.sources.model import LayerEntry

URL_PROTOCOLS = frozenset({"http", "ftp", "file"})


def resolve_data(entry: LayerEntry) -> str:
    """The entry's `data` as a URL; a value without a scheme is a path relative to the source file."""
    data = entry.data.strip()
    if not data:
        raise DownloadError("the entry has no data URL")
    scheme = urlsplit(data).scheme.lower()
    if scheme in ("http", "https", "ftp", "file"):
        return data
    path = Path(data)
    if not path.is_absolute():
        path = (entry.source_dir or Path.cwd()) / path
    return path.resolve().as_uri()


def _copy_file(url: str, workdir: Path, options: FetchOptions, log: logging.Logger) -> Download:
    started = time.perf_counter()
    path = Path(url2pathname(unquote(urlsplit(url).path)))
    if not path.is_file():
        raise DownloadError(f"local file {path} does not exist")
    part = workdir / "cache.part"
    sink = Sink(part, options.max_download_bytes)
    try:
        with path.open("rb") as src:
            while chunk := src.read(1 << 20):
                sink.write(chunk)
    except SizeCapExceeded as exc:
        sink.discard()
        raise DownloadError(f"download size cap: {path.name}: {exc}") from exc
    sink.close()
    ext = guess_suffix(path.name, head=sink.head)
    target = workdir / f"cache{ext}"
    part.replace(target)
    log.info("copied %s (%s bytes)", path.name, f"{sink.size:,}")
    return Download(target, ext, sink.md5, url, time.perf_counter() - started, False)


def _lonlat(entry: LayerEntry) -> LonLat | None:
    conform = entry.conform or {}
    lon, lat = conform.get("lon"), conform.get("lat")
    return LonLat(lon, lat) if isinstance(lon, str) and isinstance(lat, str) else None


def fetch_entry(entry: LayerEntry, workdir: Path, options: FetchOptions | None = None,
                log: logging.Logger | None = None) -> Download:
    """Download the entry's data to `workdir/cache.<ext>` (ArcGIS: `cache.geojsonl`).

    Raises `DownloadError` (or `EsriTokenRequired`) with a detail naming the cause.
    """
    options = options or FetchOptions()
    log = get_logger(log)
    workdir.mkdir(parents=True, exist_ok=True)
    protocol = entry.protocol.lower()
    if protocol == "esri":
        fields = referenced_columns(entry.conform, entry.layer)
        return dump_layer(entry.data.strip(), workdir, fields=fields, lonlat=_lonlat(entry),
                          headers=entry.request_headers, options=options, log=log)
    if protocol not in URL_PROTOCOLS:
        raise DownloadError(f"unknown protocol {entry.protocol!r}")
    url = resolve_data(entry)
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        return fetch_http(url, workdir, entry.request_headers, options, log)
    if scheme == "ftp":
        return fetch_ftp(url, workdir, options, log)
    if scheme == "file":
        return _copy_file(url, workdir, options, log)
    raise DownloadError(f"unsupported URL scheme in {url!r}")

