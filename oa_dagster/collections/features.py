"""Read a stored output (GeoJSON lines, as `conform/writer.py` writes it) in blocks of whole lines.

Each block keeps its raw bytes (copied as-is into the zip) and is parsed column-wise: Arrow's JSON reader for the
properties and the coordinates, shapely's ragged-array constructor for the geometries; so a feature costs a few
hundred nanoseconds and memory depends on the block size, never on the file. A block Arrow cannot type (mixed
geometry types of different nesting, a property of another type) is parsed line by line instead; a line that is
not a JSON feature is counted and left out of the CSV and GeoParquet (it is still in the raw copy).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import shapely

from oa_dagster.conform.fields import output_properties

BLOCK_BYTES = 16 << 20
INTEGER_PROPERTIES = frozenset({"accuracy"})
_RAGGED = {
    # GeoJSON type -> (shapely type, list nesting of `coordinates`)
    "Point": (shapely.GeometryType.POINT, 1),
    "LineString": (shapely.GeometryType.LINESTRING, 2),
    "MultiPoint": (shapely.GeometryType.MULTIPOINT, 2),
    "Polygon": (shapely.GeometryType.POLYGON, 3),
    "MultiLineString": (shapely.GeometryType.MULTILINESTRING, 3),
    "MultiPolygon": (shapely.GeometryType.MULTIPOLYGON, 4),
}


def property_schema(layer: str) -> pa.Schema:
    """The layer's output properties in file order: strings, except the integer `accuracy`."""
    return pa.schema(
        [(name, pa.int64() if name in INTEGER_PROPERTIES else pa.string()) for name in output_properties(layer)]
    )


@dataclass
class FeatureBlock:
    raw: bytes  # the block's lines exactly as stored
    properties: pa.Table  # `property_schema(layer)` columns, one row per feature
    geometry: np.ndarray | None  # shapely geometries (None where a feature has none); None for a points block
    points: tuple[np.ndarray, np.ndarray] | None = None  # lon, lat (NaN without a point) when all are points
    bad_lines: int = 0  # lines that were not JSON features (left out of properties/geometry)

    @property
    def rows(self) -> int:
        return self.properties.num_rows

    def shapes(self) -> np.ndarray:
        """Shapely geometries (built from the coordinates for a points block, which never needs them itself)."""
        if self.geometry is not None:
            return self.geometry
        assert self.points is not None
        lon, lat = self.points
        out = np.full(len(lon), None, dtype=object)
        present = np.isfinite(lon) & np.isfinite(lat)
        out[present] = shapely.points(lon[present], lat[present])
        return out


def in_range(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Coordinates that are numbers on the globe (±180, ±90)."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) <= 180) & (np.abs(lat) <= 90)


def iter_line_blocks(stream: BinaryIO, block_bytes: int = BLOCK_BYTES) -> Iterator[bytes]:
    """Blocks of whole lines of about `block_bytes` (a line longer than that is one block of its own)."""
    rest = b""
    while True:
        chunk = stream.read(block_bytes)
        if not chunk:
            break
        data = rest + chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            rest = data
            continue
        rest = data[cut + 1 :]
        yield data[: cut + 1]
    if rest.strip():
        yield rest + b"\n"


def read_blocks(stream: BinaryIO, layer: str, block_bytes: int = BLOCK_BYTES) -> Iterator[FeatureBlock]:
    for raw in iter_line_blocks(stream, block_bytes):
        yield parse_block(raw, layer)


def parse_block(raw: bytes, layer: str) -> FeatureBlock:
    schema = property_schema(layer)
    parsed = _arrow_block(raw, schema)
    return parsed if parsed is not None else _python_block(raw, schema)


def _arrow_block(raw: bytes, schema: pa.Schema) -> FeatureBlock | None:
    explicit = pa.schema([("properties", pa.struct(list(schema))), ("geometry", pa.struct([("type", pa.string())]))])
    try:
        table = pj.read_json(
            io.BytesIO(raw),
            read_options=pj.ReadOptions(use_threads=False, block_size=max(len(raw), 1 << 20) + 1),
            parse_options=pj.ParseOptions(explicit_schema=explicit, unexpected_field_behavior="infer"),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    props = table.column("properties").combine_chunks()
    if props.null_count:
        return None  # a line without properties: the exact path knows what to do with it
    columns = {name: props.field(name) for name in schema.names}
    properties = pa.table(columns, schema=schema)
    typed = _geometries(table.column("geometry").combine_chunks())
    if isinstance(typed, tuple):
        return FeatureBlock(raw, properties, None, typed)
    geometry = typed if typed is not None else _geojson_geometries(raw)
    if geometry is None or len(geometry) != table.num_rows:
        return None
    return FeatureBlock(raw, properties, geometry)


def _offsets(lists: pa.Array) -> np.ndarray:
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False)
    return np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])


