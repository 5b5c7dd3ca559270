"""Asking an entry's upstream whether its data changed since an output, without downloading it.

Each protocol has its own signal, recorded with the output when it was downloaded (`Download.validators`):

- HTTP(S): a conditional GET with the recorded `ETag` / `Last-Modified`; `304 Not Modified` means unchanged. A
  server that ignores conditional requests answers 200: when that answer carries the recorded validators and
  length it is taken as unchanged too (the body is not read), and the next probes use `HEAD`, which tells the
  same without sending a body (`conditional: false` is kept with the signal).
- FTP: the same `SIZE` and `MDTM`.
- ArcGIS REST: the same `editingInfo` dates, feature count and object-id extent (`fetch/esri/signal.py`); a layer
  without `editingInfo` is always changed. The metadata, the count and the extent are asked at once when the
  recorded signal names the object-id field (older records: the metadata first); a different field is a change.

A probe never raises: a probe that fails (a timeout, an error answer, a refused host) says "changed", and the
download that follows reports the problem the usual way. Nothing here knows about the store or Dagster.

A probe also tells how big the data is, when the answer says so (`UpstreamSize`: an ArcGIS layer's feature count,
an HTTP `Content-Length`, an FTP `SIZE`): a set packs entries never run before by it. `probe_size` asks only that,
for an entry with no output to compare with (one `returnCountOnly` query, one `HEAD`, one `SIZE`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from oa_dagster.errors import DownloadError
from oa_dagster.fetch.cache import conditional_headers
from oa_dagster.fetch.esri.client import ArcGISClient
from oa_dagster.fetch.esri.dumper import layer_url
from oa_dagster.fetch.esri.signal import ask_at_once, signal_from
from oa_dagster.fetch.ftp import ftp_signal
from oa_dagster.fetch.http import checked_headers, http_validators, make_session
from oa_dagster.fetch.options import FetchOptions, get_logger
from oa_dagster.sources.model import LayerEntry

HTTP_FIELDS = ("etag", "last_modified")
ESRI_FIELDS = ("last_edit", "data_last_edit", "count", "oid_min", "oid_max")


@dataclass(frozen=True)
class UpstreamSize:
    """How much data an upstream holds, in the unit its protocol tells: `features` (ArcGIS) or `bytes`."""

    unit: str
    amount: int


@dataclass(frozen=True)
class UpstreamAnswer:
    """What the upstream said: unchanged or not, in words (`signal`), and what to keep for the next probe."""

    unchanged: bool
    signal: str  # e.g. `HTTP 304 Not Modified (ETag "v1")`, or why the entry counts as changed
    keep: dict[str, Any] = field(default_factory=dict)  # learnt about the server (`conditional: false`)
    size: UpstreamSize | None = None  # when the answer told it (not a 304, which has no body)


def probe_upstream(
    entry: LayerEntry, recorded: Mapping[str, Any] | None, options: FetchOptions, log: logging.Logger | None = None
) -> UpstreamAnswer:
    """Whether the entry's data is still what `recorded` (the validators kept with its output) describes."""
    log = get_logger(log)
    if not recorded:
        return UpstreamAnswer(False, "no upstream signal recorded with the output")
    protocol = entry.protocol.lower()
    url = entry.data.strip()
    scheme = urlsplit(url).scheme.lower()
    try:
        if protocol == "esri" and recorded.get("protocol") == "esri":
            return _probe_esri(entry, url, recorded, options, log)
        if scheme in ("http", "https") and recorded.get("protocol") == "http":
            return _probe_http(entry, url, recorded, options)
        if scheme == "ftp" and recorded.get("protocol") == "ftp":
            return _probe_ftp(url, recorded, options)
    except (DownloadError, requests.RequestException, OSError, EOFError, ValueError) as exc:
        detail = exc.detail if isinstance(exc, DownloadError) else f"{type(exc).__name__}: {exc}"
        log.info("upstream probe failed, downloading: %s", detail)
        return UpstreamAnswer(False, f"probe failed: {detail}")
    except Exception as exc:  # ftplib's errors are not OSError; anything unforeseen means "download"
        log.info("upstream probe failed, downloading: %s: %s", type(exc).__name__, exc)
        return UpstreamAnswer(False, f"probe failed: {type(exc).__name__}: {exc}")
    return UpstreamAnswer(False, f"no {protocol} signal to compare ({recorded.get('protocol')} recorded)")


def _same(recorded: Mapping[str, Any], now: Mapping[str, Any], names: tuple[str, ...]) -> list[str]:
    """The names whose value differs (each described), empty when all are equal."""
    return [
        f"{name} {recorded.get(name)!r} -> {now.get(name)!r}" for name in names if recorded.get(name) != now.get(name)
    ]


def _describe(recorded: Mapping[str, Any]) -> str:
    parts = []
    if recorded.get("etag"):
        parts.append(f"ETag {recorded['etag']}")
    if recorded.get("last_modified"):
        parts.append(f"Last-Modified {recorded['last_modified']}")
    return ", ".join(parts)


