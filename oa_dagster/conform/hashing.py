"""Per-feature hashes computed column-wise: 16 hex digits from the download fingerprint and row content.

The original machine hashed a JSON dump of each row with sha1, about 1 µs a row in Python. Here every row
of a batch is hashed at once with numpy, eight bytes per step (a multiply-xorshift hash over 64-bit
words, seeded by the fingerprint), so a million rows take a fraction of a second. Stable across runs,
platforms and library versions; not meant to be cryptographic.

Rows of similar length (address rows) are padded with zero bytes to one width by Arrow and read as a matrix
of words, one contiguous column per step, without indexing. Rows of very different lengths (shapes next to
points) would pad to a matrix many times their size: they are taken longest first instead, so the rows still
being hashed at each step are a prefix of that order, and each step gathers its words from the bytes.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

from oa_dagster.conform.arrow_buffers import value_offsets

_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xFF51AFD7ED558CCD)
_MIX_2 = np.uint64(0xC4CEB9FE1A85EC53)
_SHIFT = np.uint64(33)
_ALL_BITS = np.uint64(0xFFFFFFFFFFFFFFFF)
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _mix(h: np.ndarray, scratch: np.ndarray) -> None:
    """A 64-bit finaliser (xorshift-multiply), in place, so every input bit affects every output bit."""
    np.right_shift(h, _SHIFT, out=scratch)
    h ^= scratch
    h *= _MIX_1
    np.right_shift(h, _SHIFT, out=scratch)
    h ^= scratch
    h *= _MIX_2
    np.right_shift(h, _SHIFT, out=scratch)
    h ^= scratch


def _seed(fingerprint: str) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.sha1(fingerprint.encode()).digest()[:8], "little"))


_PAD_GROWTH = 2  # the padded matrix may be this many times the strings' bytes (plus a word a row)


def hash_strings(values: pa.Array, fingerprint: str) -> np.ndarray:
    """A uint64 hash of each string (nulls hash as empty), seeded by `fingerprint`."""
    import pyarrow.compute as pc

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if values.null_count:
        values = pc.fill_null(values, "")
    values = values.cast(pa.large_string()) if not pa.types.is_large_string(values.type) else values
    n = len(values)
    offsets = value_offsets(values)
    lengths = np.diff(offsets)
    width = (int(lengths.max()) + 7) // 8 * 8 if n else 0
    with np.errstate(over="ignore"):
        h = lengths.astype(np.uint64) * _MULTIPLIER
        h ^= _seed(fingerprint)
        scratch = np.empty(n, dtype=np.uint64)
        words = _padded_words(values, width) if n * width <= _PAD_GROWTH * (offsets[-1] - offsets[0]) + 8 * n else None
        if words is not None:
            _hash_padded(h, words, (lengths + 7) >> 3, scratch)
        else:
            _hash_gathered(h, values, offsets, lengths, scratch)
        _mix(h, scratch)
    return h


def _padded_words(values: pa.Array, width: int) -> np.ndarray | None:
    """The strings zero-padded to `width` bytes, as a (words, rows) matrix; None if Arrow padded otherwise."""
    import pyarrow.compute as pc

    n = len(values)
    padded = pc.ascii_rpad(values, width, "\0")  # pads bytes, not characters
    offsets = value_offsets(padded)
    if width == 0 or offsets[-1] - offsets[0] != n * width:
        return None
    matrix = np.frombuffer(padded.buffers()[2], dtype="<u8", count=n * width // 8, offset=int(offsets[0]))
    return np.ascontiguousarray(matrix.reshape(n, width // 8).T)


def _hash_padded(h: np.ndarray, words: np.ndarray, word_counts: np.ndarray, scratch: np.ndarray) -> None:
    """Each step mixes in one word of every row; a row that has no more words keeps its hash."""
    shortest = int(word_counts.min())
    stepped = np.empty_like(h)
    for step, word in enumerate(words):
        target = h if step < shortest else stepped
        np.bitwise_xor(h, word, out=target)
        _mix(target, scratch)
        target *= _MULTIPLIER
        if step >= shortest:
            np.copyto(h, stepped, where=word_counts > step)


def _hash_gathered(
    h: np.ndarray, values: pa.Array, offsets: np.ndarray, lengths: np.ndarray, scratch: np.ndarray
) -> None:
    """Rows longest first, so each step's rows are a prefix; their words are read at every byte offset."""
    data_buffer = values.buffers()[2]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.empty(0, np.uint8)
    padded = np.zeros(len(data) + 8, dtype=np.uint8)
    padded[: len(data)] = data
    # a uint64 starting at every byte: unaligned reads through a 1-byte stride view
    words = np.ndarray(shape=(len(data) + 1,), dtype="<u8", buffer=padded, offset=0, strides=(1,))
    word_counts = (lengths + 7) >> 3
    order = np.argsort(-word_counts, kind="stable")
    lengths, word_counts, pointers = lengths[order], word_counts[order], offsets[:-1][order]
    # a row's last word keeps only the bytes left in the row (zero-padded)
    tail_bits = (lengths & 7).astype(np.uint64) * np.uint64(8)
    last_word_mask = np.where(tail_bits == 0, _ALL_BITS, (np.uint64(1) << tail_bits) - np.uint64(1))
    # hashing[k]: how many rows (a prefix of `order`) have more than k words
    hashing = len(h) - np.cumsum(np.bincount(word_counts, minlength=1))
    sorted_h = h[order]
    for step in range(len(hashing) - 1):
        active, continuing = int(hashing[step]), int(hashing[step + 1])
        word = words[pointers[:active]]
        word[continuing:] &= last_word_mask[continuing:active]
        h_active = sorted_h[:active]
        h_active ^= word
        _mix(h_active, scratch[:active])
        h_active *= _MULTIPLIER
        pointers[:active] += 8
    h[order] = sorted_h


def hex16(hashes: np.ndarray) -> pa.Array:
    """uint64 values as 16-character lower-case hex strings, without a Python loop."""
    big_endian = hashes.astype(">u8").view(np.uint8).reshape(-1, 8)
    digits = np.empty((len(hashes), 16), dtype=np.uint8)
    digits[:, 0::2] = _HEX[big_endian >> 4]
    digits[:, 1::2] = _HEX[big_endian & 0x0F]
    offsets = np.arange(0, 16 * len(hashes) + 1, 16, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), len(hashes), [None, pa.py_buffer(offsets), pa.py_buffer(digits)])