def _geometries(column: pa.StructArray) -> np.ndarray | tuple[np.ndarray, np.ndarray] | None:
    """Geometries from Arrow's typed `coordinates` when the block has one geometry type; else None.

    A block of points gives (lon, lat) arrays instead: addresses never need a shapely object.
    """
    rows = len(column)
    out = np.full(rows, None, dtype=object)
    if column.type.get_field_index("coordinates") < 0:
        return out if column.null_count == rows or pc.all(pc.is_null(column.field("type"))).as_py() else None
    types = column.field("type")
    coords = column.field("coordinates")
    valid = pc.and_(pc.is_valid(column), pc.and_(pc.is_valid(types), pc.is_valid(coords)))
    valid = pc.fill_null(valid, False)
    kinds = pc.unique(types.filter(valid)).to_pylist()
    if not kinds:
        return out
    if len(kinds) != 1 or kinds[0] not in _RAGGED:
        return None
    kind, depth = _RAGGED[kinds[0]]
    lists = coords.filter(valid)
    offsets: list[np.ndarray] = []
    for _ in range(depth - 1):
        if not pa.types.is_list(lists.type):
            return None
        offsets.append(_offsets(lists))
        lists = pc.list_flatten(lists)
    if not pa.types.is_list(lists.type) or lists.null_count:
        return None
    lengths = pc.list_value_length(lists).to_numpy(zero_copy_only=False)
    if len(lengths) and (lengths.min() != 2 or lengths.max() != 2):
        return None  # 3D or malformed positions: the exact path handles them
    values = pc.list_flatten(lists).to_numpy(zero_copy_only=False).astype(np.float64).reshape(-1, 2)
    where = valid.to_numpy(zero_copy_only=False)
    if depth == 1:
        lon, lat = np.full(rows, np.nan), np.full(rows, np.nan)
        lon[where], lat[where] = values[:, 0], values[:, 1]
        return lon, lat
    # Arrow's outermost offsets come first; shapely wants the innermost first
    out[where] = shapely.from_ragged_array(kind, values, tuple(reversed(offsets)))
    return out


def _geojson_geometries(raw: bytes) -> np.ndarray | None:
    """Geometries through GEOS's GeoJSON reader, one per line (features with mixed geometry types)."""
    lines = [line for line in raw.split(b"\n") if line.strip()]
    try:
        features = [json.loads(line) for line in lines]
    except ValueError:
        return None
    return _shapes([f.get("geometry") if isinstance(f, dict) else None for f in features])


def _shapes(geometries: list[Any]) -> np.ndarray:
    out = np.full(len(geometries), None, dtype=object)
    texts = [json.dumps(g) if isinstance(g, dict) and g.get("type") else None for g in geometries]
    for index, text in enumerate(texts):
        if text is None:
            continue
        try:
            out[index] = shapely.from_geojson(text)
        except shapely.errors.GEOSException:
            out[index] = None
    return out


def _as_property(value: Any, integer: bool) -> Any:
    """A property as the Arrow path would type it: strings (objects as JSON), or an int for `accuracy`."""
    if integer:
        try:
            return None if value is None or value == "" else int(value)
        except (TypeError, ValueError):
            return None
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


def _python_block(raw: bytes, schema: pa.Schema) -> FeatureBlock:
    """The exact path: one feature at a time, bad lines counted rather than failing the entry."""
    rows: dict[str, list[Any]] = {name: [] for name in schema.names}
    geometries: list[Any] = []
    bad = 0
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            feature = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if not isinstance(feature, dict) or not isinstance(feature.get("properties"), dict | None):
            bad += 1
            continue
        props = feature.get("properties") or {}
        for name in schema.names:
            rows[name].append(_as_property(props.get(name), name in INTEGER_PROPERTIES))
        geometries.append(feature.get("geometry"))
    table = pa.table({name: pa.array(values, schema.field(name).type) for name, values in rows.items()}, schema=schema)
    return FeatureBlock(raw, table, _shapes(geometries), bad_lines=bad)
