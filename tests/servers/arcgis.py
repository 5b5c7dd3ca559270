"""A fake ArcGIS REST server speaking enough of the API for the dumper: metadata, count, ids, queries.

Layers are registered under `/arcgis/rest/services/<name>/FeatureServer/0` with switches for the
behaviours real servers show (no pagination, no GeoJSON, Token Required, 500s, dropped connections,
short pages, a count larger than what is served, pages that trickle, gzip responses, padded pages).
Responses can be cached by query so a benchmark measures the client, not this server's JSON encoding.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.servers.downloads import drip_body

_RANGE = re.compile(r"^\s*(\w+)\s*(>=|>)\s*(-?\d+)\s+AND\s+\w+\s*(<=|<)\s*(-?\d+)\s*$", re.I)
TOKEN_ERROR = {"error": {"code": 499, "message": "Token Required", "details": []}}


@dataclass
class FakeLayer:
    """One layer's features (Esri JSON: `attributes` + `geometry`) and how the server misbehaves."""

    features: list[dict[str, Any]]
    geometry_type: str = "esriGeometryPoint"
    oid_field: str = "OBJECTID"
    max_record_count: int = 1000
    supports_pagination: bool = True
    supports_geojson: bool = True
    supports_ids: bool = True
    token_required: bool = False
    latency: float = 0.0
    fail_queries: int = 0  # first N feature queries: HTTP 500
    error_queries: int = 0  # first N feature queries: HTTP 200 with an ArcGIS error 500 object
    drop_queries: int = 0  # first N feature queries: half the body, then the connection closes
    short_queries: int = 0  # first N feature queries: silently half the records
    real_limit: int | None = None  # at most this many records per query, whatever maxRecordCount says
    count_extra: int = 0  # the count reports this many features more than are served
    drip: float = 0.0  # feature queries: seconds between `drip_bytes`-byte pieces of the body
    drip_bytes: int = 1
    pad_bytes: int = 0  # feature queries: this many spaces after the JSON (valid, and compresses ~1000x)
    gzip: bool = False  # every response with Content-Encoding: gzip
    cache_responses: bool = False
    # `editingInfo` in the metadata (lastEditDate / dataLastEditDate, epoch ms): None = the layer tracks no edits
    editing_info: dict[str, Any] | None = None
    supports_statistics: bool = True  # `outStatistics` min/max queries
    hits: int = 0  # every request to this layer (metadata, count, ids, statistics, pages)
    in_flight: int = 0  # requests being answered now
    most_in_flight: int = 0  # the most answered at once: whether a client asked concurrently
    statistics_queries: int = 0  # `outStatistics` requests
    bytes_sent: int = 0  # response bodies, as sent
    queries: list[dict[str, str]] = field(default_factory=list)
    _cache: dict[tuple, bytes] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def field_list(self) -> list[dict[str, Any]]:
        names: dict[str, Any] = {}
        for feature in self.features[:50]:
            for key, value in feature["attributes"].items():
                names.setdefault(key, value)
        kinds = {bool: "esriFieldTypeSmallInteger", int: "esriFieldTypeInteger", float: "esriFieldTypeDouble"}
        return [
            {
                "name": n,
                "type": "esriFieldTypeOID" if n == self.oid_field else kinds.get(type(v), "esriFieldTypeString"),
            }
            for n, v in names.items()
        ]

    def metadata(self) -> dict[str, Any]:
        xs, ys = [], []
        for feature in self.features:
            for x, y in _points(feature.get("geometry")):
                xs.append(x)
                ys.append(y)
        extent = {
            "xmin": min(xs, default=0),
            "ymin": min(ys, default=0),
            "xmax": max(xs, default=1),
            "ymax": max(ys, default=1),
            "spatialReference": {"wkid": 4326, "latestWkid": 4326},
        }
        return {
            "currentVersion": 10.91,
            "name": "fake",
            "type": "Feature Layer",
            "geometryType": self.geometry_type,
            "objectIdField": self.oid_field,
            "fields": self.field_list(),
            "maxRecordCount": self.max_record_count,
            "advancedQueryCapabilities": {"supportsPagination": self.supports_pagination},
            "supportedQueryFormats": "JSON, geoJSON, PBF" if self.supports_geojson else "JSON",
            "extent": extent,
            **({"editingInfo": self.editing_info} if self.editing_info is not None else {}),
        }

    def take_fault(self, name: str) -> bool:
        with self._lock:
            left = getattr(self, name)
            if left > 0:
                setattr(self, name, left - 1)
                return True
            return False


def _points(geometry: dict[str, Any] | None) -> list[tuple[float, float]]:
    if not geometry:
        return []
    if "x" in geometry:
        return [(geometry["x"], geometry["y"])] if geometry["x"] is not None else []
    parts = geometry.get("points") and [geometry["points"]] or geometry.get("paths") or geometry.get("rings") or []
    return [(p[0], p[1]) for part in parts for p in part]


