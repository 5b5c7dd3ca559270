"""Regular expressions with Python `re` meaning and a time bound, for patterns and values from untrusted sources.

Python's `re` cannot be interrupted: one catastrophic pattern (`^(a|aa)+$` on 40 characters) hangs a run for
ever, and no thread can stop it. The `regex` package takes a per-call `timeout=` (CPU seconds of the process),
so every call that could run long goes to `regex`, with the pattern rewritten by `re_compat` to match exactly
what `re` matches. A timed call costs ~2 µs more than the matching itself, so a value short enough for the
pattern's shape to bound its cost (`regex_cost`) is still matched by plain `re`.

Each pattern has two limits per entry (`ConformLimits.regex_*`): CPU seconds for one value, and wall seconds
over all its values, so a million values that each take just under the first limit cannot hang a run either.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from oa_dagster.conform.limits import ConformLimits
from oa_dagster.conform.re_compat import compile_for_ascii, compile_like_re
from oa_dagster.conform.regex_cost import PatternCost, pattern_cost

GRAMMAR_PLAIN_MAX_CHARS = 64
"""Values up to this length go through the built-in grammars (`functions_text`) with plain `re`. Their
shape is known: at worst quadratic in a value's length (a long run of spaces before a unit designator),
never exponential, so 64 characters cost under a millisecond; longer values take the timed path."""

BATCH_STEP_LIMIT = 5_000_000_000
"""A whole batch may run on plain `re` without a clock check per value when its distinct values times the
pattern's bound for the longest stay within this many steps: about a minute in the worst case, which the
bound overstates by orders of magnitude (real values take microseconds)."""


class PatternTooSlow(Exception):
    """A pattern hit one of its time limits; the message names the pattern and the value or the budget."""


class Budget:
    """Wall seconds a pattern may still spend in this entry; `metered` charges one batch's work to it."""

    def __init__(self, label: str, seconds: float) -> None:
        self.label = label
        self.total = seconds
        self.left = seconds
        self.deadline = math.inf  # perf_counter() time the budget runs out at, while a batch is metered

    def exhausted(self) -> PatternTooSlow:
        return PatternTooSlow(
            f"{self.label} used up its {self.total:g} s over the entry's values (ConformLimits.regex_pattern_seconds)"
        )

    @contextmanager
    def metered(self) -> Iterator[None]:
        if self.left <= 0:
            raise self.exhausted()
        start = time.perf_counter()
        self.deadline = start + self.left
        try:
            yield
        finally:
            self.left -= time.perf_counter() - start
            self.deadline = math.inf


def _excerpt(value: str) -> str:
    return repr(value[:40]) + ("…" if len(value) > 40 else "")


class BoundedPattern:
    """A pattern whose calls stop after `value_seconds` of CPU time each, or when its budget runs out.

    Offers what the attribute functions use of `re.Pattern`: `pattern`, `groups`, `search`, `sub`. Values
    up to `plain_max` characters are matched by plain `re` (their cost is bounded by the pattern's shape),
    longer ones by the timed `regex` twin.
    """

    def __init__(
        self, source: str, budget: Budget, value_seconds: float, flags: int = 0, cost: PatternCost | None = None
    ) -> None:
        """`cost` None: the pattern is one of the built-in grammars, plain up to `GRAMMAR_PLAIN_MAX_CHARS`."""
        self.pattern = source
        self.plain = re.compile(source, flags)  # raises re.error, as the reference would
        self._timed = compile_like_re(source, flags)
        self._timed_ascii = compile_for_ascii(source, flags) or self._timed  # most values are ASCII
        self.groups = self.plain.groups
        self.budget = budget
        self.value_seconds = value_seconds
        self.cost = cost
        self.plain_max = GRAMMAR_PLAIN_MAX_CHARS if cost is None else cost.plain_max
        self._bind()

    def plain_for(self, count: int, longest: int) -> re.Pattern[str] | None:
        """The plain `re` pattern when a batch of `count` distinct values, none longer than `longest`, is
        cheap enough in the worst case to run without any per-value check; else None (call `search`/`sub`)."""
        if longest > self.plain_max:
            return None
        if self.cost is not None and count * self.cost.steps(longest) > BATCH_STEP_LIMIT:
            return None
        return self.plain

    def _timeout(self) -> float:
        timeout = min(self.value_seconds, self.budget.deadline - time.perf_counter())
        if timeout <= 0:
            raise self.budget.exhausted()
        return timeout

    def _too_slow(self, value: str, timeout: float) -> PatternTooSlow:
        """Which limit stopped the call: the budget when it set the timeout (the `regex` clock may fire a hair before
        ours reaches the deadline), else the per-value cap."""
        if timeout < self.value_seconds or self.budget.deadline - time.perf_counter() <= 0:
            return self.budget.exhausted()
        return PatternTooSlow(
            f"{self.budget.label} took more than {self.value_seconds:g} s of CPU time on one "
            f"value of {len(value):,} characters, {_excerpt(value)} "
            "(ConformLimits.regex_value_seconds)"
        )

    def _bind(self) -> None:
        """`search` and `sub` as closures over what they read: they run once per distinct value."""
        plain_max, budget, clock = self.plain_max, self.budget, time.perf_counter
        plain_search, plain_sub = self.plain.search, self.plain.sub
        timed, timed_ascii = self._timed, self._timed_ascii

        def search(value: str) -> Any:
            if len(value) <= plain_max:
                if clock() > budget.deadline:
                    raise budget.exhausted()
                return plain_search(value)
            timeout = self._timeout()
            try:
                return (timed_ascii if value.isascii() else timed).search(value, timeout=timeout)
            except TimeoutError:
                raise self._too_slow(value, timeout) from None

        def sub(repl: Any, value: str) -> str:
            if len(value) <= plain_max:
                if clock() > budget.deadline:
                    raise budget.exhausted()
                return plain_sub(repl, value)
            timeout = self._timeout()
            try:
                return (timed_ascii if value.isascii() else timed).sub(repl, value, timeout=timeout)
            except TimeoutError:
                raise self._too_slow(value, timeout) from None

        self.search = search
        self.sub = sub


class PatternSet:
    """The patterns one entry's conform uses, compiled once per entry, each with its own budget."""

    def __init__(self, limits: ConformLimits | None = None) -> None:
        self.limits = limits or ConformLimits()
        self._patterns: dict[tuple[str, str, int], BoundedPattern] = {}

    def _get(self, label: str, source: str, flags: int, grammar: bool) -> BoundedPattern:
        key = (label, source, flags)
        pattern = self._patterns.get(key)
        if pattern is None:
            budget = Budget(label, self.limits.regex_pattern_seconds)
            cost = None if grammar else pattern_cost(source, flags)
            pattern = self._patterns[key] = BoundedPattern(source, budget, self.limits.regex_value_seconds, flags, cost)
        return pattern

    def user(self, source: str) -> BoundedPattern:
        """A source's `regexp` pattern (no flags, as the reference); raises `re.error` for an invalid one."""
        return self._get(f"regexp pattern {source!r}", source, 0, grammar=False)

    def grammar(self, name: str, plain: re.Pattern[str]) -> BoundedPattern:
        """One of the built-in grammars (`prefixed_number`, ...); `name` labels its errors."""
        return self._get(name, plain.pattern, plain.flags, grammar=True)
