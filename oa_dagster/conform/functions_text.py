"""Per-value semantics of the attribute functions that need Python `re` or Python number parsing.

Each function here takes plain `str` values and returns a `str`. They are the readable reference for the
rules in conform-spec §2.2, and the vectorised engine (`functions.py`) calls them once per distinct value
of a batch, so the output is exactly what a row-by-row Python evaluation would give.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol


class Searchable(Protocol):
    """What the grammars need of a pattern: `re.Pattern`, or the engine's time-bounded stand-in."""

    def search(self, value: str) -> Any: ...


class PatternLike(Searchable, Protocol):
    """What `regexp` needs of a pattern (`re.Pattern`, or `patterns.BoundedPattern`)."""

    pattern: str
    groups: int

    def sub(self, repl: Any, value: str) -> str: ...


# House numbers at the start of an address, as the reference grammar accepts them: digits with an optional
# one-digit fraction after a space or hyphen (`123 1/2`, `123-1/2`), two digit groups joined by a hyphen
# (Queens-style `69-15`), or digits with an optional hyphen and one letter (`123A`, `123-a`).
_NUMBER = r"\d+(?:[ -]\d/\d)?|\d+-\d+|\d+-?[A-Z]"
# Unit designators cut from the end of a street (`may_contain_units`) or returned by `postfixed_unit`.
_UNIT = r"(?:(?:UNIT|APARTMENT|APT\.?|SUITE|STE\.?|BUILDING|BLDG\.?|LOT)\s+|#)"

PREFIXED_NUMBER = re.compile(rf"^\s*({_NUMBER})\s+", re.IGNORECASE)
POSTFIXED_STREET = re.compile(rf"^(?:\s*(?:{_NUMBER})\s+)?(.*)", re.IGNORECASE)
# at worst quadratic in a value's length (a long run of spaces): the engine bounds long values
POSTFIXED_STREET_UNITS = re.compile(rf"^(?:\s*(?:{_NUMBER})\s+)?(.+?)(?:\s+{_UNIT}.+)?$", re.IGNORECASE)
POSTFIXED_UNIT = re.compile(rf"\s({_UNIT}.+)$", re.IGNORECASE)


def prefixed_number(value: str, pattern: Searchable = PREFIXED_NUMBER) -> str:
    """The leading house number; `''` unless whitespace follows it (so `3rd St` and a bare `123` give `''`)."""
    match = pattern.search(value)
    return match.group(1) if match else ""


def postfixed_street(value: str, may_contain_units: bool = False, pattern: Searchable | None = None) -> str:
    """The street after an optional leading house number; with units, a trailing unit part is cut too."""
    if pattern is None:
        pattern = POSTFIXED_STREET_UNITS if may_contain_units else POSTFIXED_STREET
    match = pattern.search(value)
    return match.group(1) if match else ""


def postfixed_unit(value: str, pattern: Searchable = POSTFIXED_UNIT) -> str:
    """From the leftmost whitespace-preceded unit designator (a whole word, or `#`) to the end, else `''`."""
    match = pattern.search(value)
    return match.group(1) if match else ""


def remove_prefix(value: str, prefix: str) -> str:
    """`value` without `prefix` and the spaces after it; an empty prefix matches, so leading spaces go."""
    if value.startswith(prefix):
        return value[len(prefix) :].lstrip(" ")
    return value


def remove_postfix(value: str, postfix: str) -> str:
    """`value` without a non-empty `postfix` and the spaces before it; otherwise unchanged."""
    if postfix and value.endswith(postfix):
        return value[: -len(postfix)].rstrip(" ")
    return value


_REPLACE_REFERENCE = re.compile(r"\$\{(\d+)\}|\$(\d+)")
_TEMPLATE_GROUP = re.compile(r"\\g<(\d+)>")


def convert_replace(replace: str) -> str:
    """A source's `$N` / `${N}` replacement text as a Python `re` template (`\\g<N>`)."""
    return _REPLACE_REFERENCE.sub(lambda m: rf"\g<{m.group(1) or m.group(2)}>", replace)


def regexp_search(pattern: PatternLike, value: str) -> str:
    """Search mode: the concatenation of the groups that took part in the first match, else `''`."""
    match = pattern.search(value)
    if match is None:
        return ""
    return "".join([group for group in match.groups() if group is not None])


def regexp_searcher(pattern: PatternLike) -> Callable[[str], str]:
    """`regexp_search` bound to a pattern, with the one-group case (most sources) kept short."""
    search = pattern.search
    if pattern.groups == 0:
        return lambda value: ""
    if pattern.groups == 1:

        def one_group(value: str) -> str:
            match = search(value)
            return (match[1] or "") if match is not None else ""

        return one_group
    return lambda value: regexp_search(pattern, value)


