"""The attribute-function engine: a layer's conform applied to one batch of source rows, column by column.

Evaluation follows the reference processor (conform-spec §2.1): conform keys in JSON order, lists and
function objects each write `oa:<attribute>` into a working set of columns (so later functions and chain
steps can read them), plain column names are read at the end. It fixes the reference's known bugs: integer
accuracy is output, building `id` is kept, `get` works, a chain variable is always readable in both its
`oa:<var>` and bare forms, column names match case-insensitively, and nothing crashes on a missing column:
it is `''` where the reference tolerated it, and a `ConformError` naming the column where it raised.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import regex

from oa_dagster.conform import functions_arrow as fa
from oa_dagster.conform import functions_text as ft
from oa_dagster.conform.fields import OUTPUT_ATTRIBUTES, output_properties
from oa_dagster.conform.patterns import BoundedPattern, PatternSet, PatternTooSlow
from oa_dagster.errors import ConformError

STRIPPED_ADDRESS_ATTRIBUTES = ("number", "street", "unit")
UNKNOWN_ACCURACY = 5


class WorkingColumns:
    """Source columns plus the `oa:` and chain-variable columns written so far, all non-null strings.

    Lookup is exact first, then case-insensitive (first column in order), like the original machine, which
    lower-cased both the conform and the data: sources and their tests disagree on case (`SITUS`/`situs`).
    """

    def __init__(self, table: pa.Table | pa.RecordBatch) -> None:
        self.length = table.num_rows
        self.source_names = list(table.schema.names)
        self._raw: dict[str, Any] = dict(zip(self.source_names, table.columns, strict=True))
        self._columns: dict[str, pa.Array] = {}
        self._folded: dict[str, str] = {}
        for name in self.source_names:
            self._folded.setdefault(name.casefold(), name)

    def resolve(self, name: str) -> str | None:
        if name in self._columns or name in self._raw:
            return name
        return self._folded.get(name.casefold())

    def get(self, name: str) -> pa.Array | None:
        resolved = self.resolve(name)
        return None if resolved is None else self._load(resolved)

    def get_exact(self, name: str) -> pa.Array | None:
        return self._load(name) if name in self._columns or name in self._raw else None

    def has_exact(self, name: str) -> bool:
        return name in self._columns or name in self._raw

    def set(self, name: str, array: pa.Array) -> None:
        self._columns[name] = array
        self._raw.pop(name, None)
        self._folded.setdefault(name.casefold(), name)

    def _load(self, name: str) -> pa.Array:
        array = self._columns.get(name)
        if array is None:
            array = self._columns[name] = fa.text(self._raw.pop(name))
        return array


@dataclass
class _Context:
    """What an evaluation needs besides the columns: the layer, the entry's patterns, the attribute for errors."""

    layer: str
    columns: WorkingColumns
    patterns: PatternSet
    attribute: str = ""
    distinct: fa.DistinctValues = field(default_factory=fa.DistinctValues)

    @property
    def length(self) -> int:
        return self.columns.length

    def fail(self, message: str) -> ConformError:
        return ConformError(f"conform.{self.attribute}: {message}")

    def missing(self, function: str, column: str) -> ConformError:
        names = self.columns.source_names
        listing = ", ".join(names[:20]) + (f", ... ({len(names) - 20} more)" if len(names) > 20 else "")
        return self.fail(f"{function} reads column {column!r}, not in the data (columns: {listing or 'none'})")

    def read(self, function: str, column: Any) -> pa.Array:
        """A column a function needs; raises `ConformError` when it is missing, like the reference's KeyError."""
        if not isinstance(column, str):
            raise self.fail(f"{function} needs a column name, got {column!r}")
        array = self.columns.get(column)
        if array is None:
            raise self.missing(function, column)
        return array

    def read_or_empty(self, column: Any) -> pa.Array | None:
        return self.columns.get(column) if isinstance(column, str) else None

    def param(self, spec: Mapping[str, Any], key: str, function: str) -> Any:
        if key not in spec:
            raise self.fail(f"{function} needs {key!r}")
        return spec[key]

    def pattern(self, source: Any) -> BoundedPattern:
        if not isinstance(source, str):
            raise self.fail(f"regexp pattern must be a string, got {source!r}")
        try:
            return self.patterns.user(source)
        except re.error as exc:
            raise self.fail(f"regexp pattern {source!r} is invalid: {exc}") from exc

    def grammar(self, name: str, plain: re.Pattern[str]) -> BoundedPattern:
        return self.patterns.grammar(name, plain)


