"""`evaluate_conform` / `evaluate_row`: conform objects applied to Arrow batches, as the output contract says."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from oa_dagster.conform.fields import OUTPUT_ATTRIBUTES
from oa_dagster.conform.functions import evaluate_conform, evaluate_row
from oa_dagster.errors import ConformError


def batch(**columns: list[str | None]) -> pa.Table:
    return pa.table({name: pa.array(values, pa.string()) for name, values in columns.items()})


def run(conform: dict[str, Any], layer: str = "addresses", **columns: list[str | None]) -> dict[str, list[Any]]:
    return {name: array.to_pylist() for name, array in evaluate_conform(batch(**columns), conform, layer).items()}


def one(conform: dict[str, Any], attribute: str, layer: str = "addresses", **inputs: Any) -> Any:
    return evaluate_row(inputs, conform, layer)[attribute]


@pytest.mark.parametrize("layer", list(OUTPUT_ATTRIBUTES))
def test_every_layer_outputs_its_attributes_in_order_as_non_null_columns(layer: str) -> None:
    out = evaluate_conform(batch(A=["x", None, " y "]), {}, layer)
    assert list(out) == list(OUTPUT_ATTRIBUTES[layer])
    for name, array in out.items():
        assert len(array) == 3 and array.null_count == 0
        if name == "accuracy":
            assert array.type == pa.int64() and array.to_pylist() == [5, 5, 5]
        else:
            assert array.type == pa.string() and array.to_pylist() == ["", "", ""]


def test_plain_column_is_raw_except_number_street_unit_which_are_stripped() -> None:
    out = run(
        {"number": "N", "street": "S", "unit": "U", "postcode": "P", "city": "C"},
        N=[" 12.0 "],
        S=[" Main St "],
        U=[" 4 "],
        P=[" 9 "],
        C=[None],
    )
    assert out["number"] == ["12"] and out["street"] == ["Main St"] and out["unit"] == ["4"]
    assert out["postcode"] == [" 9 "] and out["city"] == [""]


def test_number_loses_only_one_trailing_point_zero() -> None:
    assert run({"number": "N"}, N=["1.0.0", "10", "0.0", ".0"])["number"] == ["1.0", "10", "0", ""]


def test_plain_column_missing_from_the_data_is_empty_not_null() -> None:
    assert run({"number": "NOPE", "city": "ALSO_NOPE"}, A=["1"]) == run({}, A=["1"])


def test_column_lookup_ignores_case() -> None:
    assert (
        one(
            {"number": "SITUS_NO", "street": {"function": "regexp", "field": "SITUS", "pattern": "^\\d+ (.*)$"}},
            "street",
            situs="12 ELM ST",
            situs_no="12",
        )
        == "ELM ST"
    )


def test_exact_case_column_wins_over_other_cases() -> None:
    assert run({"city": "City"}, CITY=["upper"], City=["exact"], city=["lower"])["city"] == ["exact"]
    assert run({"city": "CiTy"}, CITY=["upper"], city=["lower"])["city"] == ["upper"]


def test_list_strips_drops_empties_and_joins_with_a_space() -> None:
    out = run({"street": ["PRE", "NAME", "SUF"]}, PRE=["N", None, " "], NAME=["Main", None, ""], SUF=["", None, " "])
    assert out["street"] == ["N Main", "", ""]


def test_list_counts_missing_columns_as_empty() -> None:
    assert run({"street": ["NAME", "MISSING"]}, NAME=["Main"])["street"] == ["Main"]


def test_join_uses_the_separator_between_non_empty_stripped_values() -> None:
    conform = {"number": {"function": "join", "fields": ["P", "N"], "separator": "-"}}
    assert run(conform, P=["91", "", None, " "], N=["921", "5", None, " "])["number"] == ["91-921", "5", "", ""]


def test_join_with_a_missing_column_is_empty() -> None:
    conform = {"id": {"function": "join", "fields": ["P", "GONE"]}}
    assert run(conform, P=["91"])["id"] == [""]


def test_join_separator_defaults_to_one_space_and_may_be_long_or_empty() -> None:
    assert run({"id": {"function": "join", "fields": ["A", "B"]}}, A=["a"], B=["b"])["id"] == ["a b"]
    assert run({"id": {"function": "join", "fields": ["A", "B"], "separator": " / "}}, A=["a", "a"], B=["b", ""])[
        "id"
    ] == ["a / b", "a"]
    assert run({"id": {"function": "join", "fields": ["A", "B"], "separator": ""}}, A=["a"], B=["b"])["id"] == ["ab"]


def test_format_applies_the_literal_rules_per_row() -> None:
    conform = {"number": {"function": "format", "fields": ["H", "L", "S"], "format": "$1$2-$3"}}
    out = run(conform, H=["25", "4", "12.0", ""], L=["k", "", "", ""], S=["143", "", "56", ""])
    assert out["number"] == ["25k-143", "4", "12-56", ""]


def test_regexp_search_and_replace_through_the_conform() -> None:
    conform = {
        "number": {"function": "regexp", "field": "A", "pattern": "^([0-9]+)"},
        "street": {"function": "regexp", "field": "A", "pattern": "^(?:[0-9]+ )(.*)", "replace": "$1"},
        "unit": {"function": "regexp", "field": "A", "pattern": "^([0-9]+)", "replace": ""},
    }
    out = run(conform, A=["617 TUMBLEWEED TRL", "TUMBLEWEED TRL", None])
    assert out["number"] == ["617", "", ""]
    assert out["street"] == ["TUMBLEWEED TRL", "TUMBLEWEED TRL", ""]
    assert out["unit"] == ["617", "", ""]


def test_regexp_with_braced_group_reference() -> None:
    conform = {
        "postcode": {"function": "regexp", "field": "Z", "pattern": "^([0-9]{5})([0-9]{4})$", "replace": "${1}-${2}"}
    }
    assert run(conform, Z=["123456789", "12345"])["postcode"] == ["12345-6789", "12345"]


def test_number_street_unit_grammars_through_the_conform() -> None:
    conform = {
        "number": {"function": "prefixed_number", "field": "A"},
        "street": {"function": "postfixed_street", "field": "A", "may_contain_units": True},
        "unit": {"function": "postfixed_unit", "field": "A"},
    }
    out = run(conform, A=["123 1/2 Main St Apt. 3", "3rd St", "69-15 51st Ave # 2"])
    assert out["number"] == ["123 1/2", "", "69-15"]
    assert out["street"] == ["Main St", "3rd St", "51st Ave"]
    assert out["unit"] == ["Apt. 3", "", "# 2"]


def test_remove_prefix_and_postfix_read_the_other_column_per_row() -> None:
    conform = {
        "street": {"function": "remove_prefix", "field": "FULL", "field_to_remove": "NUM"},
        "city": {"function": "remove_postfix", "field": "FULL", "field_to_remove": "U"},
    }
    out = run(
        conform, FULL=["2130 MAPLE AV NE", "7 ELM APT 3", "  9 OAK"], NUM=["2130", "8", None], U=["", "APT 3", ""]
    )
    assert out["street"] == ["MAPLE AV NE", "7 ELM APT 3", "9 OAK"]
    assert out["city"] == ["2130 MAPLE AV NE", "7 ELM", "  9 OAK"]


def test_first_non_empty_returns_the_unstripped_value() -> None:
    conform = {"city": {"function": "first_non_empty", "fields": ["SITE", "MAIL"]}}
    assert run(conform, SITE=[" ", " Oak ", None], MAIL=["5 Elm", "x", None])["city"] == ["5 Elm", " Oak ", ""]


def test_constant_is_the_same_value_on_every_row() -> None:
    assert run({"region": {"function": "constant", "value": "CA"}}, A=["1", "2"])["region"] == ["CA", "CA"]


def test_map_looks_up_strings_with_else_and_without() -> None:
    conform = {
        "city": {"function": "map", "field": "T", "mapping": {"A": "Alpha", "B": "Beta"}, "else": "Other"},
        "district": {"function": "map", "field": "T", "mapping": {"A": "Alpha"}},
    }
    out = run(conform, T=["A", "B", "a", None])
    assert out["city"] == ["Alpha", "Beta", "Other", "Other"]
    assert out["district"] == ["Alpha", "", "", ""]


def test_map_with_a_missing_column_is_empty() -> None:
    conform = {"city": {"function": "map", "field": "GONE", "mapping": {"A": "Alpha"}, "else": "Other"}}
    assert run(conform, T=["A"])["city"] == [""]


def test_map_with_integer_values_gives_their_text_outside_accuracy() -> None:
    conform = {"id": {"function": "map", "field": "T", "mapping": {"A": 2}, "else": 5}}
    assert run(conform, T=["A", "B"])["id"] == ["2", "5"]


def test_mph_to_kph_through_the_conform_and_with_a_missing_column() -> None:
    conform = {"speed": {"function": "mph_to_kph", "field": "MPH"}}
    assert run(conform, "centerlines", MPH=["35", "25", "", None, "x"])["speed"] == ["56", "40", "", "", ""]
    assert run(conform, "centerlines", OTHER=["35"])["speed"] == [""]


def test_get_takes_an_item_of_a_repeated_column() -> None:
    conform = {"city": {"function": "get", "field": "JA", "index": 3}}
    value = '["Polska","mazowieckie","brodnicki","Bartniczka"]'
    assert run(conform, JA=[value, "(2:a,b)", None])["city"] == ["Bartniczka", "", ""]


def test_integer_accuracy_is_output_as_that_integer() -> None:
    assert run({"accuracy": 2}, A=["x", "y"])["accuracy"] == [2, 2]


def test_accuracy_outside_one_to_five_or_not_an_integer_is_unknown() -> None:
    assert run({"accuracy": 9}, A=["x"])["accuracy"] == [5]
    assert run({"accuracy": True}, A=["x"])["accuracy"] == [5]
    assert run({"accuracy": 2.5}, A=["x"])["accuracy"] == [5]


def test_accuracy_from_a_column_accepts_integer_text() -> None:
    assert run({"accuracy": "ACC"}, ACC=["1", " 3 ", "4.0", "7", "", None, "roof"])["accuracy"] == [1, 3, 4, 5, 5, 5, 5]


def test_accuracy_map_gives_integers_with_else() -> None:
    conform = {"accuracy": {"function": "map", "field": "T", "mapping": {"PARCEL": 2, "ROOF": 1}, "else": 5}}
    out = evaluate_conform(batch(T=["PARCEL", "ROOF", "X"]), conform, "addresses")["accuracy"]
    assert out.type == pa.int64() and out.to_pylist() == [2, 1, 5]


def test_building_id_is_kept() -> None:
    out = run({"id": "BID", "height": "H", "levels": ["L"]}, "buildings", BID=["b1"], H=["9.5"], L=[" 3 "])
    assert out == {"id": ["b1"], "height": ["9.5"], "levels": ["3"]}


def test_parcels_and_centerlines_outputs() -> None:
    assert run({"pid": "APN"}, "parcels", APN=["1-2"]) == {"pid": ["1-2"]}
    oneway = {"function": "map", "field": "OW", "mapping": {"FT": "yes"}, "else": "no"}
    out = run({"name": ["N", "T"], "oneway": oneway}, "centerlines", N=["Main"], T=["St"], OW=["FT"])
    assert out["name"] == ["Main St"] and out["oneway"] == ["yes"] and out["id"] == [""]


def test_empty_batch_gives_empty_columns() -> None:
    conform = {
        "number": {"function": "prefixed_number", "field": "A"},
        "street": {"function": "format", "fields": ["A", "B"], "format": "$1 $2"},
        "unit": {"function": "remove_prefix", "field": "A", "field_to_remove": "B"},
        "accuracy": 1,
    }
    out = evaluate_conform(batch(A=[], B=[]), conform, "addresses")
    assert all(len(array) == 0 for array in out.values())


def test_large_string_and_chunked_columns_are_accepted() -> None:
    table = pa.Table.from_batches([pa.record_batch({"A": pa.array(["1 Main St"], pa.large_string())})] * 2)
    out = evaluate_conform(table, {"number": {"function": "prefixed_number", "field": "a"}}, "addresses")
    assert out["number"].to_pylist() == ["1", "1"]


@pytest.mark.parametrize(
    "function",
    [
        {"function": "regexp", "field": "SITUS_ADDR", "pattern": "(.*)"},
        {"function": "prefixed_number", "field": "SITUS_ADDR"},
        {"function": "postfixed_street", "field": "SITUS_ADDR"},
        {"function": "postfixed_unit", "field": "SITUS_ADDR"},
        {"function": "remove_prefix", "field": "A", "field_to_remove": "SITUS_ADDR"},
        {"function": "remove_postfix", "field": "SITUS_ADDR", "field_to_remove": "A"},
        {"function": "first_non_empty", "fields": ["A", "SITUS_ADDR"]},
        {"function": "format", "fields": ["A", "SITUS_ADDR"], "format": "$1 $2"},
        {"function": "get", "field": "SITUS_ADDR", "index": 0},
    ],
)
def test_strict_functions_name_the_missing_column(function: dict[str, Any]) -> None:
    with pytest.raises(ConformError) as raised:
        run({"street": function}, A=["1"], B=["2"])
    detail = raised.value.detail
    assert detail.startswith(f"conform.street: {function['function']} reads column 'SITUS_ADDR', not in the data")
    assert "(columns: A, B)" in detail


def test_missing_column_error_truncates_a_long_column_list() -> None:
    columns = {f"C{i}": ["x"] for i in range(30)}
    with pytest.raises(ConformError, match=r"C19, \.\.\. \(10 more\)\)$"):
        run({"street": {"function": "regexp", "field": "GONE", "pattern": "(x)"}}, **columns)


def test_unknown_function_is_a_conform_error_naming_it() -> None:
    with pytest.raises(ConformError, match="conform.number: unknown function 'advanced_merge'"):
        run({"number": {"function": "advanced_merge", "fields": ["A"]}}, A=["1"])


def test_invalid_regexp_pattern_or_replace_is_a_conform_error() -> None:
    with pytest.raises(ConformError, match="pattern '\\(' is invalid"):
        run({"number": {"function": "regexp", "field": "A", "pattern": "("}}, A=["1"])
    with pytest.raises(ConformError, match="does not fit pattern"):
        run({"number": {"function": "regexp", "field": "A", "pattern": "(1)", "replace": "$3"}}, A=["1"])


def test_evaluate_row_returns_python_values_with_integer_accuracy() -> None:
    row = evaluate_row({"N": 12, "S": None}, {"number": "N", "street": "S", "accuracy": 1}, "addresses")
    assert row == {
        "number": "12",
        "street": "",
        "unit": "",
        "city": "",
        "district": "",
        "region": "",
        "postcode": "",
        "id": "",
        "accuracy": 1,
    }


def test_evaluate_row_with_no_inputs_is_one_empty_row() -> None:
    assert (
        evaluate_row({}, {"number": "N", "region": {"function": "constant", "value": "CA"}}, "addresses")["region"]
        == "CA"
    )
