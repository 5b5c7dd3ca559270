"""Write conformed features as newline-delimited GeoJSON, one Arrow string operation per column.

Lines are assembled column-wise with pyarrow (escape, then element-wise concatenation) and written
straight from the Arrow data buffer, so no per-feature Python object is ever built on the hot path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from oa_dagster.conform.arrow_buffers import value_offsets


def _as_string(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The values as a non-null `pa.string()` array (null as `''`), copied only when something changes."""
    if isinstance(values, pa.ChunkedArray):
        values = values.chunk(0) if values.num_chunks == 1 else values.combine_chunks()
    if not pa.types.is_string(values.type):
        values = pc.cast(values, pa.string())
    return pc.fill_null(values, "") if values.null_count else values


def _data_bytes(values: pa.Array) -> np.ndarray:
    """The UTF-8 bytes of a string array's visible values (one numpy view, no copy)."""
    buffer = values.buffers()[2]
    if buffer is None or len(values) == 0:
        return np.empty(0, dtype=np.uint8)
    offsets = value_offsets(values)
    return np.frombuffer(buffer, dtype=np.uint8)[offsets[0] : offsets[-1]]


def json_escape(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """String contents escaped for a JSON string literal (without the surrounding quotes).

    Byte scans decide which (rare) escapes are needed, so clean columns cost one pass over their bytes.
    """
    values = _as_string(values)
    data = _data_bytes(values)
    if np.any(data < 0x20):  # control characters: let json do the rare, exact escaping
        return pa.array([json.dumps(v, ensure_ascii=False)[1:-1] for v in values.to_pylist()], pa.string())
    if np.any((data == 0x5C) | (data == 0x22)):  # backslash or double quote
        values = pc.replace_substring(pc.replace_substring(values, "\\", "\\\\"), '"', '\\"')
    return values


def format_coordinates(values: np.ndarray) -> pa.Array:
    """Rounded floats as the shortest text that round-trips (e.g. -122.6308422)."""
    values = np.ascontiguousarray(values, dtype=np.float64)
    # straight from the buffer: `pa.array` on numpy imports numpy.ma (10 ms of start-up) to look for masks
    floats = pa.Array.from_buffers(pa.float64(), len(values), [None, pa.py_buffer(values)])
    return pc.cast(floats, pa.string())


def point_geometry_json(lon: np.ndarray, lat: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(
        '{"type":"Point","coordinates":[', format_coordinates(lon), ",", format_coordinates(lat), "]}", ""
    )


def feature_hashes(fingerprint: str, source_columns: pa.Table, geometry: pa.Array) -> pa.Array:
    """16 hex digits from the fingerprint, every source value and the output geometry of each row.

    Depends on the download's bytes (through the fingerprint) and the feature's content, as the original
    machine's hash did, but not on intermediate WKT formatting, so it is reproducible across GDAL versions.
    """
    from oa_dagster.conform.hashing import hash_strings, hex16

    parts = [_as_string(c) for c in source_columns.columns] + [_as_string(geometry)]
    joined = pc.binary_join_element_wise(*parts, "\x1f", null_handling="replace", null_replacement="")
    return hex16(hash_strings(joined, fingerprint))


def _constant_text(values: pa.Array) -> str | None:
    """The text every row of a non-null string array holds, or None when the rows differ."""
    n = len(values)
    if n == 0 or values.null_count:
        return None
    offsets = value_offsets(values)
    width = int(offsets[1] - offsets[0])
    if offsets[-1] - offsets[0] != n * width:
        return None
    if width == 0:
        return ""
    data = np.frombuffer(values.buffers()[2], dtype=np.uint8, count=n * width, offset=int(offsets[0]))
    if not (data.reshape(n, width) == data[:width]).all():
        return None
    return data[:width].tobytes().decode()


def feature_lines(properties: dict[str, pa.Array], integer_properties: set[str], geometry: pa.Array) -> pa.Array:
    """One GeoJSON Feature line (with trailing newline) per row; properties in the given order.

    Arrow joins the pieces row by row at a cost per piece, so a property whose rows all hold the same text (a
    constant, an empty column) goes into the literal text around it rather than being a piece of its own.
    """
    pieces: list[pa.Array | str] = []
    literal = '{"type":"Feature","properties":{'
    for i, (name, values) in enumerate(properties.items()):
        comma = "," if i else ""
        quote = "" if name in integer_properties else '"'
        text = _as_string(values) if name in integer_properties else json_escape(values)
        constant = _constant_text(text)
        if constant is not None:
            literal += f'{comma}"{name}":{quote}{constant}{quote}'
        else:
            pieces += [f'{literal}{comma}"{name}":{quote}', text]
            literal = quote
    pieces += [f'{literal}}},"geometry":', geometry, "}\n"]
    return pc.binary_join_element_wise(*pieces, "")


def write_lines(out: BinaryIO, lines: pa.Array) -> None:
    """Write a string array's contents without copying each line into Python."""
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    if len(lines) == 0:
        return
    offsets = value_offsets(lines)
    data = lines.buffers()[2]
    out.write(memoryview(data)[offsets[0] : offsets[-1]])


def open_output(path: Path) -> BinaryIO:
    return path.open("wb", buffering=1 << 20)
