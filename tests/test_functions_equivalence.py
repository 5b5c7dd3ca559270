"""The vectorised engine equals a plain per-row Python evaluation built on the per-value functions.

Arrow does the strip/join/format/map work and Python functions run once per distinct value; this pins
that the result is the same as evaluating every row on its own, on generated rows with the awkward cases
(nulls, odd whitespace, `.0` floats, units, repeated values).
"""

from __future__ import annotations

import random
import re
from typing import Any

import pyarrow as pa

from oa_dagster.conform import functions_text as ft
from oa_dagster.conform.functions import evaluate_conform

POOL = [
    "",
    " ",
    "\t",
    None,
    "12",
    "12.0",
    " 7 ",
    "123 1/2 Main St",
    "69-15 51st Ave Apt. 4",
    "3rd St",
    "1.0.0",
    "12 Oak Ave # 3",
    "Ünïcode Straße 5",
    "\u00a0 9 Elm\u2003",
    "A",
    "B",
    "PARCEL",
    "35",
    "25.5",
    "x",
    '["a","b","c"]',
    "(2:p,q)",
    "2130 MAPLE AV NE",
    "2130",
    "MAPLE AV NE",
    "APT 3",
    "12 X APT 3",
    ".0",
]

CONFORM: dict[str, Any] = {
    "number": {"function": "format", "fields": ["A", "B", "C"], "format": "#$1$2-$3 ($4)"},
    "street": {"function": "postfixed_street", "field": "A", "may_contain_units": True},
    "unit": {"function": "postfixed_unit", "field": "B"},
    "city": ["A", "B", "C"],
    "district": {"function": "join", "fields": ["B", "C"], "separator": " / "},
    "region": {"function": "regexp", "field": "A", "pattern": r"(\d+)(?: (\w))?", "replace": "<$1|${2}>"},
    "postcode": {"function": "regexp", "field": "C", "pattern": r"^\s*(\d+)(\.\d)?"},
    "id": {"function": "remove_prefix", "field": "A", "field_to_remove": "B"},
    "accuracy": {"function": "map", "field": "C", "mapping": {"PARCEL": 2, "A": 1}, "else": 5},
}
CONFORM_2: dict[str, Any] = {
    "number": {"function": "prefixed_number", "field": "A"},
    "street": {"function": "first_non_empty", "fields": ["B", "C"]},
    "unit": {"function": "remove_postfix", "field": "A", "field_to_remove": "C"},
    "city": {"function": "map", "field": "B", "mapping": {"A": "Alpha", "12": "Twelve"}, "else": "?"},
    "district": {"function": "mph_to_kph", "field": "C"},
    "region": {"function": "get", "field": "A", "index": 1},
    "postcode": {"function": "format", "fields": ["C"], "format": "$1"},
    "id": "B",
    "accuracy": "C",
}


def _text(value: str | None) -> str:
    return value or ""


def _reference(row: dict[str, str | None], spec: Any, attribute: str) -> Any:
    """One attribute of one row, the slow and obvious way."""
    v = {name: _text(value) for name, value in row.items()}
    if isinstance(spec, str):
        result: Any = v[spec]
    elif isinstance(spec, list):
        result = " ".join(s for s in (v[name].strip() for name in spec) if s)
    else:
        kind = spec["function"]
        if kind == "format":
            result = ft.format_fields(spec["format"], [v[name] for name in spec["fields"]])
        elif kind == "join":
            result = spec.get("separator", " ").join(s for s in (v[n].strip() for n in spec["fields"]) if s)
        elif kind == "regexp" and spec.get("replace"):
            result = re.sub(spec["pattern"], ft.convert_replace(spec["replace"]), v[spec["field"]])
        elif kind == "regexp":
            result = ft.regexp_search(re.compile(spec["pattern"]), v[spec["field"]])
        elif kind == "postfixed_street":
            result = ft.postfixed_street(v[spec["field"]], spec.get("may_contain_units", False))
        elif kind in ("postfixed_unit", "prefixed_number", "mph_to_kph"):
            result = getattr(ft, kind)(v[spec["field"]])
        elif kind in ("remove_prefix", "remove_postfix"):
            result = getattr(ft, kind)(v[spec["field"]], v[spec["field_to_remove"]])
        elif kind == "first_non_empty":
            result = next((v[n] for n in spec["fields"] if v[n].strip()), "")
        elif kind == "map":
            result = spec["mapping"].get(v[spec["field"]], spec.get("else", ""))
        elif kind == "get":
            result = ft.get_item(v[spec["field"]], spec["index"])
        else:
            raise AssertionError(kind)
    if attribute == "accuracy":
        return ft.accuracy_code(str(result))
    result = str(result)
    if attribute in ("number", "street", "unit"):
        result = result.strip()
    if attribute == "number" and result.endswith(".0"):
        result = result[:-2]
    return result


def _rows(count: int, seed: int) -> list[dict[str, str | None]]:
    rng = random.Random(seed)
    return [{name: rng.choice(POOL) for name in "ABC"} for _ in range(count)]


def _check(conform: dict[str, Any], rows: list[dict[str, str | None]]) -> None:
    table = pa.table({name: pa.array([row[name] for row in rows], pa.string()) for name in "ABC"})
    out = evaluate_conform(table, conform, "addresses")
    for attribute, spec in conform.items():
        expected = [_reference(row, spec, attribute) for row in rows]
        assert out[attribute].to_pylist() == expected, attribute


def test_vectorised_engine_equals_per_row_evaluation() -> None:
    _check(CONFORM, _rows(4000, seed=1))


def test_vectorised_engine_equals_per_row_evaluation_for_the_other_functions() -> None:
    _check(CONFORM_2, _rows(4000, seed=2))


def test_batch_results_do_not_depend_on_the_batch_split() -> None:
    rows = _rows(3000, seed=3)
    table = pa.table({name: pa.array([row[name] for row in rows], pa.string()) for name in "ABC"})
    whole = evaluate_conform(table, CONFORM, "addresses")
    parts = [evaluate_conform(b, CONFORM, "addresses") for b in table.to_batches(max_chunksize=257)]
    for attribute, array in whole.items():
        assert pa.concat_arrays([p[attribute] for p in parts]).to_pylist() == array.to_pylist()
