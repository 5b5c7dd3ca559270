"""A safe bound on what one plain `re` call can cost, read from the pattern's shape.

A timed `regex` call costs ~2 µs more than a plain `re` call (two CPU-clock system calls), four times the
matching itself on address values. Most sources' patterns cannot backtrack badly on short values, and for
those the engine may call plain `re` without a timeout. `PatternCost.plain_max` gives the longest value for
which that is safe: the pattern's backtracking paths are counted from its parse tree and the value length is
capped so that a search takes at most `STEP_LIMIT` steps (some milliseconds, far below the timed path's
limit of a second).

The count is conservative. A quantifier whose body is not a plain run of single characters (a nested
quantifier, an alternation, an assertion) can backtrack exponentially: such a pattern gets -1, the timed
path for every value. So do backreferences, and anything this module does not recognise (the parser is
Python's private `re._parser`; a future Python that changes it only makes every pattern timed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from re import _constants as c  # type: ignore[attr-defined]
from re import _parser  # type: ignore[attr-defined]
from typing import Any

STEP_LIMIT = 1_000_000
MAX_LENGTH = 1 << 20

_ATOMS = {c.LITERAL, c.NOT_LITERAL, c.ANY, c.IN, c.CATEGORY}
_REPEATS = {c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT}


class _Unbounded(Exception):
    """The pattern can backtrack exponentially (or uses something not counted here)."""


def _fixed_run(items: Any) -> bool:
    """Whether a quantifier body is a fixed run of single characters (each repetition a single way)."""
    for op, av in items:
        if op is c.SUBPATTERN:
            if not _fixed_run(av[3]):
                return False
        elif op not in _ATOMS:
            return False
    return len(items) > 0


def _product(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return a[0] + b[0], a[1] * b[1]


def _paths(items: Any) -> tuple[int, int]:
    """(d, k): the pattern has at most k * (n + 1) ** d ways to match from one position of a value of n."""
    paths = (0, 1)
    for op, av in items:
        if op in _ATOMS or op is c.AT:
            continue
        if op in _REPEATS:
            low, high, body = av
            if high <= 1:  # `?`: once or not at all
                inner = _paths(body)
                paths = _product(paths, (inner[0], inner[1] + 1))
            elif _fixed_run(body):
                paths = _product(paths, (1, 1))  # how many times: at most n + 1 choices
            else:
                raise _Unbounded
        elif op is c.SUBPATTERN:
            paths = _product(paths, _paths(av[3]))
        elif op is c.ATOMIC_GROUP:
            paths = _product(paths, _paths(av))
        elif op is c.BRANCH:
            alternatives = [_paths(branch) for branch in av[1]]
            paths = _product(paths, (max(d for d, _ in alternatives), sum(k for _, k in alternatives)))
        elif op in (c.ASSERT, c.ASSERT_NOT):
            paths = _product(paths, _paths(av[1]))  # explored again wherever a path reaches it
        else:
            raise _Unbounded  # backreferences, conditionals
    return paths


@dataclass(frozen=True)
class PatternCost:
    """A pattern's backtracking bound: at most `ways * (n + 1) ** degree` ways from one start position."""

    degree: int = 0
    ways: int = 1
    size: int = 0  # the pattern's length, for the work along one way
    anchored: bool = False  # `^` first (without MULTILINE): every other start position fails at once
    bounded: bool = True  # False: no bound at all (nested quantifiers, backreferences, ...)

    def steps(self, n: int) -> float:
        """Steps of a search (or a substitution, which resumes searching after each match) on n characters."""
        if not self.bounded:
            return math.inf
        one_position = self.ways * (n + 1) ** self.degree * (self.size + n + 1)
        return 2 * ((n + 1) + one_position if self.anchored else (n + 1) * one_position)

    @cached_property
    def plain_max(self) -> int:
        """The longest value a plain `re` call handles within `STEP_LIMIT` steps (-1: not even an empty one)."""
        low, high = -1, MAX_LENGTH
        while low < high:  # the cost grows with n: the largest n within the limit
            middle = (low + high + 1) // 2
            if self.steps(middle) <= STEP_LIMIT:
                low = middle
            else:
                high = middle - 1
        return low


def pattern_cost(source: str, flags: int = 0) -> PatternCost:
    """The bound for `source`; unbounded for anything the count does not cover."""
    try:
        parsed = _parser.parse(source, flags)
        degree, ways = _paths(parsed)
        multiline = parsed.state.flags & c.SRE_FLAG_MULTILINE
        first = parsed[0] if len(parsed) else None
        anchored = (
            first is not None
            and first[0] is c.AT
            and not multiline
            and first[1] in (c.AT_BEGINNING, c.AT_BEGINNING_STRING)
        )
    except Exception:  # _Unbounded, or a parse tree this module does not know
        return PatternCost(bounded=False)
    return PatternCost(degree, ways, len(source), bool(anchored))
