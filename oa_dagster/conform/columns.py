"""Turning source columns of any type into the string columns the attribute functions work on.

Two traps of real data are handled here, once for every reader: numbers stored as doubles (parcel ids
such as 12345678901.0 must read "12345678901", never "1.2345678901e+10"), and text that is not valid
UTF-8 (shapefiles without a .cpg file are often Latin-1, or the conform's `encoding` is wrong), decoded with
fallback encodings and counted (`TextFallback`) instead of failing the run or writing U+FFFD.
"""

from __future__ import annotations

import codecs
import threading
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

EXACT_INTEGER = 2.0**53  # doubles at or beyond this magnitude no longer hold every integer exactly


def float_text(column: pa.Array) -> pa.Array:
    """Doubles as text: integral values without a decimal point or exponent, others as the shortest repr."""
    values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        integral = np.isfinite(values) & (np.floor(values) == values) & (np.abs(values) < 2.0**63)
    text = pc.cast(column, pa.string())
    if not integral.any():
        return text
    as_int = pc.cast(pa.array(np.where(integral, values, 0).astype(np.int64)), pa.string())
    return pc.if_else(
        pa.array(integral) if column.null_count == 0 else pc.and_kleene(pa.array(integral), column.is_valid()),
        as_int,
        text,
    )


def has_inexact_integers(column: pa.Array) -> bool:
    """True when a double column holds integral values too large to be exact (they came from big integers)."""
    values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        return bool(np.any(np.isfinite(values) & (np.abs(values) >= EXACT_INTEGER) & (np.floor(values) == values)))


@dataclass
class TextFallback:
    """The encodings tried, in order, for text that is not valid UTF-8, and how many values needed them.

    Latin-1, tried last, decodes any bytes, so no value ever becomes U+FFFD; the count is what the
    run's log and `state.json` report (`text_values_recoded`), since the conform's `encoding` was wrong for them.
    """

    encodings: tuple[str, ...] = ()  # tried before Latin-1, the last resort
    count: int = 0
    used: dict[str, int] = field(default_factory=dict)  # values per encoding that decoded them
    unit: str = "text values"
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def decode(self, value: bytes) -> str:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            pass
        for encoding in (*self.encodings, "iso-8859-1"):  # every byte is a Latin-1 character: the loop ends
            try:
                text = value.decode(encoding)
            except UnicodeDecodeError:
                continue
            self.add(encoding)
            return text
        raise AssertionError("Latin-1 decodes any bytes")

    def add(self, encoding: str) -> None:
        """One more value (or row) read with `encoding` (batches may be parsed on several threads at once)."""
        with self._lock:
            self.count += 1
            self.used[encoding] = self.used.get(encoding, 0) + 1

    def describe(self, file_name: str) -> str:
        """`3 text values of a.shp could not be decoded ...: read 2 as cp1252, 1 as iso-8859-1`."""
        read_as = ", ".join(f"{n} as {e}" for e, n in self.used.items())
        return (
            f"{self.count} {self.unit} of {file_name} could not be decoded in the encoding expected (is "
            f"conform.encoding or the .cpg wrong?): read {read_as}"
        )


def valid_text(column: pa.Array, fallback: TextFallback) -> pa.Array:
    """A string column whose invalid UTF-8 values are decoded with `fallback`'s encodings instead (counted)."""
    try:
        column.validate(full=True)
        return column
    except pa.ArrowInvalid:
        pass
    raw = column.cast(pa.binary()).to_pylist()
    return pa.array([None if v is None else fallback.decode(v) for v in raw], pa.string())


def as_text(column: pa.Array | pa.ChunkedArray, fallback: TextFallback | None = None) -> pa.Array:
    """Any Arrow column as strings (nulls kept); nested or binary values become their Python text."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return valid_text(column, fallback or TextFallback())
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return float_text(column)
    if pa.types.is_boolean(kind):
        return pc.if_else(column, "true", "false")
    try:
        return pc.cast(column, pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return pa.array([None if v is None else str(v) for v in column.to_pylist()], pa.string())


LATIN1_ERRORS = "oa_dagster.latin1"
"""A codec error handler (`open(..., errors=LATIN1_ERRORS)`): bytes the encoding cannot decode are read as
Latin-1 instead of becoming U+FFFD, and counted per thread (`latin1_decodes`) so the reader can warn."""

_latin1_counts = threading.local()


def _decode_as_latin1(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    _latin1_counts.value = getattr(_latin1_counts, "value", 0) + 1
    positions = getattr(_latin1_counts, "positions", None)
    if positions is not None:
        positions.append(exc.start)
    return exc.object[exc.start : exc.end].decode("iso-8859-1"), exc.end


codecs.register_error(LATIN1_ERRORS, _decode_as_latin1)


def latin1_decodes() -> int:
    """Byte sequences this thread has read through `LATIN1_ERRORS` so far."""
    return getattr(_latin1_counts, "value", 0)


def utf8_or_latin1(data: bytes, positions: list[int]) -> str:
    """`data` as UTF-8, each invalid sequence read as Latin-1 and its offset appended to `positions`."""
    _latin1_counts.positions = positions
    try:
        return data.decode("utf-8", errors=LATIN1_ERRORS)
    finally:
        _latin1_counts.positions = None