# ------------------------------------------------------------------------------------------ functions


def _fields(ctx: _Context, spec: Mapping[str, Any], function: str) -> list[Any]:
    fields = ctx.param(spec, "fields", function)
    if not isinstance(fields, list) or not fields:
        raise ctx.fail(f"{function} needs a non-empty list of fields, got {fields!r}")
    return fields


def _join(ctx: _Context, spec: Mapping[str, Any]) -> pa.Array:
    arrays = [ctx.read_or_empty(name) for name in _fields(ctx, spec, "join")]
    if any(array is None for array in arrays):
        return fa.constant("", ctx.length)
    return fa.join_nonempty(arrays, str(spec.get("separator", " ")), ctx.length)


def _format(ctx: _Context, spec: Mapping[str, Any]) -> pa.Array:
    arrays = [ctx.read("format", name) for name in _fields(ctx, spec, "format")]
    template = ctx.param(spec, "format", "format")
    if not isinstance(template, str):
        raise ctx.fail(f"format needs a string format, got {template!r}")
    return fa.format_columns(template, arrays, ctx.length)


def _regexp(ctx: _Context, spec: Mapping[str, Any]) -> pa.Array:
    values = ctx.read("regexp", ctx.param(spec, "field", "regexp"))
    pattern = ctx.pattern(ctx.param(spec, "pattern", "regexp"))
    replace = spec.get("replace")
    with pattern.budget.metered():
        use = pattern.plain_for(*ctx.distinct.shape(values)) or pattern
        if not replace:
            return ctx.distinct.apply(ft.regexp_searcher(use), values)
        try:
            substitute = ft.regexp_replacer(use, str(replace))
            return ctx.distinct.apply(substitute, values)
        except (re.error, regex.error, IndexError) as exc:
            raise ctx.fail(f"regexp replace {replace!r} does not fit pattern {pattern.pattern!r}: {exc}") from exc


def _grammar(
    ctx: _Context,
    spec: Mapping[str, Any],
    name: str,
    plain: re.Pattern[str],
    apply: Callable[[str, ft.Searchable], str],
) -> pa.Array:
    """A built-in grammar over a column: a batch of short values on plain `re` (at worst quadratic, so
    seconds per batch at most), else each value bounded in time."""
    values = ctx.read(name, ctx.param(spec, "field", name))
    grammar = ctx.grammar(name, plain)
    with grammar.budget.metered():
        use = grammar.plain_for(*ctx.distinct.shape(values)) or grammar
        return ctx.distinct.apply(lambda value: apply(value, use), values)


def _prefixed_number(ctx: _Context, spec: Mapping[str, Any]) -> pa.Array:
    return _grammar(ctx, spec, "prefixed_number", ft.PREFIXED_NUMBER, ft.prefixed_number)


def _postfixed_street(ctx: _Context, spec: Mapping[str, Any]) -> pa.Array:
    units = bool(spec.get("may_contain_units", False))
    return _grammar(
        ctx,
        spec,
        "postfixed_street",
        ft.POSTFIXED_STREET_UNITS if units else ft.POSTFIXED_STREET,
        lambda value, pattern: ft.postfixed_street(value, units, pattern),
    )


def _postfixed_unit(ctx: _Context, spec: Mapping[str, Any]) -> pa.Array:
    return _grammar(ctx, spec, "postfixed_unit", ft.POSTFIXED_UNIT, ft.postfixed_unit)


def _remove(function: str, apply: Callable[[str, str], str]) -> Callable[[_Context, Mapping[str, Any]], pa.Array]:
    def evaluate(ctx: _Context, spec: Mapping[str, Any]) -> pa.Array:
        values = ctx.read(function, ctx.param(spec, "field", function))
        removed = ctx.read(function, ctx.param(spec, "field_to_remove", function))
        return fa.per_distinct_rows(apply, [values, removed])

    return evaluate


