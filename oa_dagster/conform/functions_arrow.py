"""Vectorised building blocks of the attribute functions, on Arrow string arrays without nulls.

Only operations whose Arrow semantics equal Python's are done natively here (Arrow's whitespace trim was
checked against `str.strip` over every code point). Anything that needs Python `re` or Python parsing goes
through `per_distinct`, which calls the Python function once per distinct value (or distinct tuple of values)
and spreads the results back with `take`: addresses repeat street names, cities and postcodes a lot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from oa_dagster.conform.arrow_buffers import value_offsets
from oa_dagster.conform.functions_text import FORMAT_REFERENCE

STRING = pa.string()


def text(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A source column as a `pa.string()` array where a null (missing value) is `''`."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    if array.type != STRING:
        array = array.cast(STRING)
    if array.null_count:
        array = pc.fill_null(array, "")
    return array


def constant(value: str, length: int) -> pa.Array:
    return pa.repeat(pa.scalar(value, STRING), length)


def strip(array: pa.Array) -> pa.Array:
    """Python's `str.strip()` on every value; a column whose values start and end in printable ASCII (most)
    is returned as it is, decided from its first and last bytes without a pass of the trim kernel."""
    if _ends_printable_ascii(array):
        return array
    return pc.utf8_trim_whitespace(array)


def _ends_printable_ascii(array: pa.Array) -> bool:
    """Whether every non-empty value's first and last byte is printable ASCII other than space, which no
    strip removes (whitespace is ASCII 0x09-0x0D, 0x1C-0x20 or a character of more than one byte)."""
    if not isinstance(array, pa.Array) or array.type != STRING or array.null_count or len(array) == 0:
        return False
    offsets = value_offsets(array)
    buffer = array.buffers()[2]
    if offsets[-1] == offsets[0] or buffer is None:
        return True  # every value empty
    data = np.frombuffer(buffer, dtype=np.uint8)
    # an empty value's "first" and "last" bytes are its neighbours' (clipped at the ends): not counted below
    firsts = data.take(offsets[:-1], mode="clip")
    lasts = data.take(offsets[1:] - 1, mode="clip")
    printable = (firsts > 0x20) & (firsts < 0x7F) & (lasts > 0x20) & (lasts < 0x7F)
    return bool((printable | (offsets[1:] == offsets[:-1])).all())


def nonempty(array: pa.Array) -> pa.Array:
    return pc.not_equal(array, pa.scalar("", STRING))


def join_nonempty(arrays: Sequence[pa.Array], separator: str, length: int) -> pa.Array:
    """Strip each value, drop the empty ones, join the rest with `separator` (the `list` / `join` rule).

    One join of the stripped values and, between them, a separator column that holds `separator` where a
    value follows an earlier non-empty one and `''` elsewhere: no nulls, so no trailing separator to cut.
    """
    if not arrays:
        return constant("", length)
    stripped = [strip(pc.fill_null(a, "") if a.null_count else a) for a in arrays]  # a null is dropped too
    pieces: list[pa.Array] = [stripped[0]]
    seen = nonempty(stripped[0])
    for value in stripped[1:]:
        if separator:
            present = nonempty(value)
            pieces.append(_text_where(pc.and_(seen, present), separator))
            seen = pc.or_(seen, present)
        pieces.append(value)
    return pc.binary_join_element_wise(*pieces, "") if len(pieces) > 1 else pieces[0]


def _text_where(mask: pa.Array, text: str) -> pa.Array:
    """`text` where `mask` is true, `''` elsewhere, built straight from the mask's counts."""
    rows = mask.to_numpy(zero_copy_only=False)
    encoded = text.encode()
    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum(rows, out=offsets[1:])
    count = int(offsets[-1])
    offsets *= len(encoded)
    return pa.Array.from_buffers(STRING, len(rows), [None, pa.py_buffer(offsets), pa.py_buffer(encoded * count)])


def first_non_blank(arrays: Sequence[pa.Array], length: int) -> pa.Array:
    """The first value that is not blank after strip, returned unstripped; `''` when there is none."""
    result = constant("", length)
    for array in reversed(arrays):
        result = pc.if_else(nonempty(strip(array)), array, result)
    return result


def keep_nonempty(new: pa.Array, previous: pa.Array | None) -> pa.Array:
    """`new` where it is non-empty, else `previous` (or `''`): how a chain step updates its bare variable."""
    if previous is None:
        return new
    return pc.if_else(nonempty(new), new, previous)


def without_trailing_zero(array: pa.Array) -> pa.Array:
    """Drop one trailing `.0` (house numbers stored as floats); a column without one is returned as it is."""
    ends = pc.ends_with(array, ".0")
    if not pc.any(ends).as_py():
        return array
    return pc.if_else(ends, pc.utf8_slice_codeunits(array, 0, -2), array)


