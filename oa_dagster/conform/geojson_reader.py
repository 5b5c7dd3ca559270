"""A streaming GeoJSON reader for FeatureCollections and newline-delimited GeoJSON.

GDAL's GeoJSON driver scans a whole FeatureCollection before reading it and then parses feature by
feature slowly; on a 1M-feature file that alone takes ~20 s here. This reader decodes features one at a
time from a bounded text buffer with the C JSON scanner (about 2 µs a feature) and emits Arrow batches,
so memory stays flat and nothing is read twice. It is also the reader of ArcGIS dumps (`cache.geojsonl`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from oa_dagster.conform.columns import LATIN1_ERRORS, TextFallback, latin1_decodes
from oa_dagster.conform.pipeline import ordered_map, use_threads
from oa_dagster.conform.readers import BATCH_ROWS, OpenedSource, SourceBatch
from oa_dagster.errors import ConformError

CHUNK_CHARS = 4 << 20
PARSE_THREADS = min(4, os.cpu_count() or 1)
_SEPARATORS = re.compile(r"[\s,\x1e]*")
_DECODER = json.JSONDecoder()


class _Buffer:
    """A window over the text of a file that grows on demand and forgets what was consumed."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.text = ""
        self.pos = 0
        self.eof = False

    def more(self) -> bool:
        if self.eof:
            return False
        chunk = self.stream.read(CHUNK_CHARS)
        if not chunk:
            self.eof = True
            return False
        self.text = self.text[self.pos :] + chunk
        self.pos = 0
        return True

    def skip_separators(self) -> str:
        """Skip whitespace, commas and record separators; return the next character ('' at the end)."""
        while True:
            self.pos = _SEPARATORS.match(self.text, self.pos).end()
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.more():
                return ""

    def expect(self, char: str) -> None:
        if self.skip_separators() != char:
            raise ConformError(f"invalid GeoJSON: expected {char!r} at character {self.pos}")
        self.pos += 1

    def value(self) -> Any:
        """Decode the next JSON value, reading more text while it is incomplete."""
        self.skip_separators()
        while True:
            try:
                value, end = _DECODER.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as exc:
                if self.more():
                    continue
                raise ConformError(f"invalid GeoJSON: {exc.msg} near character {exc.pos}") from exc
            except RecursionError:
                raise ConformError(
                    f"invalid GeoJSON: the value at character {self.pos} nests objects and arrays too deeply to be read"
                ) from None
            # a number at the very end of the buffer may continue in the next chunk
            at_end = end == len(self.text) and not self.eof
            if at_end and not isinstance(value, dict | list | str) and self.more():
                continue
            self.pos = end
            return value


def _features(buffer: _Buffer) -> Iterator[dict[str, Any]]:
    """Features of a FeatureCollection, a single Feature, or a sequence of Features."""
    if buffer.skip_separators() != "{":
        raise ConformError("invalid GeoJSON: the file does not start with an object")
    buffer.pos += 1
    members: dict[str, Any] = {}
    while buffer.skip_separators() == '"':
        key = buffer.value()
        buffer.expect(":")
        if key == "features":
            buffer.expect("[")
            while buffer.skip_separators() not in ("]", ""):
                yield buffer.value()
            return
        members[key] = buffer.value()
    buffer.expect("}")
    if members.get("type") != "Feature":
        raise ConformError(f"invalid GeoJSON: a {members.get('type')!r} object without a features array")
    yield members  # newline-delimited GeoJSON (or a single Feature): the rest are whole objects
    while buffer.skip_separators():
        yield buffer.value()


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


_CASTABLE = (pa.types.is_string, pa.types.is_null, pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean)


def _struct_columns(
    struct: pa.StructArray,
    rows: int,
    originals: list[dict[str, Any]] | None = None,
    fallback: TextFallback | None = None,
) -> pa.Table:
    """The fields of a properties struct as string columns (nested values as JSON text).

    Doubles are formatted by `columns.float_text`; with the parsed `originals` at hand, a double field is
    re-read from them so big integers mixed with decimals keep every digit.
    """
    from oa_dagster.conform.columns import float_text, valid_text

    names, arrays = [], []
    for i, field in enumerate(struct.type):
        column = struct.field(i)
        if pa.types.is_floating(field.type) and originals is not None:
            column = pa.array([_as_text(p.get(field.name)) for p in originals], pa.string())
        elif pa.types.is_floating(field.type):
            column = float_text(column)
        elif pa.types.is_boolean(field.type):
            column = pc.if_else(column, "true", "false")
        elif fallback is not None and pa.types.is_string(field.type):
            column = valid_text(column, fallback)  # Arrow's JSON parser does not check UTF-8
        elif any(check(field.type) for check in _CASTABLE):
            column = column.cast(pa.string())
        else:
            column = pa.array([_as_text(v) for v in column.to_pylist()], pa.string())
        names.append(field.name)
        arrays.append(column)
    if not names:
        return pa.table({"": pa.nulls(rows, pa.string())}).drop_columns([""])
    return pa.table(arrays, names=names)


