"""Where the sweep tests find a snapshot of the OpenAddresses sources repository (its `sources/` folder).

`OA_SOURCES_SNAPSHOT` names a checkout of https://github.com/openaddresses/openaddresses (the folder holding
`sources/`); without it, a checkout beside this repository's folder at `../shared/openaddresses-sources` is used.
The tests that read it skip, saying where they looked, when there is none: the rest of the suite needs no network
and no snapshot. Their expected counts (2,833 sources, 132 acceptance cases) are those of the pinned snapshot.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SNAPSHOT_VARIABLE = "OA_SOURCES_SNAPSHOT"
BESIDE_THE_REPOSITORY = Path(__file__).resolve().parents[1].parent / "shared" / "openaddresses-sources"


def snapshot_sources() -> Path:
    """The snapshot's `sources/` folder (it may not exist)."""
    return Path(os.environ.get(SNAPSHOT_VARIABLE) or BESIDE_THE_REPOSITORY) / "sources"


def require_snapshot() -> Path:
    """The snapshot's `sources/` folder; skips the calling test when it is absent."""
    sources = snapshot_sources()
    if not sources.is_dir():
        pytest.skip(f"no sources snapshot at {sources} (set {SNAPSHOT_VARIABLE} to a checkout of the sources repo)")
    return sources
