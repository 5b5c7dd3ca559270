"""Whether a source says where it is, in a form the coverage maps and results index can place.

The reference processor reports "Missing or incomplete coverage" (a non-fatal problem: output is still
written) when coverage has none of a US Census code, an ISO 3166 code or a geometry; `country`, `state` and
so on are free text that nothing can map reliably.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import MISSING_COVERAGE
from .model import Source

PLACEABLE_COVERAGE_KEYS: tuple[str, ...] = ("US Census", "ISO 3166", "geometry")


def has_coverage(source: Source | Mapping[str, Any]) -> bool:
    """True when the coverage (of a `Source`, or a source's JSON) has a US Census, ISO 3166 or geometry value.

    An empty value (`{}`, `""`, null) counts as missing: it places nothing.
    """
    data = source.data if isinstance(source, Source) else source
    coverage = data.get("coverage")
    if not isinstance(coverage, Mapping):
        return False
    return any(coverage.get(key) not in (None, "", {}, []) for key in PLACEABLE_COVERAGE_KEYS)


def coverage_problem(source: Source | Mapping[str, Any]) -> str | None:
    """The classic problem string for a source without placeable coverage, else None."""
    return None if has_coverage(source) else MISSING_COVERAGE
