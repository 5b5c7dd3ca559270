"""The preview's point sample: which points it keeps, and that it holds only those (memory flat in the rows)."""

from __future__ import annotations

import numpy as np

from oa_dagster.conform.preview import MAX_POINTS, PreviewData

BATCH = 32768


def _batches(count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(5)
    return [(rng.uniform(-123, -121, BATCH), rng.uniform(37, 38, BATCH)) for _ in range(count)]


def test_sample_thins_batches_once_it_holds_max_points() -> None:
    data, expected, kept = PreviewData(), [], 0
    for lon, lat in _batches(40):
        stride = 1 + kept // MAX_POINTS
        expected.append(lon[::stride])
        kept += len(lon[::stride])
        data.add_points(lon, lat)
    assert data.points_kept == kept > MAX_POINTS
    assert np.array_equal(np.concatenate(data.lon), np.concatenate(expected))


def test_sample_holds_only_the_points_it_keeps() -> None:
    """A strided slice is a view of its whole batch: kept as such, 5M rows held 80 MB more than 1M rows."""
    data = PreviewData()
    for lon, lat in _batches(60):
        data.add_points(lon, lat)
    held = sum((a.base if a.base is not None else a).nbytes for a in [*data.lon, *data.lat])
    assert held == 16 * data.points_kept
