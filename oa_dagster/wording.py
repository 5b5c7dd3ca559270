"""Counts and ranges as a person would write them: "1 entry", "2 entries", "a to b" but never "a to a".

Plain code (no Dagster): the layer assets' log lines and the command line's report use it alike.
"""

from __future__ import annotations

from collections.abc import Sequence


def plural(count: int, word: str) -> str:
    """`count` with `word`, in the plural unless it is one: "1 entry", "2 entries", "3 addresses entries"."""
    if count == 1:
        return f"{count:,} {word}"
    if word.endswith("y") and word[-2:-1] not in ("a", "e", "i", "o", "u", ""):
        return f"{count:,} {word[:-1]}ies"
    return f"{count:,} {word}s"


def key_range(keys: Sequence[str]) -> str:
    """The first and last of `keys` ("a to b"), the key alone when there is one, "" when none."""
    if not keys:
        return ""
    return keys[0] if len(keys) == 1 or keys[0] == keys[-1] else f"{keys[0]} to {keys[-1]}"
