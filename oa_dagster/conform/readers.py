"""Readers: stream a source file as Arrow batches of string columns plus WKB geometry.

Every reader yields `SourceBatch` objects of bounded size so memory stays flat whatever the input size:
CSV through pyarrow's streaming CSV reader (all columns read as strings, like the original machine), and
every OGR format (shapefile, file geodatabase, GeoPackage, GML, GeoJSON, newline-delimited GeoJSON)
through pyogrio's Arrow stream. Attribute values become strings because the attribute functions are
defined on strings.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from oa_dagster.conform.columns import TextFallback, utf8_or_latin1
from oa_dagster.errors import ConformError

BATCH_ROWS = 32768
CSV_BLOCK_BYTES = 4 << 20


@dataclass
class SourceBatch:
    """One batch of source rows: string attribute columns and either WKB or lon/lat geometry."""

    columns: pa.Table
    wkb: pa.Array | None = None  # WKB per row (null = no geometry), OGR formats
    geoms: Any = None  # shapely geometries per row (None = no geometry), mixed GeoJSON
    lon: np.ndarray | None = None  # float coordinates per row (NaN = no geometry), CSV
    lat: np.ndarray | None = None


@dataclass
class OpenedSource:
    """An opened input: its CRS as the file states it (None when unknown) and the batch stream."""

    crs: str | None
    batches: Iterator[SourceBatch]
    skipped_rows: list[int]  # a one-item list the CSV reader increments for rows it had to drop
    recoded: TextFallback | None = None  # counts text values that were not in the encoding GDAL or pyarrow used


def _string_table(batch: pa.RecordBatch | pa.Table, drop: set[str], fallback: TextFallback) -> pa.Table:
    """All non-geometry columns as strings (see `columns.as_text` for numbers and bad UTF-8)."""
    from oa_dagster.conform.columns import as_text

    names = [n for n in batch.schema.names if n not in drop]
    if not names:  # geometry only: a table without columns must still count the rows
        return pa.table({"": pa.nulls(batch.num_rows, pa.string())}).drop_columns([""])
    return pa.table([as_text(batch.column(n), fallback) for n in names], names=names)


# ---------------------------------------------------------------------------------------------- CSV


class _Utf8Checked:
    """A CSV file read for pyarrow as UTF-8: rows that are not (the conform's `encoding` is wrong) are read as
    Latin-1 and counted in `recoded`, and a file with NUL bytes (not text) fails with the offset.

    pyarrow decodes a malformed row for the invalid-row handler itself, and a decoding failure there is
    printed to stderr as "Exception ignored" instead of raised; handing pyarrow valid UTF-8 only avoids that.
    A block of ASCII (most CSVs) costs one byte scan; others one pass of the C decoder while the text is valid.
    """

    def __init__(self, path: Path, recoded: TextFallback | None = None) -> None:
        self.name = path.name
        self._file = path.open("rb")
        self._held = b""  # the start of a character split across two reads
        self._out = b""  # recoded bytes beyond what the last read asked for
        self._offset = 0  # of `_held`'s start in the file
        self._eof = False
        self._line = 0  # newlines before `_held`'s start
        self._last_bad_line = -1
        self.recoded = recoded if recoded is not None else TextFallback(unit="rows")
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            while not self._eof:
                self._fill(1 << 20)
            data, self._out = self._out, b""
            return data
        while len(self._out) < size and not self._eof:
            self._fill(size)
        if len(self._out) <= size:  # the usual case: no copy
            data, self._out = self._out, b""
        else:
            data, self._out = self._out[:size], self._out[size:]
        return data

    def _fill(self, size: int) -> None:
        chunk = self._file.read(size)
        self._eof = not chunk
        data = self._held + chunk if self._held else chunk
        keep = 0 if self._eof else _split_character(data)
        data, self._held = (data[:-keep], data[-keep:]) if keep else (data, b"")
        try:
            if not data.isascii():  # ASCII is UTF-8: a byte scan instead of decoding into a str
                data.decode("utf-8")
            text = data
        except UnicodeDecodeError as exc:
            if b"\x00" in data:  # binary, not text in any 8-bit encoding
                raise ConformError(
                    f"{self.name} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                    f"{self._offset + exc.start:,}): set conform.encoding to the file's encoding"
                ) from None
            text = self._recode(data)
        self._line += data.count(b"\n")
        self._offset += len(data)
        self._out = self._out + text if self._out else text

    def _recode(self, data: bytes) -> bytes:
        """Valid UTF-8 kept, every invalid sequence read as Latin-1; each row that needed it counted once."""
        positions: list[int] = []
        text = utf8_or_latin1(data, positions)
        line, counted_to = self._line, 0
        for position in positions:
            line += data.count(b"\n", counted_to, position)
            counted_to = position
            if line != self._last_bad_line:
                self._last_bad_line = line
                self.recoded.add("iso-8859-1")
        return text.encode("utf-8")

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True
        self._file.close()


def _split_character(data: bytes) -> int:
    """How many bytes at the end of `data` begin a UTF-8 character that the next read completes."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return 0
        if byte >= 0xC0:
            return back if (2 if byte < 0xE0 else 3 if byte < 0xF0 else 4) > back else 0
    return 0


def _csv_input(path: Path, encoding: str, recoded: TextFallback | None = None) -> Any:
    """What pyarrow reads: the path (it transcodes other encodings strictly itself), or checked UTF-8."""
    return _Utf8Checked(path, recoded) if encoding == "utf-8" else path


def _csv_column_names(path: Path, encoding: str, read_options: Any, parse_options: Any) -> list[str]:
    import pyarrow.csv as pcsv

    source = _csv_input(path, encoding)
    try:
        with pcsv.open_csv(source, read_options=read_options, parse_options=parse_options) as reader:
            return list(reader.schema.names)
    finally:
        if not isinstance(source, Path):
            source.close()


def _parse_coordinates(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Coordinates as floats; decimal commas accepted (as the original machine did), bad values NaN."""
    text = pc.utf8_trim_whitespace(pc.replace_substring(column, ",", "."))
    text = pc.if_else(pc.equal(text, ""), None, text)
    try:
        values = pc.cast(text, pa.float64())
    except pa.ArrowInvalid:
        values = pa.array([_to_float(v) for v in text.to_pylist()], pa.float64())
    return values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def _to_float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _find_column(names: list[str], wanted: str) -> str | None:
    if wanted in names:
        return wanted
    lowered = {n.lower(): n for n in names}
    return lowered.get(wanted.lower())


def open_csv(path: Path, conform: dict[str, Any]) -> OpenedSource:
    """Stream a CSV per the conform's `encoding`, `csvsplit`, `headers`/`skiplines`, `lon`/`lat`."""
    import pyarrow.csv as pcsv

    encoding = conform.get("encoding") or "utf-8"
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        encoding = "utf-8"
    delimiter = conform.get("csvsplit") or ","
    if len(delimiter) != 1:
        raise ConformError(f"conform.csvsplit must be one character, got {delimiter!r}")
    headers = int(conform.get("headers", 1) or 1)
    skipped = [0]
    recoded = TextFallback(unit="rows")
    short_rows: list[str] = []

    def on_invalid(row: Any) -> str:
        """Rows with too many fields are dropped (as the original machine did); short rows come back later."""
        if row.actual_columns < row.expected_columns:
            short_rows.append(row.text)
        else:
            skipped[0] += 1
        return "skip"

    parse_options = pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=True, invalid_row_handler=on_invalid)
    if headers == -1:
        read_options = pcsv.ReadOptions(encoding=encoding, autogenerate_column_names=True, block_size=CSV_BLOCK_BYTES)
    else:
        read_options = pcsv.ReadOptions(encoding=encoding, skip_rows=max(headers - 1, 0), block_size=CSV_BLOCK_BYTES)
    try:
        names = _csv_column_names(path, encoding, read_options, parse_options)
    except (pa.ArrowInvalid, UnicodeDecodeError, LookupError) as exc:
        raise ConformError(f"cannot read CSV {path.name} with encoding {encoding!r}: {exc}") from exc
    if headers == -1:
        read_options = pcsv.ReadOptions(
            encoding=encoding, column_names=[f"COLUMN{i + 1}" for i in range(len(names))], block_size=CSV_BLOCK_BYTES
        )
        names = list(read_options.column_names)
    convert_options = pcsv.ConvertOptions(
        column_types={n: pa.string() for n in names}, strings_can_be_null=False, quoted_strings_can_be_null=False
    )

    lon_name = lat_name = None
    if conform.get("lon") is not None or conform.get("lat") is not None:
        lon_name = _find_column(names, str(conform.get("lon")))
        lat_name = _find_column(names, str(conform.get("lat")))
        if lon_name is None or lat_name is None:
            missing = [c for c, n in ((conform.get("lon"), lon_name), (conform.get("lat"), lat_name)) if n is None]
            raise ConformError(
                f"conform.lon/lat name column(s) {missing} not in the CSV (columns: {', '.join(names[:30])})"
            )

    def to_batch(table: pa.Table) -> SourceBatch:
        if lon_name is None:
            return SourceBatch(columns=table)
        lon = _parse_coordinates(table.column(lon_name))
        lat = _parse_coordinates(table.column(lat_name))
        return SourceBatch(columns=table.drop_columns(list({lon_name, lat_name})), lon=lon, lat=lat)

    def padded(rows: list[str]) -> pa.Table:
        """Short rows parsed again, their missing trailing fields empty (spec §3.5 keeps them)."""
        parsed = [r + [""] * (len(names) - len(r)) for r in csv.reader(rows, delimiter=delimiter)]
        return pa.table({name: pa.array([r[i] for r in parsed], pa.string()) for i, name in enumerate(names)})

    def batches() -> Iterator[SourceBatch]:
        skipped[0] = 0  # rows seen while reading the header are counted again below
        short_rows.clear()
        source = _csv_input(path, encoding, recoded)
        try:
            reader = pcsv.open_csv(
                source, read_options=read_options, parse_options=parse_options, convert_options=convert_options
            )
            for record_batch in reader:
                if record_batch.num_rows:
                    yield to_batch(pa.Table.from_batches([record_batch]))
                if short_rows:
                    rows = short_rows[:]
                    short_rows.clear()
                    yield to_batch(padded(rows))
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            raise ConformError(f"cannot parse CSV {path.name}: {exc}") from exc
        finally:
            if not isinstance(source, Path):
                source.close()

    return OpenedSource(crs=None, batches=batches(), skipped_rows=skipped, recoded=recoded)


# ---------------------------------------------------------------------------------------------- OGR


def _ogr_layer(conform: dict[str, Any]) -> int | str:
    layer = conform.get("layer", 0)
    if isinstance(layer, str) and re.fullmatch(r"\d+", layer):
        return int(layer)
    return layer


def _check_shapefile_parts(path: Path) -> None:
    """A shapefile's attributes live in its .dbf: GDAL reads a .shp without one as geometry only, which would
    publish every feature with empty attributes."""
    if path.suffix.lower() != ".shp":
        return
    siblings = {p.name.lower() for p in path.parent.iterdir()}
    if f"{path.stem}.dbf".lower() not in siblings:
        raise ConformError(
            f"shapefile {path.name} has no {path.stem}.dbf next to it: the download lacks its attribute table"
        )


def _shapefile_cpg(path: Path) -> str | None:
    """The encoding a shapefile's `.cpg` names (read from the shapefile's own folder only), when Python knows it."""
    if path.suffix.lower() != ".shp":
        return None
    cpg = next((p for p in path.parent.iterdir() if p.name.lower() == f"{path.stem}.cpg".lower()), None)
    if cpg is None or not cpg.is_file() or cpg.is_symlink():
        return None
    name = cpg.read_bytes()[:64].decode("ascii", "replace").strip()
    if name.isdigit():  # ESRI code pages: "1252" is windows-1252, "88591" ISO-8859-1
        name = {"88591": "iso-8859-1", "65001": "utf-8"}.get(name, f"cp{name}")
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def _text_fallback(path: Path, encoding: str | None) -> TextFallback:
    """How text GDAL hands over undecoded is read: as the `.cpg` says when it differs from the conform's
    `encoding`, else as that `encoding` (formats GDAL does not recode, e.g. GeoPackage), then as Latin-1, as
    the original machine did for shapefiles without a `.cpg`."""
    conform_codec = _codec(encoding)
    cpg = _shapefile_cpg(path)
    chain = [cpg if cpg != conform_codec else None, conform_codec]
    return TextFallback(tuple(dict.fromkeys(e for e in chain if e and e not in ("utf-8", "iso-8859-1"))))


def _codec(encoding: str | None) -> str | None:
    try:
        return codecs.lookup(encoding).name if encoding else None
    except LookupError:
        return None


def open_ogr(
    path: Path, conform: dict[str, Any], *, columns: list[str] | None = None, fmt: str | None = None
) -> OpenedSource:
    """Stream a GDAL-read file through pyogrio's Arrow interface, with the one driver its format names.

    `gdal_sandbox` has cut GDAL's network and left only the formats' drivers; the file's bytes must be that
    format (`check_content`), so a VRT or anything else that reads other datasets is refused before GDAL sees it.
    """
    import pyogrio
    import pyogrio.raw

    from oa_dagster.conform import gdal_sandbox

    gdal_sandbox.apply()
    _check_shapefile_parts(path)
    gdal_sandbox.check_content(path, fmt or str(conform.get("format")))
    source = gdal_sandbox.gdal_path(path)
    layer = _ogr_layer(conform)
    kwargs: dict[str, Any] = {"layer": layer, "batch_size": BATCH_ROWS, "use_pyarrow": True, "datetime_as_string": True}
    encoding = conform.get("encoding")
    if encoding and path.suffix.lower() in (".shp", ".dbf"):
        # GDAL hands UTF-8 over untouched only when spelt "UTF-8": "UTF8" makes iconv drop invalid bytes silently.
        # The Shapefile driver's ENCODING open option, not pyogrio's `encoding=`: that one sets a thread-local
        # SHAPE_ENCODING on open and restores it on close, and batches are read (and the reader closed) on the
        # read-ahead thread, so the opening thread kept this encoding for every later shapefile it opened
        kwargs["ENCODING"] = "UTF-8" if _codec(encoding) == "utf-8" else encoding
    fallback = _text_fallback(path, encoding)
    try:
        available = pyogrio.list_layers(source)
    except Exception as exc:  # GDAL raises its own error types for unreadable files
        raise ConformError(f"cannot open {path.name}: {exc}") from exc
    names = [str(n) for n in available[:, 0]] if len(available) else []
    if isinstance(layer, int) and layer >= len(names):
        raise ConformError(f"conform.layer {layer} out of range: {path.name} has layers {names}")
    if isinstance(layer, str) and layer not in names:
        lowered = {n.lower(): n for n in names}
        if layer.lower() not in lowered:
            raise ConformError(f"conform.layer {layer!r} not found in {path.name} (layers: {', '.join(names)})")
        kwargs["layer"] = lowered[layer.lower()]
    try:
        context = pyogrio.raw.open_arrow(source, **kwargs)
        meta, reader = context.__enter__()
    except Exception as exc:
        raise ConformError(f"cannot read {path.name}: {exc}") from exc
    geometry_name = meta.get("geometry_name") or "wkb_geometry"

    def batches() -> Iterator[SourceBatch]:
        try:
            for record_batch in reader:
                if record_batch.num_rows == 0:
                    continue
                wkb = None
                if geometry_name in record_batch.schema.names:
                    wkb = record_batch.column(geometry_name)
                columns = _string_table(record_batch, {geometry_name}, fallback)
                yield SourceBatch(columns=columns, wkb=wkb)
        except ConformError:
            raise
        except Exception as exc:
            raise ConformError(f"cannot read {path.name}: {exc}") from exc
        finally:
            context.__exit__(None, None, None)

    return OpenedSource(crs=meta.get("crs"), batches=batches(), skipped_rows=[0], recoded=fallback)


def open_source_file(path: Path, fmt: str, conform: dict[str, Any]) -> OpenedSource:
    """Open `path` with the reader the conform's `format` names, never by guessing from the file.

    CSV goes to pyarrow and GeoJSON to `geojson_reader` (the caller passes `geojson` for ArcGIS dumps); the
    other formats to GDAL with exactly their driver (`open_ogr`).
    """
    if fmt == "geojson":
        from oa_dagster.conform.geojson_reader import open_geojson

        return open_geojson(path, conform)
    if fmt == "csv":
        return open_csv(path, conform)
    return open_ogr(path, conform, fmt=fmt)