def _first_non_empty(ctx: _Context, spec: Mapping[str, Any]) -> pa.Array:
    arrays = [ctx.read("first_non_empty", name) for name in _fields(ctx, spec, "first_non_empty")]
    return fa.first_non_blank(arrays, ctx.length)


def _constant(ctx: _Context, spec: Mapping[str, Any]) -> pa.Array:
    return fa.constant(ft.value_text(ctx.param(spec, "value", "constant")), ctx.length)


def _map(ctx: _Context, spec: Mapping[str, Any]) -> pa.Array:
    mapping = ctx.param(spec, "mapping", "map")
    if not isinstance(mapping, Mapping):
        raise ctx.fail(f"map needs an object mapping, got {mapping!r}")
    default = ft.value_text(spec.get("else", ""))
    values = ctx.read_or_empty(ctx.param(spec, "field", "map"))
    if values is None:
        return fa.constant("", ctx.length)
    return fa.map_values(values, {str(k): ft.value_text(v) for k, v in mapping.items()}, default)


def _mph_to_kph(ctx: _Context, spec: Mapping[str, Any]) -> pa.Array:
    values = ctx.read_or_empty(ctx.param(spec, "field", "mph_to_kph"))
    if values is None:
        return fa.constant("", ctx.length)
    return ctx.distinct.apply(ft.mph_to_kph, values)


def _get(ctx: _Context, spec: Mapping[str, Any]) -> pa.Array:
    values = ctx.read("get", ctx.param(spec, "field", "get"))
    index = ctx.param(spec, "index", "get")
    if not isinstance(index, int) or isinstance(index, bool):
        raise ctx.fail(f"get needs an integer index, got {index!r}")
    return ctx.distinct.apply(lambda value: ft.get_item(value, index), values)


def _chain(ctx: _Context, key: str, spec: Mapping[str, Any]) -> None:
    """Run the steps on a working key, then copy its value to `oa:<key>` (conform-spec §2.3).

    The working key is the variable unless the variable (minus leading `o`/`a`/`:`, the reference's
    `lstrip` quirk) is an output property or already a column; then it is `key` itself. After each step the
    result is also stored under the bare key where non-empty (the previous bare value, or `''`, elsewhere),
    so steps may read `oa:<var>` or `<var>` alike.
    """
    steps = ctx.param(spec, "functions", "chain")
    if not isinstance(steps, list):
        raise ctx.fail(f"chain needs a list of functions, got {steps!r}")
    variable = spec.get("variable")
    work = key
    if (
        isinstance(variable, str)
        and variable
        and variable.lstrip("oa:") not in output_properties(ctx.layer)
        and not ctx.columns.has_exact(variable)
    ):
        work = variable
        ctx.columns.set(f"oa:{work}", fa.constant("", ctx.length))
        ctx.columns.set(work, fa.constant("", ctx.length))
    for step in steps:
        _evaluate_into(ctx, work, step)
        result = ctx.columns.get_exact(f"oa:{work}")
        assert result is not None
        ctx.columns.set(work, fa.keep_nonempty(result, ctx.columns.get_exact(work)))
    final = ctx.columns.get_exact(f"oa:{work}")
    assert final is not None
    ctx.columns.set(f"oa:{key}", final)


_FUNCTIONS: dict[str, Callable[[_Context, Mapping[str, Any]], pa.Array]] = {
    "join": _join,
    "format": _format,
    "regexp": _regexp,
    "prefixed_number": _prefixed_number,
    "postfixed_street": _postfixed_street,
    "postfixed_unit": _postfixed_unit,
    "remove_prefix": _remove("remove_prefix", ft.remove_prefix),
    "remove_postfix": _remove("remove_postfix", ft.remove_postfix),
    "first_non_empty": _first_non_empty,
    "constant": _constant,
    "map": _map,
    "mph_to_kph": _mph_to_kph,
    "get": _get,
}

FUNCTION_NAMES = frozenset({*_FUNCTIONS, "chain"})