def to_geojson_geometry(geometry: dict[str, Any] | None) -> dict[str, Any] | None:
    """The fake's own minimal conversion (what a real server sends for f=geojson)."""
    if not geometry:
        return None
    if "x" in geometry:
        return {"type": "Point", "coordinates": [geometry["x"], geometry["y"]]}
    if "paths" in geometry:
        paths = geometry["paths"]
        return (
            {"type": "LineString", "coordinates": paths[0]}
            if len(paths) == 1
            else {"type": "MultiLineString", "coordinates": paths}
        )
    if "rings" in geometry:
        return {"type": "Polygon", "coordinates": [ring[::-1] for ring in geometry["rings"]]}
    if "points" in geometry:
        return {"type": "MultiPoint", "coordinates": geometry["points"]}
    return None


def _select(layer: FakeLayer, params: dict[str, str]) -> list[dict[str, Any]] | dict[str, Any]:
    features = layer.features
    where = params.get("where", "1=1").strip()
    if where not in ("1=1", "1 = 1"):
        match = _RANGE.match(where)
        if not match or match.group(1) != layer.oid_field:
            return {"error": {"code": 400, "message": "Unable to complete operation.", "details": [where]}}
        lo, hi = int(match.group(3)), int(match.group(5))
        lo_ok = (lambda v: v >= lo) if match.group(2) == ">=" else (lambda v: v > lo)
        hi_ok = (lambda v: v <= hi) if match.group(4) == "<=" else (lambda v: v < hi)
        features = [
            f for f in features if lo_ok(f["attributes"][layer.oid_field]) and hi_ok(f["attributes"][layer.oid_field])
        ]
    if params.get("objectIds"):
        wanted = {int(v) for v in params["objectIds"].split(",")}
        features = [f for f in features if f["attributes"][layer.oid_field] in wanted]
    if params.get("geometry"):
        xmin, ymin, xmax, ymax = (float(v) for v in params["geometry"].split(","))
        features = [
            f for f in features if any(xmin <= x <= xmax and ymin <= y <= ymax for x, y in _points(f.get("geometry")))
        ]
    return features


def render_query(layer: FakeLayer, params: dict[str, str]) -> dict[str, Any]:
    if params.get("returnCountOnly") == "true":
        return {"count": len(layer.features) + layer.count_extra}
    if params.get("returnIdsOnly") == "true":
        if not layer.supports_ids:
            return {"error": {"code": 400, "message": "Unable to complete operation.", "details": []}}
        return {
            "objectIdFieldName": layer.oid_field,
            "objectIds": [f["attributes"][layer.oid_field] for f in layer.features],
        }
    if params.get("outStatistics"):
        return _statistics(layer, json.loads(params["outStatistics"]))
    if "resultOffset" in params and not layer.supports_pagination:
        return {"error": {"code": 400, "message": "Pagination is not supported.", "details": []}}
    selected = _select(layer, params)
    if isinstance(selected, dict):
        return selected
    offset = int(params.get("resultOffset", 0))
    limit = min(int(params.get("resultRecordCount", layer.max_record_count)), layer.max_record_count)
    if layer.real_limit is not None:
        limit = min(limit, layer.real_limit)
    page = selected[offset : offset + limit]
    ids = [f["attributes"].get(layer.oid_field) for f in page]
    exceeded = offset + limit < len(selected) and layer.real_limit is None
    out_fields = params.get("outFields", "*")
    if out_fields != "*":
        known = {f["name"] for f in layer.field_list()}
        names = [n for n in out_fields.split(",") if n]
        bad = [n for n in names if n not in known]
        if bad:
            return {"error": {"code": 400, "message": f"Invalid field: {bad[0]}", "details": []}}
        page = [{"attributes": {n: f["attributes"].get(n) for n in names}, "geometry": f.get("geometry")} for f in page]
    if params.get("f") == "geojson":
        body: dict[str, Any] = {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "id": oid,
                    "geometry": to_geojson_geometry(f.get("geometry")),
                    "properties": f["attributes"],
                }
                for oid, f in zip(ids, page, strict=True)
            ],
        }
        if exceeded:
            body["properties"] = {"exceededTransferLimit": True}
        return body
    return {
        "objectIdFieldName": layer.oid_field,
        "geometryType": layer.geometry_type,
        "spatialReference": {"wkid": 4326, "latestWkid": 4326},
        "fields": layer.field_list(),
        "features": page,
        **({"exceededTransferLimit": True} if exceeded else {}),
    }


