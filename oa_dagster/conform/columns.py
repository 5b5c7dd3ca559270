"""Turning source columns of any type into the string columns the attribute functions work on.

Two traps of real data are handled here, once for every reader: numbers stored as doubles (parcel ids
such as 12345678901.0 must read "12345678901", never "1.2345678901e+10"), and text that is not valid
UTF-8 (shapefiles without a .cpg file are often Latin-1), decoded with a fallback encoding instead of
failing the run.
"""

from __future__ import annotations

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


def valid_text(column: pa.Array, fallback_encoding: str) -> pa.Array:
    """A string column whose invalid UTF-8 values are decoded with `fallback_encoding` instead."""
    try:
        column.validate(full=True)
        return column
    except pa.ArrowInvalid:
        pass
    raw = column.cast(pa.binary()).to_pylist()
    return pa.array([None if v is None else _decode(v, fallback_encoding) for v in raw], pa.string())


def _decode(value: bytes, fallback_encoding: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode(fallback_encoding, errors="replace")


def as_text(column: pa.Array | pa.ChunkedArray, fallback_encoding: str = "ISO-8859-1") -> pa.Array:
    """Any Arrow column as strings (nulls kept); nested or binary values become their Python text."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return valid_text(column, fallback_encoding)
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return float_text(column)
    if pa.types.is_boolean(kind):
        return pc.if_else(column, "true", "false")
    try:
        return pc.cast(column, pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return pa.array([None if v is None else str(v) for v in column.to_pylist()], pa.string())
