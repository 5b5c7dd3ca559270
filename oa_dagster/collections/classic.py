"""The machine's classic address CSV and its 0.1° spatial summary, built from parsed feature blocks.

CSV: `LON,LAT,NUMBER,STREET,UNIT,CITY,DISTRICT,REGION,POSTCODE,ID,HASH`, Excel dialect as Python's csv module
writes it (CRLF, quotes only around values holding a comma, quote or line break); rows without a point or with
coordinates outside ±180/±90 are dropped. Summary: a count per 0.1° square (floor of lat and lon), rows sorted by
(lat, lon), lon/lat to one decimal and the square as WKT, with an OGR VRT beside it to open it as polygons.
Other layers have no classic CSV; their summary counts each feature at its bounding-box centre.
"""

from __future__ import annotations

from collections import Counter
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from oa_dagster.conform.arrow_buffers import value_offsets

from .features import FeatureBlock, in_range

CSV_COLUMNS = ("LON", "LAT", "NUMBER", "STREET", "UNIT", "CITY", "DISTRICT", "REGION", "POSTCODE", "ID", "HASH")
CSV_HEADER = (",".join(CSV_COLUMNS) + "\r\n").encode()
_FROM_PROPERTY = {
    "NUMBER": "number",
    "STREET": "street",
    "UNIT": "unit",
    "CITY": "city",
    "DISTRICT": "district",
    "REGION": "region",
    "POSTCODE": "postcode",
    "ID": "id",
    "HASH": "hash",
}
SQUARE = 0.1
_ROW_BIAS, _COL_BIAS, _COL_SPAN = 1000, 2000, 4000  # rows -900..900, columns -1800..1800 of 0.1° squares


def feature_points(block: FeatureBlock) -> tuple[np.ndarray, np.ndarray]:
    """lon, lat per feature: a point's coordinates, another geometry's bbox centre, NaN without a geometry."""
    if block.points is not None:
        return block.points
    geometry = block.shapes()
    lon = np.full(len(geometry), np.nan)
    lat = np.full(len(geometry), np.nan)
    present = ~shapely.is_missing(geometry) & ~shapely.is_empty(geometry) if len(geometry) else np.zeros(0, bool)
    if not present.any():
        return lon, lat
    shapes = geometry[present]
    points = shapely.get_type_id(shapes) == shapely.GeometryType.POINT
    bounds = shapely.bounds(shapes)
    x = np.where(points, shapely.get_x(shapes), (bounds[:, 0] + bounds[:, 2]) / 2)
    y = np.where(points, shapely.get_y(shapes), (bounds[:, 1] + bounds[:, 3]) / 2)
    lon[present], lat[present] = x, y
    return lon, lat


def _csv_field(values: pa.Array) -> pa.Array:
    """A column as minimal-quoting CSV fields (what csv.QUOTE_MINIMAL does)."""
    values = pc.fill_null(values.cast(pa.string()), "")
    needs = pc.match_substring_regex(values, '[",\r\n]')
    if not pc.any(needs).as_py():
        return values
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(values, '"', '""'), '"', "")
    return pc.if_else(needs, quoted, values)


def _coordinate_text(values: np.ndarray) -> pa.Array:
    """Shortest text that round-trips, as the GeoJSON had it (the machine's '%.12g' of 7-decimal values)."""
    return pc.cast(pa.array(values, pa.float64()), pa.string())


def write_csv_rows(block: FeatureBlock, out: BinaryIO, lon: np.ndarray, lat: np.ndarray) -> int:
    """Append the block's good rows to `out`; returns how many were written."""
    keep = in_range(lon, lat)
    count = int(keep.sum())
    if not count:
        return 0
    mask = pa.array(keep)
    props = block.properties.filter(mask)
    fields = [_coordinate_text(lon[keep]), _coordinate_text(lat[keep])]
    for column in CSV_COLUMNS[2:]:
        fields.append(_csv_field(props.column(_FROM_PROPERTY[column]).combine_chunks()))
    joined = pc.binary_join_element_wise(*fields, ",")
    lines = pc.binary_join_element_wise(joined, pa.scalar("\r\n"), "")
    out.write(_string_bytes(lines))
    return count


def _string_bytes(values: pa.Array) -> memoryview:
    """The concatenated UTF-8 of a string array, straight from its data buffer."""
    if len(values) == 0:
        return memoryview(b"")
    offsets = value_offsets(values)
    return memoryview(values.buffers()[2])[offsets[0] : offsets[-1]]


class SpatialSummary:
    """Feature counts per 0.1° square, added block by block (a dict of squares, however many features)."""

    def __init__(self) -> None:
        self.squares: Counter[tuple[int, int]] = Counter()

    def add(self, lon: np.ndarray, lat: np.ndarray) -> None:
        keep = in_range(lon, lat)
        if not keep.any():
            return
        # integer cells (floor of x / 0.1), so the sort and the text never drift; one int64 key per cell
        rows = np.floor(lat[keep] / SQUARE).astype(np.int64)
        cols = np.floor(lon[keep] / SQUARE).astype(np.int64)
        cells, counts = np.unique((rows + _ROW_BIAS) * _COL_SPAN + (cols + _COL_BIAS), return_counts=True)
        for cell, count in zip(cells.tolist(), counts.tolist(), strict=True):
            row, col = divmod(cell, _COL_SPAN)
            self.squares[(row - _ROW_BIAS, col - _COL_BIAS)] += count

    def csv(self) -> bytes:
        lines = ["count,lon,lat,area"]
        for (row, col), count in sorted(self.squares.items()):
            lat0, lon0 = row * SQUARE, col * SQUARE
            x0, y0, x1, y1 = (f"{v:.1f}" for v in (lon0, lat0, lon0 + SQUARE, lat0 + SQUARE))
            lines.append(f'{count},{x0},{y0},"POLYGON(({x0} {y0},{x0} {y1},{x1} {y1},{x1} {y0},{x0} {y0}))"')
        return ("\r\n".join(lines) + "\r\n").encode()


def summary_vrt(csv_member: str) -> bytes:
    """An OGR VRT that opens the summary CSV as EPSG:4326 polygons from its WKT `area` column."""
    layer = csv_member.rsplit("/", 1)[-1].removesuffix(".csv")
    return (
        "<OGRVRTDataSource>\n"
        f'  <OGRVRTLayer name="{layer}">\n'
        f"    <SrcDataSource>{layer}.csv</SrcDataSource>\n"
        "    <GeometryType>wkbPolygon</GeometryType>\n"
        "    <LayerSRS>EPSG:4326</LayerSRS>\n"
        '    <GeometryField encoding="WKT" field="area"/>\n'
        '    <Field name="count" type="Integer"/>\n'
        '    <Field name="lon" type="Real"/>\n'
        '    <Field name="lat" type="Real"/>\n'
        "  </OGRVRTLayer>\n"
        "</OGRVRTDataSource>\n"
    ).encode()
