"""Zero-copy numpy views of an Arrow string or binary array's buffers, for the per-row work done in numpy.

Offsets are 32-bit for `string`/`binary` and 64-bit for their `large_` types; a sliced array starts at its own
`offset` into the offsets buffer. One place reads them, so no caller gets the width or the slice wrong.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def value_offsets(values: pa.Array) -> np.ndarray:
    """The `len(values) + 1` offsets of the values into the data buffer (a view, not a copy)."""
    large = pa.types.is_large_string(values.type) or pa.types.is_large_binary(values.type)
    width = 8 if large else 4
    return np.frombuffer(
        values.buffers()[1], dtype=np.int64 if large else np.int32, count=len(values) + 1, offset=values.offset * width
    )
