"""One GeoParquet 1.1 file per area, layer and licence: every entry's features, streamed in row groups.

Columns: `source` (the source key, e.g. `us/ca/berkeley`), `entry` (the entry name), the layer's output
properties, `geometry` (WKB; null for a feature without one or with coordinates off the globe) and a `bbox`
struct (GeoParquet 1.1 "covering", so DuckDB, GDAL and GeoPandas can skip row groups by extent). The `geo` file
metadata (version, primary column, encoding, geometry types, bbox, CRS as PROJJSON of OGC:CRS84) is only known at
the end, so it is added to the footer just before closing; the rows never sit in memory beyond one row group.
The Arrow schema is not stored in the file, so readers take the `geo` key from the file metadata as the schema's.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from .features import FeatureBlock, in_range, property_schema

GEOPARQUET_VERSION = "1.1.0"
ROW_GROUP_ROWS = 128 * 1024
UNIQUE_COLUMNS = frozenset({"hash", "id", "pid", "number", "geometry"})  # (nearly) one value per feature
_BBOX = pa.struct([("xmin", pa.float64()), ("ymin", pa.float64()), ("xmax", pa.float64()), ("ymax", pa.float64())])
_TYPE_NAMES = {
    shapely.GeometryType.POINT: "Point",
    shapely.GeometryType.LINESTRING: "LineString",
    shapely.GeometryType.LINEARRING: "LineString",
    shapely.GeometryType.POLYGON: "Polygon",
    shapely.GeometryType.MULTIPOINT: "MultiPoint",
    shapely.GeometryType.MULTILINESTRING: "MultiLineString",
    shapely.GeometryType.MULTIPOLYGON: "MultiPolygon",
    shapely.GeometryType.GEOMETRYCOLLECTION: "GeometryCollection",
}


def crs84_projjson() -> dict[str, Any]:
    import pyproj

    return pyproj.CRS("OGC:CRS84").to_json_dict()


def table_schema(layer: str) -> pa.Schema:
    return pa.schema(
        [("source", pa.string()), ("entry", pa.string()), *property_schema(layer), ("geometry", pa.binary())]
        + [("bbox", _BBOX)]
    )


_POINT_WKB = np.dtype([("order", "u1"), ("type", "<u4"), ("x", "<f8"), ("y", "<f8")])  # packed: 21 bytes


def _point_columns(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """present, bounds and WKB of a points block, straight from the coordinates (no geometry objects)."""
    present = in_range(lon, lat)
    rows, count = len(lon), int(present.sum())
    bounds = np.full((rows, 4), np.nan)
    bounds[present] = np.stack([lon[present], lat[present], lon[present], lat[present]], axis=1)
    records = np.empty(count, dtype=_POINT_WKB)
    records["order"], records["type"] = 1, 1  # little endian, Point
    records["x"], records["y"] = lon[present], lat[present]
    offsets = np.zeros(rows + 1, dtype=np.int32)
    np.cumsum(np.where(present, _POINT_WKB.itemsize, 0), out=offsets[1:])
    validity = pa.array(present).buffers()[1]
    wkb = pa.Array.from_buffers(
        pa.binary(), rows, [validity, pa.py_buffer(offsets), pa.py_buffer(records.tobytes())], null_count=rows - count
    )
    return present, bounds, wkb


def _shape_columns(geometry: np.ndarray) -> tuple[np.ndarray, np.ndarray, pa.Array, set[str]]:
    """present, bounds, WKB and geometry type names of shapely geometries; off-globe ones become null."""
    rows = len(geometry)
    present = ~shapely.is_missing(geometry) & ~shapely.is_empty(geometry)
    bounds = np.full((rows, 4), np.nan)
    if present.any():
        bounds[present] = shapely.bounds(geometry[present])
        present &= in_range(bounds[:, 0], bounds[:, 1]) & in_range(bounds[:, 2], bounds[:, 3])
        bounds[~present] = np.nan
    wkb = np.full(rows, None, dtype=object)
    types: set[str] = set()
    if present.any():
        shapes = geometry[present]
        wkb[present] = shapely.to_wkb(shapes, output_dimension=2, byte_order=1)
        types = {_TYPE_NAMES[shapely.GeometryType(t)] for t in np.unique(shapely.get_type_id(shapes)).tolist()}
    return present, bounds, pa.array(wkb, pa.binary()), types


class GeoParquetWriter:
    """Appends feature blocks of many entries; `close()` writes the `geo` metadata and the footer."""

    def __init__(self, path: Path, layer: str, *, row_group_rows: int = ROW_GROUP_ROWS) -> None:
        self.path = path
        self.schema = table_schema(layer)
        self.row_group_rows = row_group_rows
        self.features = 0
        self.geometry_types: set[str] = set()
        self.bbox = [np.inf, np.inf, -np.inf, -np.inf]
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        # dictionary pages only where values repeat (a unique `hash` would build one and throw it away: 3x slower);
        # no statistics on WKB (meaningless), but on `bbox`, which is what lets readers skip row groups
        self._writer = pq.ParquetWriter(
            path,
            self.schema,
            compression="zstd",
            store_schema=False,
            use_dictionary=[f.name for f in self.schema if f.name not in UNIQUE_COLUMNS and f.type != _BBOX],
            write_statistics=[f.name for f in self.schema if f.name != "geometry"],
        )

    def write(self, source_key: str, name: str, block: FeatureBlock) -> None:
        rows = block.rows
        if not rows:
            return
        if block.points is not None:
            present, bounds, wkb = _point_columns(*block.points)
            if present.any():
                self.geometry_types.add("Point")
        else:
            present, bounds, wkb, types = _shape_columns(block.shapes())
            self.geometry_types |= types
        if present.any():
            box = bounds[present]
            self.bbox = [
                min(self.bbox[0], float(box[:, 0].min())),
                min(self.bbox[1], float(box[:, 1].min())),
                max(self.bbox[2], float(box[:, 2].max())),
                max(self.bbox[3], float(box[:, 3].max())),
            ]
        bbox = pa.StructArray.from_arrays(
            [pa.array(bounds[:, i], pa.float64()) for i in range(4)], fields=list(_BBOX), mask=pa.array(~present)
        )
        columns = {
            "source": pa.repeat(pa.scalar(source_key, pa.string()), rows),
            "entry": pa.repeat(pa.scalar(name, pa.string()), rows),
            **{field: block.properties.column(field) for field in block.properties.column_names},
            "geometry": wkb,
            "bbox": bbox,
        }
        self._pending.append(pa.table(columns, schema=self.schema))
        self._pending_rows += rows
        self.features += rows
        if self._pending_rows >= self.row_group_rows:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._writer.write_table(pa.concat_tables(self._pending), row_group_size=max(self._pending_rows, 1))
            self._pending, self._pending_rows = [], 0

    def geo_metadata(self) -> dict[str, Any]:
        column: dict[str, Any] = {
            "encoding": "WKB",
            "geometry_types": sorted(self.geometry_types),
            "crs": crs84_projjson(),
            "covering": {
                "bbox": {
                    "xmin": ["bbox", "xmin"],
                    "ymin": ["bbox", "ymin"],
                    "xmax": ["bbox", "xmax"],
                    "ymax": ["bbox", "ymax"],
                }
            },
        }
        if np.isfinite(self.bbox).all():
            column["bbox"] = [float(v) for v in self.bbox]
        return {"version": GEOPARQUET_VERSION, "primary_column": "geometry", "columns": {"geometry": column}}

    def close(self) -> None:
        self._flush()
        self._writer.add_key_value_metadata({"geo": json.dumps(self.geo_metadata())})
        self._writer.close()

    def abort(self) -> None:
        """Close without caring for the file (a failed build throws it away)."""
        with contextlib.suppress(Exception):  # the build already failed; its error is the one that matters
            self._writer.close()