def _statistics(layer: FakeLayer, wanted: list[dict[str, str]]) -> dict[str, Any]:
    """min / max / count of a field over all features (what change detection asks of the object ids)."""
    if not layer.supports_statistics:
        return {"error": {"code": 400, "message": "Unable to complete operation.", "details": ["statistics"]}}
    attributes: dict[str, Any] = {}
    for statistic in wanted:
        values = [f["attributes"].get(statistic["onStatisticField"]) for f in layer.features]
        values = [v for v in values if v is not None]
        kind = statistic["statisticType"]
        value = {"min": min, "max": max}.get(kind, len)(values) if values else None
        attributes[statistic["outStatisticFieldName"]] = value
    return {"features": [{"attributes": attributes}]}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeArcGISServer

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle(dict(parse_qsl(urlsplit(self.path).query)))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = dict(parse_qsl(self.rfile.read(length).decode("utf-8")))
        self._handle({**dict(parse_qsl(urlsplit(self.path).query)), **form})

    def _send(
        self, status: int, body: bytes, *, drop: bool = False, layer: FakeLayer | None = None, drip: float = 0.0
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        if layer is not None and layer.gzip:
            body = gzip.compress(body)
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if layer is not None:
            with layer._lock:
                layer.bytes_sent += len(body)
        if drip:
            drip_body(self, body, layer.drip_bytes if layer is not None else 1, drip)
            return
        if drop:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def _handle(self, params: dict[str, str]) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        is_query = path.endswith("/query")
        layer = self.server.layers.get(path[: -len("/query")] if is_query else path)
        if layer is None:
            self._send(404, b'{"error":{"code":404,"message":"Not found"}}')
            return
        server = self.server
        with layer._lock, server.lock:
            layer.hits += 1
            layer.in_flight += 1
            layer.most_in_flight = max(layer.most_in_flight, layer.in_flight)
            layer.statistics_queries += bool(params.get("outStatistics"))
            server.in_flight += 1
            server.most_in_flight = max(server.most_in_flight, server.in_flight)
        try:
            self._answer(layer, is_query, params)
        finally:
            with layer._lock, server.lock:
                layer.in_flight -= 1
                server.in_flight -= 1

    def _answer(self, layer: FakeLayer, is_query: bool, params: dict[str, str]) -> None:
        if layer.latency:
            time.sleep(layer.latency)
        if layer.token_required:
            self._send(200, json.dumps(TOKEN_ERROR).encode())
            return
        if not is_query:
            self._send(200, json.dumps(layer.metadata()).encode(), layer=layer)
            return
        feature_query = (
            params.get("returnCountOnly") != "true" and params.get("returnIdsOnly") != "true"
        ) and not params.get("outStatistics")
        if feature_query:
            layer.queries.append(params)
            if layer.take_fault("fail_queries"):
                self._send(500, b"Internal Server Error")
                return
            if layer.take_fault("error_queries"):
                self._send(200, b'{"error":{"code":500,"message":"Error performing query operation"}}')
                return
        key = tuple(sorted(params.items()))
        body = layer._cache.get(key) if layer.cache_responses else None
        if body is None:
            payload = render_query(layer, params)
            if feature_query and "features" in payload and layer.take_fault("short_queries"):
                payload["features"] = payload["features"][: len(payload["features"]) // 2]
            body = json.dumps(payload, separators=(",", ":")).encode()
            if feature_query and layer.pad_bytes:
                body += b" " * layer.pad_bytes
            if layer.cache_responses:
                layer._cache[key] = body
        self._send(
            200,
            body,
            drop=feature_query and layer.take_fault("drop_queries"),
            layer=layer,
            drip=layer.drip if feature_query else 0.0,
        )


class FakeArcGISServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.layers: dict[str, FakeLayer] = {}
        self.lock = threading.Lock()
        self.in_flight = 0  # requests to any layer being answered now, and the most at once
        self.most_in_flight = 0
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def add_layer(self, name: str, layer: FakeLayer, kind: str = "FeatureServer") -> str:
        path = f"/arcgis/rest/services/{name}/{kind}/0"
        self.layers[path] = layer
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def start(self) -> FakeArcGISServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def point_features(n: int, *, start: int = 1, null_geometry_every: int = 0) -> list[dict[str, Any]]:
    """`n` address points with NUMBER/STREET attributes and OIDs from `start`."""
    features = []
    for i in range(start, start + n):
        geometry = (
            None
            if null_geometry_every and i % null_geometry_every == 0
            else {"x": -122.0 + (i % 1000) * 1e-4, "y": 37.0 + (i // 1000) * 1e-4}
        )
        features.append(
            {
                "attributes": {
                    "OBJECTID": i,
                    "NUMBER": str(100 + i),
                    "STREET": f"Main St {i % 7}",
                    "LON": -122.0 + (i % 1000) * 1e-4,
                    "LAT": 37.0 + (i // 1000) * 1e-4,
                    "UNUSED": "x" * 10,
                },
                "geometry": geometry,
            }
        )
    return features
