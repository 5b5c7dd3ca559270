"""The fast path of the GeoJSON reader: split features with numpy, parse them with Arrow's JSON reader.

Feature boundaries are found by a vectorised structural scan of the raw UTF-8 bytes (quotes, escapes,
brace depth), and each batch of features is handed to `pyarrow.json` as newline-delimited JSON, so no
Python object is built per feature. Batches Arrow cannot type consistently (a property that is a number in
one feature and a string in the next) or whose geometries are not all points fall back to the exact
Python path, feature by feature.

Nesting is bounded (`MAX_DEPTH`) before any parser sees a feature: Arrow's JSON reader crashes the process on
features nested some ten thousand levels deep, and Python's decoder stops at its recursion limit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
import pyarrow as pa

from oa_dagster.conform.columns import TextFallback
from oa_dagster.errors import ConformError

CHUNK_BYTES = 4 << 20
MAX_DEPTH = 200  # objects and arrays inside one feature; real features nest fewer than ten
_NEWLINES_TO_SPACES = bytes.maketrans(b"\n\r", b"  ")


def _real_quotes(data: np.ndarray) -> np.ndarray:
    """Positions of double quotes that are not escaped by an odd run of backslashes."""
    quotes = np.flatnonzero(data == 0x22)
    if len(quotes) == 0 or not (data == 0x5C).any():  # most chunks hold no backslash: a byte scan, not a gather
        return quotes
    maybe_escaped = quotes[(quotes > 0) & (data[np.maximum(quotes - 1, 0)] == 0x5C)]
    if len(maybe_escaped) == 0:
        return quotes
    escaped = []
    for q in maybe_escaped.tolist():
        run = 0
        while q - run - 1 >= 0 and data[q - run - 1] == 0x5C:
            run += 1
        if run % 2:
            escaped.append(q)
    return np.setdiff1d(quotes, np.array(escaped, dtype=quotes.dtype), assume_unique=True)


def _brackets(data: np.ndarray) -> np.ndarray:
    """Positions of `{`, `}`, `[` and `]` (strings included): `[`/`{` and `]`/`}` differ only in bit 0x20."""
    folded = data | 0x20
    return np.flatnonzero((folded == 0x7B) | (folded == 0x7D))


def key_context(data: np.ndarray) -> tuple[int, bool]:
    """Structural depth at the end of `data` and whether the end lies inside a string."""
    quotes = _real_quotes(data)
    structural = _brackets(data)
    structural = structural[(np.searchsorted(quotes, structural) % 2) == 0]
    chars = data[structural]
    opens = np.count_nonzero((chars == 0x7B) | (chars == 0x5B))
    depth = int(opens - np.count_nonzero((chars == 0x7D) | (chars == 0x5D)))
    return depth, len(quotes) % 2 == 1


class TooDeep(Exception):
    """JSON nested deeper than allowed; `position` is the offset in the scanned bytes where it happens."""

    def __init__(self, position: int) -> None:
        super().__init__(position)
        self.position = position


def feature_spans(data: np.ndarray, max_depth: int = MAX_DEPTH) -> tuple[list[tuple[int, int]], int, bool]:
    """Complete top-level objects in `data`, which starts between two features (depth 0, outside strings).

    Returns (start, end-exclusive) spans, the offset after the last complete one, and whether the
    enclosing array closed (a `]` at depth 0: the end of a FeatureCollection's features). Raises `TooDeep`
    where the nesting first exceeds `max_depth`, complete object or not.
    """
    quotes = _real_quotes(data)
    structural = _brackets(data)
    outside = (np.searchsorted(quotes, structural) % 2) == 0
    structural = structural[outside]
    chars = data[structural]
    opens = (chars == 0x7B) | (chars == 0x5B)
    depth_after = np.cumsum(np.where(opens, 1, -1))
    closed = np.flatnonzero(depth_after < 0)
    if len(closed):
        cut = closed[0]
        structural, chars, depth_after = structural[:cut], chars[:cut], depth_after[:cut]
    deep = np.flatnonzero(depth_after > max_depth)
    if len(deep):
        raise TooDeep(int(structural[deep[0]]))
    starts = structural[(chars == 0x7B) & (depth_after == 1)]
    ends = structural[(chars == 0x7D) & (depth_after == 0)]
    count = min(len(starts), len(ends))
    spans = list(zip(starts[:count].tolist(), (ends[:count] + 1).tolist(), strict=True))
    consumed = spans[-1][1] if spans else 0
    return spans, consumed, bool(len(closed))


def feature_texts(stream: BinaryIO, first: bytes, offset: int = 0) -> Iterator[list[bytes]]:
    """Lists of raw feature texts (newlines blanked), read from `first` then `stream` chunk by chunk.

    `offset` is where `first` starts in the file, for error messages.
    """
    pending = first
    done = False
    features = 0
    while not done:
        chunk = stream.read(CHUNK_BYTES)
        at_eof = not chunk
        pending += chunk
        data = np.frombuffer(pending, dtype=np.uint8)
        try:
            spans, consumed, done = feature_spans(data)
        except TooDeep as deep:
            before = len(feature_spans(data[: deep.position], max_depth=len(data))[0])
            raise ConformError(
                f"invalid GeoJSON: feature {features + before + 1} nests objects and arrays deeper "
                f"than {MAX_DEPTH} levels (at byte {offset + deep.position:,})"
            ) from None
        if spans:
            blanked = pending[:consumed].translate(_NEWLINES_TO_SPACES)
            yield [blanked[s:e] for s, e in spans]
        features += len(spans)
        offset += consumed
        pending = pending[consumed:]
        if at_eof and not done:
            if pending.strip(b" \t\r\n,\x1e"):
                raise ConformError("invalid GeoJSON: the file ends inside a feature")
            return


def arrow_batch(texts: list[bytes]) -> pa.Table | None:
    """Parse features with Arrow; None when Arrow cannot type the batch consistently."""
    import pyarrow.json as pajson

    body = b"\n".join(texts)
    try:
        return pajson.read_json(pa.BufferReader(body), read_options=pajson.ReadOptions(block_size=len(body) + 1))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def python_features(texts: list[bytes], first_index: int = 0, fallback: TextFallback | None = None) -> list[dict]:
    """Features parsed one by one; `first_index` is the 0-based position of the first, for error messages.

    A feature that is not valid UTF-8 is decoded by `fallback` (Latin-1, counted) when given."""
    features = []
    for i, text in enumerate(texts):
        try:
            try:
                features.append(json.loads(text))
            except UnicodeDecodeError:
                if fallback is None:
                    raise ConformError(f"invalid GeoJSON: feature {first_index + i + 1} is not UTF-8 text") from None
                features.append(json.loads(fallback.decode(text)))
        except json.JSONDecodeError as exc:
            raise ConformError(f"invalid GeoJSON: feature {first_index + i + 1}: {exc.msg}") from exc
        except RecursionError:
            raise ConformError(
                f"invalid GeoJSON: feature {first_index + i + 1} nests objects and arrays too deeply to be read"
            ) from None
    return features
