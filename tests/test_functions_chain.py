"""`chain`: steps on a working variable (conform-spec §2.3), readable as `oa:<var>` or bare `<var>`."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from oa_dagster.conform.functions import evaluate_conform


def run(conform: dict[str, Any], **columns: list[str | None]) -> dict[str, list[Any]]:
    table = pa.table({name: pa.array(values, pa.string()) for name, values in columns.items()})
    return {name: array.to_pylist() for name, array in evaluate_conform(table, conform, "addresses").items()}


def regexp(field: str, pattern: str, replace: str | None = None) -> dict[str, Any]:
    spec = {"function": "regexp", "field": field, "pattern": pattern}
    return spec if replace is None else {**spec, "replace": replace}


def street_then_remove_unit(address: str, unit: str, variable_as: str) -> dict[str, Any]:
    """`postfixed_street` of `address` into variable `w`, then `remove_postfix` of `unit` reading `variable_as`."""
    return {
        "street": {
            "function": "chain",
            "variable": "w",
            "functions": [
                {"function": "postfixed_street", "field": address},
                {"function": "remove_postfix", "field": variable_as, "field_to_remove": unit},
            ],
        }
    }


def test_chain_steps_read_the_variable_with_the_oa_prefix() -> None:
    conform = street_then_remove_unit("Prop_Addr", "Prop_Addr_Unit", "oa:w")
    out = run(conform, Prop_Addr=["310 WOOD ST APT 3", "12 OAK AVE"], Prop_Addr_Unit=["APT 3", ""])
    assert out["street"] == ["WOOD ST", "OAK AVE"]


def test_chain_steps_may_read_the_bare_variable() -> None:
    conform = street_then_remove_unit("A", "U", "w")
    assert run(conform, A=["310 WOOD ST APT 3"], U=["APT 3"])["street"] == ["WOOD ST"]


def test_reading_the_bare_variable_after_an_empty_step_gives_empty() -> None:
    # us/pa/philadelphia: the reference crashes here with a KeyError
    conform = {
        "postcode": {
            "function": "chain",
            "variable": "full_zip",
            "functions": [
                regexp("zip_code", "^([0-9]{5})-?([0-9]{4}|)$", "$1-$2"),
                regexp("full_zip", "^(.*?)-?$"),
            ],
        }
    }
    out = run(conform, zip_code=["", "191031234", "19103", "bad"])
    assert out["postcode"] == ["", "19103-1234", "19103", "bad"]


def test_bare_variable_keeps_the_last_non_empty_step_result() -> None:
    conform = {
        "street": {
            "function": "chain",
            "variable": "v",
            "functions": [
                regexp("A", "^(\\w+)"),
                regexp("oa:v", "^(\\d+)"),
                {"function": "join", "fields": ["v", "oa:v"], "separator": "|"},
            ],
        },
    }
    assert run(conform, A=["ELM 5", "55 X"])["street"] == ["ELM", "55|55"]


def test_chain_variable_is_not_an_output_and_does_not_hide_columns() -> None:
    conform = {
        "street": {"function": "chain", "variable": "city", "functions": [regexp("A", "^(\\w+)")]},
        "unit": {"function": "chain", "variable": "tmp", "functions": [regexp("A", "(\\d+)$")]},
        "city": "C",
    }
    out = run(conform, A=["ELM 5"], C=["Town"])
    assert out["street"] == ["ELM"] and out["unit"] == ["5"] and out["city"] == ["Town"]


def test_variable_named_like_an_existing_column_works_on_the_attribute() -> None:
    conform = {
        "street": {
            "function": "chain",
            "variable": "A",
            "functions": [
                regexp("A", "^\\d+ (.*)$"),
                regexp("oa:street", "^(\\w+)"),
            ],
        }
    }
    assert run(conform, A=["12 ELM ST"])["street"] == ["ELM"]


def test_variable_stripped_of_leading_o_a_colon_that_names_an_output_works_on_the_attribute() -> None:
    conform = {
        "number": {
            "function": "chain",
            "variable": "oa:number",
            "functions": [
                regexp("A", "^(\\d+)"),
                {"function": "join", "fields": ["oa:number", "B"], "separator": "-"},
            ],
        }
    }
    assert run(conform, A=["12 ELM"], B=["b"])["number"] == ["12-b"]


def test_nested_chain_feeds_the_outer_variable() -> None:
    conform = {
        "street": {
            "function": "chain",
            "variable": "outer",
            "functions": [
                {
                    "function": "chain",
                    "variable": "inner",
                    "functions": [
                        {"function": "postfixed_street", "field": "A"},
                        regexp("oa:inner", "^(.*) APT .*$", "$1"),
                    ],
                },
                {"function": "format", "fields": ["outer"], "format": "<$1>"},
            ],
        }
    }
    assert run(conform, A=["12 ELM ST APT 4", "9 OAK"])["street"] == ["<ELM ST>", "<OAK>"]


def test_chain_steps_may_be_plain_columns_and_lists() -> None:
    conform = {
        "street": {
            "function": "chain",
            "variable": "v",
            "functions": [
                ["P", "N"],
                {"function": "join", "fields": ["v", "S"]},
            ],
        },
        "unit": {"function": "chain", "variable": "u", "functions": ["U", regexp("u", "(\\d+)")]},
    }
    out = run(conform, P=["N"], N=["Main"], S=["St"], U=["Apt 7"])
    assert out["street"] == ["N Main St"] and out["unit"] == ["7"]


def test_functions_may_read_earlier_attributes_as_oa_columns() -> None:
    conform = {
        "number": {"function": "prefixed_number", "field": "A"},
        "street": {"function": "remove_prefix", "field": "A", "field_to_remove": "oa:number"},
    }
    assert run(conform, A=["12 ELM ST"])["street"] == ["ELM ST"]