def regexp_replacer(pattern: PatternLike, replace: str) -> Callable[[str], str]:
    """Replace mode: every match replaced by `replace` (`$N` syntax); no match leaves the value unchanged.

    A template that is only literal text and group references is compiled into a function once: Python
    3.11 re-reads a string template on every `sub` call, which costs four times the matching itself.
    Raises `re.error` for a reference to a group the pattern lacks, as `re.sub` would. `pattern` may be
    the engine's time-bounded stand-in for `re.Pattern`; a template with escapes is checked by `re` itself.
    """
    template = convert_replace(replace)
    pieces = _TEMPLATE_GROUP.split(template)
    literals, groups = pieces[0::2], [int(g) for g in pieces[1::2]]
    for group in groups:
        if group > pattern.groups:
            raise re.error(f"invalid group reference {group}")
    if any("\\" in literal for literal in literals):
        re.compile(pattern.pattern).sub(template, "")  # re reads the template before any match: same errors
        return lambda value: pattern.sub(template, value)

    sub = pattern.sub
    if not groups:
        return lambda value: sub(lambda _: literals[0], value)
    if len(groups) == 1:
        before, after = literals
        group = groups[0]
        return lambda value: sub(lambda match: before + (match[group] or "") + after, value)

    def expand(match: re.Match[str]) -> str:
        parts = [literals[0]]
        for number, literal in zip(groups, literals[1:], strict=True):
            parts.append(match[number] or "")
            parts.append(literal)
        return "".join(parts)

    return lambda value: sub(expand, value)


FORMAT_REFERENCE = re.compile(r"\$([0-9]+)")


def format_fields(template: str, fields: Sequence[str]) -> str:
    """Fill `$N` references (1-based) with stripped field values, keeping literals only next to content.

    The literal before a reference is kept for the first reference, or when a field was already emitted and
    this one is non-empty; a field ending in `.0` loses it (floats from shapefiles); a reference beyond the
    fields is dropped with its literal; the trailing literal needs at least one emitted field.
    """
    values = [field.strip() for field in fields]
    parts: list[str] = []
    position = 0
    emitted = 0
    for match in FORMAT_REFERENCE.finditer(template):
        number = int(match.group(1))
        start, end = match.span()
        if 0 < number <= len(values):
            value = values[number - 1]
            if position == 0 or (emitted and value):
                parts.append(template[position:start])
            if value:
                parts.append(value[:-2] if value.endswith(".0") else value)
                emitted += 1
        position = end
    if not emitted:
        return ""
    parts.append(template[position:])
    return "".join(parts)


MPH_TO_KPH = 1.60934


def mph_to_kph(value: str) -> str:
    """Miles per hour to whole km/h with Python's round-half-even; `''` for empty or unparsable input."""
    try:
        return str(round(float(value) * MPH_TO_KPH))
    except (ValueError, OverflowError):
        return ""


_OGR_STRING_LIST = re.compile(r"^\((\d+):(.*)\)$", re.DOTALL)


def value_text(item: Any) -> str:
    """A JSON value as text: strings as they are, null as `''`, numbers in decimal, the rest as JSON."""
    if item is None:
        return ""
    if isinstance(item, str):
        return item
    if isinstance(item, bool | dict | list):
        return json.dumps(item, ensure_ascii=False)
    return str(item)


def repeated_items(value: str) -> list[str]:
    """The items of a repeated value, in the forms our readers can hand over.

    - a JSON array (`["a","b"]`), or a Python list repr (`['a', 'b']`, how readers stringify list fields);
    - OGR's StringList text `(3:a,b,c)`;
    - a bracketed list that is neither (`[a, b]`), split on commas and stripped (the original machine's form);
    - any other non-empty value is one item (a layer where the element occurs once has plain strings).
    """
    text = value.strip()
    if not text:
        return []
    if text.startswith("[") and text.endswith("]"):
        for parse in (json.loads, ast.literal_eval):
            try:
                parsed = parse(text)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
            if isinstance(parsed, list | tuple):
                return [value_text(item) for item in parsed]
        inner = text[1:-1].strip()
        return [item.strip() for item in inner.split(",")] if inner else []
    ogr = _OGR_STRING_LIST.match(text)
    if ogr:
        return ogr.group(2).split(",") if int(ogr.group(1)) else []
    return [value]


def get_item(value: str, index: int) -> str:
    """Item `index` (0-based, negative counts from the end, like Python) of a repeated value, else `''`.

    0-based because the documented example (`jednostkaAdministracyjna`, index 3 → the gmina `Bartniczka`)
    picks the fourth of Poland's country/voivodeship/county/commune elements.
    """
    items = repeated_items(value)
    try:
        return items[index]
    except IndexError:
        return ""


def accuracy_code(value: str) -> int:
    """An accuracy value as the output integer: `1`–`5` (also `2.0`, surrounding space) kept, anything else 5."""
    text = value.strip()
    if text.endswith(".0"):
        text = text[:-2]
    return int(text) if text in {"1", "2", "3", "4", "5"} else 5