def _property_columns(properties: list[dict[str, Any]]) -> pa.Table:
    """Properties as string columns: Arrow infers them in C++ when types agree, Python does the rest."""
    try:
        struct = pa.array(properties)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        struct = None
    if struct is not None and pa.types.is_struct(struct.type):
        return _struct_columns(struct, len(properties), properties)
    names = list(dict.fromkeys(k for p in properties for k in p))
    return pa.table({name: pa.array([_as_text(p.get(name)) for p in properties], pa.string()) for name in names})


def _points_from_struct(struct: pa.Array) -> tuple[np.ndarray, np.ndarray] | None:
    """lon/lat arrays when every present geometry is a Point; None otherwise (or when Arrow typed it oddly)."""
    n = len(struct)
    if pa.types.is_null(struct.type):
        return np.full(n, np.nan), np.full(n, np.nan)
    if (
        not pa.types.is_struct(struct.type)
        or struct.type.get_field_index("coordinates") < 0
        or struct.type.get_field_index("type") < 0
    ):
        return None
    coords = struct.field("coordinates")
    if not pa.types.is_list(coords.type) or not (
        pa.types.is_floating(coords.type.value_type) or pa.types.is_integer(coords.type.value_type)
    ):
        return None
    valid = struct.is_valid()
    if struct.field("type").filter(valid).drop_null().unique().to_pylist() not in (["Point"], []):
        return None
    lon, lat = np.full(n, np.nan), np.full(n, np.nan)
    lengths = coords.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
    ok = (lengths >= 2) & valid.to_numpy(zero_copy_only=False)
    if ok.any():
        starts = coords.offsets.to_numpy()[:-1][ok]  # absolute positions in `values`, even for slices
        values = coords.values.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
        lon[ok], lat[ok] = values[starts], values[starts + 1]
    return lon, lat


def _point_coordinates(geometries: list[Any]) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        struct = pa.array(geometries)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return None
    return _points_from_struct(struct)


def _json_kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(type(value), "a number")


def _properties(features: list[dict[str, Any]], first_index: int) -> list[dict[str, Any]]:
    """Each feature's properties; null (or empty) is none, anything else but an object refuses the input."""
    found = []
    for i, feature in enumerate(features):
        properties = feature.get("properties") or {}
        if not isinstance(properties, dict):
            raise ConformError(
                f"invalid GeoJSON: feature {first_index + i + 1}: properties is "
                f"{_json_kind(properties)}, expected an object"
            )
        found.append(properties)
    return found


def _batch(features: list[dict[str, Any]], first_index: int = 0) -> SourceBatch:
    """A batch from parsed features; `first_index` is the 0-based position of the first, for errors."""
    table = _property_columns(_properties(features, first_index))
    geometries = [f.get("geometry") or None for f in features]
    points = _point_coordinates(geometries)
    if points is not None:
        return SourceBatch(columns=table, lon=points[0], lat=points[1])
    import shapely

    texts = [None if g is None else json.dumps(g) for g in geometries]
    try:
        geoms = shapely.from_geojson(texts, on_invalid="ignore")
    except shapely.errors.GEOSException as exc:
        raise ConformError(f"invalid GeoJSON geometry: {exc}") from exc
    return SourceBatch(columns=table, geoms=geoms)


def _arrow_or_python_batch(texts: list[bytes], first_index: int, fallback: TextFallback) -> SourceBatch:
    """A batch through Arrow's JSON parser when it types cleanly and is all points, else feature by feature."""
    from oa_dagster.conform.geojson_fast import arrow_batch, python_features

    table = arrow_batch(texts)
    if table is not None and "geometry" in table.column_names:
        geometry = table.column("geometry").combine_chunks()
        points = _points_from_struct(geometry)
        if points is not None:
            if "properties" in table.column_names:
                properties = table.column("properties").combine_chunks()
                if pa.types.is_struct(properties.type) and not _inexact_doubles(properties):
                    columns = _struct_columns(properties, len(texts), fallback=fallback)
                    return SourceBatch(columns=columns, lon=points[0], lat=points[1])
            else:
                return SourceBatch(
                    columns=_struct_columns(pa.array([{}] * len(texts)), len(texts)), lon=points[0], lat=points[1]
                )
    return _batch(python_features(texts, first_index, fallback), first_index)


