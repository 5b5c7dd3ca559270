"""Dump one ArcGIS REST layer to newline-delimited GeoJSON (`cache.geojsonl`), concurrently and in order.

Pages are fetched by a small thread pool and written in page order as they complete, with at most a
window of pages held in memory, so memory stays flat for layers of millions of features and the output
(and so its md5 fingerprint) is the same on every run. A dump that receives fewer features than the
server counted is an error: a truncated layer must not be published as complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from oa_dagster.errors import DownloadError, EsriTokenRequired
from oa_dagster.fetch.esri.client import ArcGISClient, LayerInfo
from oa_dagster.fetch.esri.pages import (
    LonLat,
    Page,
    PageResult,
    envelope_params,
    offset_pages,
    oid_pages,
    parse_esrijson_page,
    parse_geojson_page,
    split_envelope,
)
from oa_dagster.fetch.esri.signal import ask_at_once, editing_dates, signal_from
from oa_dagster.fetch.options import Download, FetchOptions, LimitExceeded, Throttle

DEFAULT_PAGE_SIZE = 1000
MAX_SPLIT_DEPTH = 24


class _Writer:
    """Appends page results to the `.partial` file, hashing and counting as it goes."""

    def __init__(self, path: Path, progress: Throttle) -> None:
        self.path = path
        self.file = path.open("wb")
        self.digest = hashlib.md5()
        self.written = 0
        self.received = 0
        self.without_geometry = 0
        self.progress = progress

    def write(self, result: PageResult, lines: list[str] | None = None) -> None:
        lines = result.lines if lines is None else lines
        if lines:
            data = ("\n".join(lines) + "\n").encode("utf-8")
            self.digest.update(data)
            self.file.write(data)
        self.written += len(lines)
        self.received += result.received
        self.without_geometry += result.without_geometry
        self.progress(self.written)


class _Pages:
    """Fetches and parses pages in one output format; shared by the worker threads."""

    def __init__(
        self,
        client: ArcGISClient,
        common: dict[str, Any],
        fmt: str,
        lonlat: LonLat | None,
        oid_field: str | None = None,
    ) -> None:
        self.client = client
        self.common = common
        self.lonlat = lonlat
        self.oid_field = oid_field
        self.set_format(fmt)

    def set_format(self, fmt: str) -> None:
        self.fmt = fmt
        self.common = {**self.common, "f": fmt}
        lonlat, oid = self.lonlat, self.oid_field
        if fmt == "geojson":
            self.parse: Callable[[bytes], PageResult] = lambda body: parse_geojson_page(
                body.decode("utf-8"), lonlat, oid
            )
        else:
            self.parse = lambda body: parse_esrijson_page(json.loads(body), lonlat, oid)

    def query(self, params: dict[str, Any], what: str) -> PageResult:
        return self.client.request_json("/query", {**self.common, **params}, post=True, what=what, parse=self.parse)

    def fetch(self, page: Page) -> PageResult:
        """One planned page; a short page fetches its remainder (offset paging) or is asked again."""
        what = f"page {page.index + 1}"
        result = self.query(page.params, what)
        if page.expected is None or result.received >= page.expected:
            if page.offset is not None and page.expected is not None and result.received > page.expected:
                result.truncate(page.expected)
            return result
        if page.offset is not None:
            while result.received < page.expected:
                rest = {
                    **page.params,
                    "resultOffset": page.offset + result.received,
                    "resultRecordCount": page.expected - result.received,
                }
                more = self.query(rest, what + " (rest)")
                if more.received == 0:
                    break
                result.extend(more)
            result.truncate(page.expected)
        else:
            again = self.query(page.params, what + " (again)")
            if again.received > result.received:
                result = again
        return result


def _plan(
    client: ArcGISClient, info: LayerInfo, count: int | None, page_size: int, log: logging.Logger
) -> tuple[list[Page] | None, int | None]:
    """Pages by offset, else by object-id ranges; None when only the spatial split is left."""
    if info.supports_pagination and count is not None:
        log.info("paging %s features by offset, %d per page", f"{count:,}", page_size)
        return offset_pages(count, page_size, info.oid_field), count
    try:
        oid_name, ids = client.object_ids()
    except (EsriTokenRequired, LimitExceeded):
        raise
    except DownloadError as exc:
        log.warning("object ids unavailable (%s); splitting the extent instead", exc.detail)
        return None, count
    oid_field = info.oid_field or oid_name
    if not oid_field:
        log.warning("the layer names no object id field; splitting the extent instead")
        return None, count
    if count is not None and count != len(ids):
        log.warning("the server counts %s features but lists %s object ids", f"{count:,}", f"{len(ids):,}")
    log.info("paging %s features by object id ranges, %d per page", f"{len(ids):,}", page_size)
    return oid_pages(oid_field, ids, page_size), count if count is not None else len(ids)


def _run_pages(pages: list[Page], fetcher: _Pages, writer: _Writer, options: FetchOptions, log: logging.Logger) -> None:
    """Fetch the first page alone (to settle the format), then the rest concurrently, written in order."""
    if not pages:
        return
    try:
        first = fetcher.fetch(pages[0])
    except (EsriTokenRequired, LimitExceeded):
        raise
    except DownloadError as exc:
        if fetcher.fmt != "geojson":
            raise
        log.warning("f=geojson query failed (%s); using f=json", exc.detail)
        fetcher.set_format("json")
        first = fetcher.fetch(pages[0])
    writer.write(first)
    workers = max(1, options.esri_workers)
    window = workers * 2
    rest = iter(pages[1:])
    pending: dict[int, Future[PageResult]] = {}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="arcgis") as pool:
        try:
            for page in rest:
                pending[page.index] = pool.submit(fetcher.fetch, page)
                if len(pending) >= window:
                    break
            next_index = 1
            while pending:
                result = pending.pop(next_index).result()
                writer.write(result)
                next_index += 1
                page = next(rest, None)
                if page is not None:
                    pending[page.index] = pool.submit(fetcher.fetch, page)
        finally:
            for future in pending.values():
                future.cancel()


def _run_envelopes(info: LayerInfo, fetcher: _Pages, writer: _Writer, page_size: int) -> None:
    """Recursive quadrant queries over the layer extent, de-duplicated by object id."""
    extent = info.extent or {}
    try:
        box = (float(extent["xmin"]), float(extent["ymin"]), float(extent["xmax"]), float(extent["ymax"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise DownloadError("cannot page the layer: no pagination, no object ids and no usable extent") from exc
    reference = extent.get("spatialReference") or {}
    wkid = reference.get("latestWkid") or reference.get("wkid")
    seen: set[Any] = set()
    stack = [(box, 0)]
    while stack:
        box, depth = stack.pop()
        result = fetcher.query(envelope_params(box, wkid), f"extent query at depth {depth}")
        if result.exceeded or result.received >= page_size:
            if depth >= MAX_SPLIT_DEPTH:
                raise DownloadError(f"spatial split deeper than {MAX_SPLIT_DEPTH} levels without fitting a page")
            stack.extend((child, depth + 1) for child in reversed(split_envelope(box)))
            continue
        keep = []
        for line, oid in zip(result.lines, result.oids, strict=False):
            if oid is None or oid not in seen:
                seen.add(oid)
                keep.append(line)
        result.received = len(keep)
        writer.write(result, keep)


def layer_url(url: str) -> tuple[str, dict[str, str]]:
    """The bare layer URL (sources sometimes add `?f=json` or `/query?...`), and a `token` to keep."""
    parts = urlsplit(url.strip())
    path = parts.path.rstrip("/")
    if path.lower().endswith("/query"):
        path = path[: -len("/query")]
    kept = {k: v for k, v in parse_qsl(parts.query) if k.lower() == "token"}
    return urlunsplit((parts.scheme, parts.netloc, path, "", "")), kept


def dump_layer(
    url: str,
    workdir: Path,
    *,
    fields: list[str],
    lonlat: LonLat | None,
    headers: dict[str, str],
    options: FetchOptions,
    log: logging.Logger,
) -> Download:
    """Dump the layer at `url` to `workdir/cache.geojsonl`; see the module docstring."""
    started = time.perf_counter()
    target = workdir / "cache.geojsonl"
    partial = workdir / "cache.geojsonl.partial"
    base, token = layer_url(url)
    client = ArcGISClient(base, options, headers, log, token)
    writer: _Writer | None = None
    try:
        info = client.metadata()
        _, count, extent = ask_at_once(client, info.oid_field, info=info, extent_wanted=editing_dates(info) is not None)
        signal = _signal(info, count, extent, log)  # before the pages: a change during the dump shows next time
        page_size = max(1, min(info.max_record_count or DEFAULT_PAGE_SIZE, options.esri_page_size_cap))
        out_fields = info.out_fields(fields, log)
        fmt = "geojson" if info.supports_geojson else "json"
        common = {
            "returnGeometry": "true",
            "outSR": "4326",
            "outFields": out_fields,
            "geometryPrecision": str(options.esri_geometry_precision),
        }
        writer = _Writer(partial, Throttle(options, "arcgis", count))
        if count != 0:
            pages, expected = _plan(client, info, count, page_size, log)
            if pages is not None:
                _run_pages(pages, _Pages(client, common, fmt, lonlat), writer, options, log)
            else:
                if out_fields != "*" and info.oid_field:
                    common["outFields"] = f"{out_fields},{info.oid_field}"
                _run_envelopes(
                    info, _Pages(client, common, fmt, lonlat, info.oid_field or "OBJECTID"), writer, page_size
                )
            if expected is not None and writer.received < expected:
                raise DownloadError(
                    f"ArcGIS dump truncated: got {writer.received:,} of {expected:,} features "
                    f"the server counted for {url}"
                )
            if expected is None:
                log.warning("the server gave no feature count; the dump cannot be checked for truncation")
        writer.file.close()
        writer.progress(writer.written, final=True)
        partial.replace(target)
    except BaseException:
        if writer is not None:
            writer.file.close()
        partial.unlink(missing_ok=True)
        raise
    finally:
        client.close()
    log.info(
        "dumped %s features from %s (%s without geometry)", f"{writer.written:,}", url, f"{writer.without_geometry:,}"
    )
    return Download(
        target,
        ".geojsonl",
        writer.digest.hexdigest(),
        url,
        time.perf_counter() - started,
        False,
        feature_count=writer.written,
        validators=signal,
    )


def _signal(
    info: LayerInfo, count: int | None, extent: Future[tuple[int, int] | None], log: logging.Logger
) -> dict[str, Any]:
    """The layer's change signal recorded with this dump; none (always downloaded again) when it cannot be read."""
    try:
        return signal_from(info, count, extent.result())
    except (EsriTokenRequired, LimitExceeded):
        raise
    except DownloadError as exc:
        log.info("no change signal recorded: %s", exc.detail)
        return {}
