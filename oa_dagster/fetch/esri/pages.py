"""Planning the page queries of an ArcGIS dump, and turning one page response into GeoJSON lines.

Pages are planned up front (offsets, or object-id ranges) so they can be fetched concurrently and
written in order; the spatial split is the last resort for layers that offer neither. Page bodies in
`f=geojson` are passed through as the server's own feature text (decoded once to check them, never
re-encoded); `f=json` features are converted with `esri_to_geojson`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from oa_dagster.fetch.esri.geometry import esri_to_geojson

_FEATURES = re.compile(r'"features"\s*:\s*\[')
_SPACE = re.compile(r"[\s,]*")
_DECODER = json.JSONDecoder()
_EXCEEDED = re.compile(r'"exceededTransferLimit"\s*:\s*true')


@dataclass
class Page:
    """One query: `params` merged over the common ones; `expected` records when known exactly."""

    index: int
    params: dict[str, Any]
    expected: int | None
    offset: int | None = None  # resultOffset paging: lets a short page fetch its remainder


@dataclass
class PageResult:
    lines: list[str] = field(default_factory=list)
    received: int = 0
    without_geometry: int = 0
    exceeded: bool = False
    oids: list[Any] = field(default_factory=list)  # filled only when asked (spatial split dedup)

    def extend(self, other: PageResult) -> None:
        self.lines += other.lines
        self.received += other.received
        self.without_geometry += other.without_geometry
        self.exceeded = other.exceeded
        self.oids += other.oids

    def truncate(self, n: int) -> None:
        self.lines, self.oids = self.lines[:n], self.oids[:n]
        self.received = min(self.received, n)


def offset_pages(count: int, page_size: int, oid_field: str | None) -> list[Page]:
    pages = []
    for i, offset in enumerate(range(0, count, page_size)):
        params: dict[str, Any] = {
            "where": "1=1",
            "resultOffset": offset,
            "resultRecordCount": min(page_size, count - offset),
        }
        if oid_field:
            params["orderByFields"] = f"{oid_field} ASC"  # a stable order, so pages neither overlap nor skip
        pages.append(Page(i, params, min(page_size, count - offset), offset))
    return pages


def oid_pages(oid_field: str, ids: list[int], page_size: int) -> list[Page]:
    """Ranges of exactly `page_size` existing ids, as `where` clauses (short, unlike `objectIds` lists)."""
    pages = []
    for i, start in enumerate(range(0, len(ids), page_size)):
        chunk = ids[start : start + page_size]
        where = f"{oid_field} >= {chunk[0]} AND {oid_field} <= {chunk[-1]}"
        pages.append(Page(i, {"where": where}, len(chunk)))
    return pages


def split_envelope(box: tuple[float, float, float, float]) -> list[tuple[float, float, float, float]]:
    """Four quadrants, each with min < max (the reference swapped some corners)."""
    xmin, ymin, xmax, ymax = box
    xmid, ymid = (xmin + xmax) / 2, (ymin + ymax) / 2
    return [(xmin, ymin, xmid, ymid), (xmid, ymin, xmax, ymid), (xmin, ymid, xmid, ymax), (xmid, ymid, xmax, ymax)]


def envelope_params(box: tuple[float, float, float, float], wkid: Any) -> dict[str, Any]:
    params = {
        "where": "1=1",
        "geometry": ",".join(repr(v) for v in box),
        "geometryType": "esriGeometryEnvelope",
        "spatialRel": "esriSpatialRelIntersects",
    }
    if wkid is not None:
        params["inSR"] = wkid
    return params


@dataclass
class LonLat:
    """Attribute names of the conform's `lon`/`lat`, for features the server sends without geometry."""

    lon: str
    lat: str

    def point(self, properties: dict[str, Any]) -> dict[str, Any] | None:
        lower = {k.lower(): v for k, v in properties.items()}
        lon, lat = _coordinate(lower.get(self.lon.lower())), _coordinate(lower.get(self.lat.lower()))
        if lon is None or lat is None:
            return None
        return {"type": "Point", "coordinates": [lon, lat]}


def _coordinate(value: Any) -> float | None:
    if isinstance(value, str):
        value = value.strip().replace(",", ".")
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _line(properties: Any, geometry: Any) -> str:
    return json.dumps(
        {"type": "Feature", "properties": properties, "geometry": geometry}, ensure_ascii=False, separators=(",", ":")
    )


def parse_geojson_page(text: str, lonlat: LonLat | None, oid_field: str | None = None) -> PageResult:
    """Split an `f=geojson` body into feature lines, passing each feature's text through unchanged."""
    result = PageResult()
    match = _FEATURES.search(text)
    if match is None:
        payload = json.loads(text)  # raises on a truncated body; else a body without features
        if isinstance(payload, dict) and isinstance(payload.get("features"), list) and payload["features"]:
            raise ValueError("unexpected features layout")
        return result
    pos = match.end()
    end = len(text)
    while True:
        pos = _SPACE.match(text, pos).end()
        if pos >= end:
            raise ValueError("page ends inside the features array")
        if text[pos] == "]":
            break
        feature, stop = _DECODER.raw_decode(text, pos)
        result.received += 1
        geometry = feature.get("geometry")
        if oid_field is not None:
            result.oids.append(feature.get("id", (feature.get("properties") or {}).get(oid_field)))
        if geometry:
            raw = text[pos:stop]
            result.lines.append(
                raw
                if "\n" not in raw and "\r" not in raw
                else json.dumps(feature, ensure_ascii=False, separators=(",", ":"))
            )
        else:
            properties = feature.get("properties") or {}
            point = lonlat.point(properties) if lonlat else None
            result.without_geometry += point is None
            result.lines.append(_line(properties, point))
        pos = stop
    tail = text[pos:]
    result.exceeded = bool(_EXCEEDED.search(tail)) or bool(_EXCEEDED.search(text[: match.start()]))
    if not tail.rstrip().endswith("}"):
        raise ValueError("page ends before the end of the document")
    return result


def parse_esrijson_page(payload: dict[str, Any], lonlat: LonLat | None, oid_field: str | None = None) -> PageResult:
    """Convert an `f=json` page: Esri geometries to GeoJSON, attributes copied as they are."""
    result = PageResult(exceeded=bool(payload.get("exceededTransferLimit")))
    for feature in payload.get("features") or ():
        result.received += 1
        properties = feature.get("attributes") or {}
        if oid_field is not None:
            result.oids.append(properties.get(oid_field))
        geometry = esri_to_geojson(feature.get("geometry"))
        if geometry is None and lonlat is not None:
            geometry = lonlat.point(properties)
        result.without_geometry += geometry is None
        result.lines.append(_line(properties, geometry))
    return result