def _inexact_doubles(struct: pa.StructArray) -> bool:
    """Whether Arrow stored big integers as doubles (then the exact Python path must read the batch)."""
    from oa_dagster.conform.columns import has_inexact_integers

    return any(
        pa.types.is_floating(field.type) and has_inexact_integers(struct.field(i))
        for i, field in enumerate(struct.type)
    )


def _fast_start(head: bytes, suffix: str) -> int | None:
    """Byte offset where features start as top-level objects (a sequence, or inside the features array).

    None when the layout is not recognised in the first chunk; the exact Python reader then takes over.
    """
    import numpy as np

    from oa_dagster.conform.geojson_fast import MAX_DEPTH, TooDeep, feature_spans, key_context

    stripped = len(head) - len(head.lstrip(b"\xef\xbb\xbf \t\r\n\x1e"))
    if stripped >= len(head) or head[stripped : stripped + 1] != b"{":
        return None
    try:  # a FeatureCollection puts its features two levels down
        spans, _, _ = feature_spans(np.frombuffer(head, dtype=np.uint8)[stripped:], MAX_DEPTH + 2)
        too_deep = False
    except TooDeep:  # not parsed here: the features are located by their key, else `feature_texts` reports it
        spans, too_deep = [], True
    if spans:
        start, end = spans[0]
        try:
            first = json.loads(head[stripped + start : stripped + end])
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            return None
        if isinstance(first, dict) and first.get("type") == "Feature":
            return stripped
    position = head.find(b'"features"')
    while position >= 0:
        depth, in_string = key_context(np.frombuffer(head, dtype=np.uint8)[stripped:position])
        rest = head[position + len(b'"features"') :].lstrip()
        if depth == 1 and not in_string and rest[:1] == b":":
            rest = rest[1:].lstrip()
            if rest[:1] == b"[":
                return len(head) - len(rest) + 1
        position = head.find(b'"features"', position + 1)
    return stripped if too_deep else None


def open_geojson(path: Path, conform: dict[str, Any]) -> OpenedSource:
    """Stream features of a GeoJSON file in batches. GeoJSON is WGS84 (RFC 7946) unless `srs` says otherwise."""
    encoding = conform.get("encoding") or "utf-8-sig"
    utf8 = encoding.lower().replace("_", "-") in ("utf-8", "utf8", "utf-8-sig")
    recoded = TextFallback()  # text that is not in `encoding`: read as Latin-1 and counted, never U+FFFD

    def fast_batches() -> Iterator[SourceBatch] | None:
        from oa_dagster.conform.geojson_fast import CHUNK_BYTES, feature_texts

        stream = path.open("rb")
        head = stream.read(CHUNK_BYTES)
        start = _fast_start(head, path.suffix.lower())
        if start is None:
            stream.close()
            return None

        def chunks() -> Iterator[tuple[list[bytes], int]]:
            read = 0
            for texts in feature_texts(stream, head[start:], start):
                for i in range(0, len(texts), BATCH_ROWS):
                    chunk = texts[i : i + BATCH_ROWS]
                    yield chunk, read
                    read += len(chunk)

        def generate() -> Iterator[SourceBatch]:
            # Arrow parses each batch's JSON without the GIL: batches are parsed side by side, kept in order
            with stream:
                workers = PARSE_THREADS if use_threads() else 1
                yield from ordered_map(lambda chunk: _arrow_or_python_batch(*chunk, recoded), chunks(), workers)

        return generate()

    def batches() -> Iterator[SourceBatch]:
        fast = fast_batches() if utf8 else None
        if fast is not None:
            yield from fast
            return
        counted = latin1_decodes()
        with path.open("r", encoding=encoding, errors=LATIN1_ERRORS, newline="") as stream:
            pending: list[dict[str, Any]] = []
            read = 0
            for feature in _features(_Buffer(stream)):
                if not isinstance(feature, dict):
                    raise ConformError(
                        f"invalid GeoJSON: feature {read + len(pending) + 1} is "
                        f"{_json_kind(feature)}, expected an object"
                    )
                pending.append(feature)
                if len(pending) >= BATCH_ROWS:
                    yield _batch(pending, read)
                    read += len(pending)
                    pending = []
            if pending:
                yield _batch(pending, read)
        recoded.unit = "undecodable byte sequences"
        for _ in range(latin1_decodes() - counted):
            recoded.add("iso-8859-1")

    return OpenedSource(crs=None, batches=batches(), skipped_rows=[0], recoded=recoded)
