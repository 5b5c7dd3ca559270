"""The conform step's limits for untrusted input: what a source's patterns and coordinates may cost or be.

Defaults suit the largest real sources (tens of millions of rows); tests and operators shrink or widen them
through `run_entry(conform_limits=...)`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConformLimits:
    """Limits of one entry's conform."""

    # CPU seconds one pattern may take on one value (a real pattern takes microseconds; `^(a+)+$` on 33
    # characters takes minutes): sources' `regexp` patterns always, the built-in grammars on long values
    regex_value_seconds: float = 1.0
    # wall seconds one pattern may take over all the values of an entry, so a million values just under
    # the first limit cannot hang a run either
    regex_pattern_seconds: float = 600.0
    # above this share of the features with a geometry outside lon/lat range, the entry is refused (the data
    # is projected and `srs` is missing or wrong) instead of published with those features left out
    max_out_of_range_share: float = 0.5