def _evaluate_into(ctx: _Context, key: str, value: Any) -> None:
    """Evaluate one conform value (list, function object, or, inside a chain, a column) into `oa:<key>`."""
    if isinstance(value, list):
        arrays = [ctx.read_or_empty(name) for name in value]
        ctx.columns.set(f"oa:{key}", fa.join_nonempty([a for a in arrays if a is not None], " ", ctx.length))
    elif isinstance(value, Mapping):
        name = value.get("function")
        if name == "chain":
            _chain(ctx, key, value)
            return
        function = _FUNCTIONS.get(name) if isinstance(name, str) else None
        if function is None:
            raise ctx.fail(f"unknown function {name!r} (known: {', '.join(sorted(FUNCTION_NAMES))})")
        try:
            result = function(ctx, value)
        except PatternTooSlow as exc:
            raise ctx.fail(str(exc)) from None
        ctx.columns.set(f"oa:{key}", result)
    elif isinstance(value, str):
        column = ctx.read_or_empty(value)
        ctx.columns.set(f"oa:{key}", column if column is not None else fa.constant("", ctx.length))
    else:
        raise ctx.fail(f"cannot evaluate {value!r}")


# ------------------------------------------------------------------------------------------ entry points


def _accuracy(ctx: _Context, value: Any) -> pa.Array:
    """The output accuracy: an integer array, 1–5, 5 where the conform gives nothing usable."""
    if isinstance(value, int) and not isinstance(value, bool):
        code = value if 1 <= value <= 5 else UNKNOWN_ACCURACY
        return pa.repeat(pa.scalar(code, pa.int64()), ctx.length)
    computed = ctx.columns.get_exact("oa:accuracy")
    if computed is None and isinstance(value, str):
        computed = ctx.columns.get(value)
    if computed is None:
        return pa.repeat(pa.scalar(UNKNOWN_ACCURACY, pa.int64()), ctx.length)
    return ctx.distinct.apply(ft.accuracy_code, computed, pa.int64())


def _output(ctx: _Context, attribute: str, value: Any) -> pa.Array:
    if attribute == "accuracy":
        return _accuracy(ctx, value)
    computed = ctx.columns.get_exact(f"oa:{attribute}")
    if computed is not None:
        return computed
    if isinstance(value, str):
        column = ctx.columns.get(value)
        if column is not None:
            return column
    return fa.constant("", ctx.length)


def evaluate_conform(
    table: pa.Table | pa.RecordBatch, conform: Mapping[str, Any], layer: str, patterns: PatternSet | None = None
) -> dict[str, pa.Array]:
    """The output attributes of `layer` (no `hash`) for every row of `table`, in output order.

    String attributes are non-null `pa.string()` arrays (`''` for empty or missing); `accuracy` is int64.
    For addresses, `number`, `street` and `unit` are stripped and `number` loses a trailing `.0`.
    Raises `ConformError` for an unknown function, a bad parameter, a column a strict function needs, or a
    pattern over its time limits. `patterns` carries compiled patterns and their budgets from batch to batch
    of one entry; without it the batch gets fresh ones with the default limits.
    """
    attributes = OUTPUT_ATTRIBUTES[layer]
    ctx = _Context(layer, WorkingColumns(table), patterns or PatternSet())
    for attribute, value in conform.items():
        if attribute in attributes and isinstance(value, list | Mapping):
            ctx.attribute = attribute
            _evaluate_into(ctx, attribute, value)
    outputs: dict[str, pa.Array] = {}
    for attribute in attributes:
        ctx.attribute = attribute
        outputs[attribute] = _output(ctx, attribute, conform.get(attribute))
    if layer == "addresses":
        for attribute in STRIPPED_ADDRESS_ATTRIBUTES:
            outputs[attribute] = fa.strip(outputs[attribute])
        outputs["number"] = fa.without_trailing_zero(outputs["number"])
    return outputs


def evaluate_row(inputs: Mapping[str, Any], conform: Mapping[str, Any], layer: str) -> dict[str, Any]:
    """One row through `evaluate_conform`, as Python values: how acceptance tests run a case's `inputs`."""
    names = [str(name) for name in inputs]
    arrays = [pa.array([None if value is None else str(value)], fa.STRING) for value in inputs.values()]
    # an empty inputs object is still one row: build it with a placeholder column, then drop that
    table = pa.table([*arrays, pa.array([None], fa.STRING)], names=[*names, "\0row"]).drop_columns(["\0row"])
    outputs = evaluate_conform(table, conform, layer)
    return {attribute: array[0].as_py() for attribute, array in outputs.items()}