def _probe_http(entry: LayerEntry, url: str, recorded: Mapping[str, Any], options: FetchOptions) -> UpstreamAnswer:
    head = recorded.get("conditional") is False
    headers = checked_headers(entry.request_headers)
    if not head:
        headers.update(conditional_headers(recorded.get("etag"), recorded.get("last_modified")))
    with make_session(options, pool=1) as session:
        call = session.head if head else session.get
        kwargs: dict[str, Any] = {"allow_redirects": True} if head else {"stream": True}
        with call(url, headers=headers, timeout=options.timeouts, verify=options.verify_tls, **kwargs) as response:
            status = response.status_code
            if status == 304 and not head:
                return UpstreamAnswer(True, f"HTTP 304 Not Modified ({_describe(recorded)})")
            if status != 200:
                return UpstreamAnswer(False, f"{'HEAD' if head else 'conditional GET'} answered HTTP {status}")
            now = http_validators(response.headers)
            length = response.headers.get("Content-Length", "")
    size = _bytes(int(length)) if length.isdigit() else None
    if not now:
        return UpstreamAnswer(False, "the server sends no ETag or Last-Modified any more", size=size)
    differs = _same(recorded, now, HTTP_FIELDS)
    if recorded.get("length") is not None and now.get("length") != recorded.get("length"):
        differs.append(f"length {recorded.get('length')} -> {now.get('length')}")
    if differs:
        return UpstreamAnswer(False, "changed: " + "; ".join(differs), size=size)
    how = "HEAD" if head else "the server ignores conditional requests; its answer"
    return UpstreamAnswer(
        True, f"{how}: same length and validators ({_describe(recorded)})", keep={"conditional": False}, size=size
    )


def _bytes(length: Any) -> UpstreamSize | None:
    return UpstreamSize("bytes", int(length)) if isinstance(length, int) and length >= 0 else None


def _probe_ftp(url: str, recorded: Mapping[str, Any], options: FetchOptions) -> UpstreamAnswer:
    now = ftp_signal(url, options)
    if not now:
        return UpstreamAnswer(False, "the FTP server no longer answers SIZE and MDTM")
    differs = _same(recorded, now, ("size", "mtime"))
    if differs:
        return UpstreamAnswer(False, "changed: " + "; ".join(differs), size=_bytes(now.get("size")))
    return UpstreamAnswer(True, f"FTP SIZE {now['size']:,} and MDTM {now['mtime']} unchanged")


def _probe_esri(
    entry: LayerEntry, url: str, recorded: Mapping[str, Any], options: FetchOptions, log: logging.Logger
) -> UpstreamAnswer:
    base, token = layer_url(url)
    client = ArcGISClient(base, options, entry.request_headers, log, token)
    try:
        known_field = recorded.get("oid_field")
        if known_field:  # the recorded id field: the metadata, the count and the extent asked at once
            info, count, extent = ask_at_once(client, known_field)
        else:  # an older record: the id field comes with the metadata
            info = client.metadata()
        if not info.raw.get("editingInfo"):
            return UpstreamAnswer(False, "the layer has no editingInfo: always downloaded")
        if not known_field:
            _, count, extent = ask_at_once(client, info.oid_field, info=info)
        elif info.oid_field != known_field:  # republished: its ids mean something else now
            return UpstreamAnswer(
                False, f"changed: object-id field {known_field!r} -> {info.oid_field!r}", size=_features(count)
            )
        now = signal_from(info, count, extent.result())
    finally:
        client.close()
    if not now:
        return UpstreamAnswer(False, "no feature count or object ids to compare")
    differs = _same(recorded, now, ESRI_FIELDS)
    if differs:
        return UpstreamAnswer(False, "changed: " + "; ".join(differs), size=_features(now.get("count")))
    return UpstreamAnswer(
        True,
        f"ArcGIS lastEditDate {now['last_edit']}, dataLastEditDate {now['data_last_edit']}, "
        f"{now['count']:,} features, object ids {now['oid_min']}-{now['oid_max']} unchanged",
    )


def _features(count: Any) -> UpstreamSize | None:
    return UpstreamSize("features", int(count)) if isinstance(count, int) and count >= 0 else None


def probe_size(entry: LayerEntry, options: FetchOptions, log: logging.Logger | None = None) -> UpstreamSize | None:
    """How much data the entry's upstream holds, asked without downloading it; None when it cannot tell.

    Never raises: an entry whose size is unknown is packed by the default guess and processed as usual.
    """
    log = get_logger(log)
    protocol = entry.protocol.lower()
    url = entry.data.strip()
    scheme = urlsplit(url).scheme.lower()
    try:
        if protocol == "esri":
            base, token = layer_url(url)
            client = ArcGISClient(base, options, entry.request_headers, log, token)
            try:
                return _features(client.count())
            finally:
                client.close()
        if scheme in ("http", "https"):
            with make_session(options, pool=1) as session:
                headers = checked_headers(entry.request_headers)
                with session.head(
                    url, headers=headers, timeout=options.timeouts, verify=options.verify_tls, allow_redirects=True
                ) as response:
                    length = response.headers.get("Content-Length", "")
                    return _bytes(int(length)) if response.status_code == 200 and length.isdigit() else None
        if scheme == "ftp":
            return _bytes(ftp_signal(url, options).get("size"))
    except Exception as exc:  # any trouble: the size stays unknown
        log.info("size probe failed: %s: %s", type(exc).__name__, exc)
    return None