def map_values(array: pa.Array, mapping: Mapping[str, str], default: str) -> pa.Array:
    """Exact lookup of each value in `mapping` (string keys and values), `default` for the rest."""
    if not mapping:
        return constant(default, len(array))
    keys = pa.array(list(mapping), STRING)
    values = pa.array(list(mapping.values()), STRING)
    found = pc.index_in(array, value_set=keys)
    return pc.fill_null(values.take(found), default)


class DistinctValues:
    """Dictionary encodings of one batch's columns, shared by the functions that read the same column.

    A full-address column is often read by two functions (`prefixed_number` and `postfixed_street`).
    """

    def __init__(self) -> None:
        self._encoded: dict[int, tuple[pa.Array, pa.Array, list[str], int]] = {}

    def _hit(self, array: pa.Array) -> tuple[pa.Array, pa.Array, list[str], int]:
        hit = self._encoded.get(id(array))
        if hit is None or hit[0] is not array:
            encoded = pc.dictionary_encode(array)
            lengths = pc.utf8_length(encoded.dictionary)
            longest = pc.max(lengths).as_py() if len(lengths) else 0
            hit = self._encoded[id(array)] = (array, encoded.indices, encoded.dictionary.to_pylist(), longest or 0)
        return hit

    def encode(self, array: pa.Array) -> tuple[pa.Array, list[str]]:
        """Each row's index into the distinct values, and the distinct values as Python strings."""
        hit = self._hit(array)
        return hit[1], hit[2]

    def shape(self, array: pa.Array) -> tuple[int, int]:
        """How many distinct values, and the length in characters of the longest: what a pattern may cost."""
        hit = self._hit(array)
        return len(hit[2]), hit[3]

    def apply(self, function: Callable[[str], Any], array: pa.Array, result_type: pa.DataType = STRING) -> pa.Array:
        """`function` over every value, called once per distinct value."""
        indices, values = self.encode(array)
        return pa.array(list(map(function, values)), result_type).take(indices)


def per_distinct(function: Callable[[str], Any], array: pa.Array, result_type: pa.DataType = STRING) -> pa.Array:
    """`function` over every value, called once per distinct value."""
    return DistinctValues().apply(function, array, result_type)


def format_columns(template: str, arrays: Sequence[pa.Array], length: int) -> pa.Array:
    """`functions_text.format_fields` over whole columns: the literal rules are decided once per template.

    Only element-wise strip / `.0` / emptiness tests are needed per row, all exact in Arrow.
    """
    values = [strip(array) for array in arrays]
    empty = pa.scalar("", STRING)
    emitted = pa.repeat(pa.scalar(False), length)
    parts: list[pa.Array | pa.Scalar] = []
    position = 0
    for number, (start, end) in _format_references(template):
        first = position == 0
        literal = template[position:start]
        position = end
        if not 0 < number <= len(values):
            continue
        value = values[number - 1]
        present = nonempty(value)
        if literal:
            parts.append(
                pa.scalar(literal, STRING)
                if first
                else pc.if_else(pc.and_(emitted, present), pa.scalar(literal, STRING), empty)
            )
        parts.append(without_trailing_zero(value))
        emitted = pc.or_(emitted, present)
    parts.append(pa.scalar(template[position:], STRING))
    joined = pc.binary_join_element_wise(*[p if isinstance(p, pa.Array) else pa.repeat(p, length) for p in parts], "")
    return pc.if_else(emitted, joined, empty)


def _format_references(template: str) -> list[tuple[int, tuple[int, int]]]:
    return [(int(match.group(1)), match.span()) for match in FORMAT_REFERENCE.finditer(template)]


def _distinct_rows(arrays: Sequence[pa.Array]) -> tuple[np.ndarray, np.ndarray]:
    """Row numbers of the first occurrence of each distinct tuple of values, and each row's tuple number."""
    key: np.ndarray | None = None
    for array in arrays:
        encoded = pc.dictionary_encode(array)
        indices = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        if key is None:
            key = indices
        else:
            # renumber before each column so the combined key stays below rows × dictionary size
            key = np.unique(key, return_inverse=True)[1].reshape(-1).astype(np.int64) * len(encoded.dictionary)
            key += indices
    assert key is not None
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


def per_distinct_rows(function: Callable[..., str], arrays: Sequence[pa.Array]) -> pa.Array:
    """`function(*values)` over every row, called once per distinct tuple of values."""
    if len(arrays) == 1:
        return per_distinct(function, arrays[0])
    if len(arrays[0]) == 0:
        return pa.array([], STRING)
    first, inverse = _distinct_rows(arrays)
    columns = [array.take(pa.array(first)).to_pylist() for array in arrays]
    results = pa.array([function(*values) for values in zip(*columns, strict=True)], STRING)
    return results.take(pa.array(inverse))
