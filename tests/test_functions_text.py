"""Per-value semantics of the attribute functions (conform-spec §2.2), one behaviour per test."""

from __future__ import annotations

import re

import pytest

from oa_dagster.conform import functions_text as ft


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("123 Main St", "123"),
        ("123 1/2 Main St", "123 1/2"),
        ("123-1/2 Main St", "123-1/2"),
        ("69-15 51st Ave", "69-15"),
        ("123A Main St", "123A"),
        ("123-a Main St", "123-a"),
        ("  42 Elm", "42"),
        ("3rd St", ""),
        ("123", ""),
        ("123Main", ""),
        ("", ""),
        ("Main St 12", ""),
    ],
)
def test_prefixed_number_takes_a_leading_number_followed_by_whitespace(value: str, expected: str) -> None:
    assert ft.prefixed_number(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("123 Main St", "Main St"),
        ("123 1/2 Main St", "Main St"),
        ("123-1/2 Main St", "Main St"),
        ("69-15 51st Ave", "51st Ave"),
        ("123a Main St", "Main St"),
        ("Main St", "Main St"),
        ("3rd St", "3rd St"),
        ("123", "123"),
        ("", ""),
        ("12 Oak Ave Apt 4", "Oak Ave Apt 4"),
    ],
)
def test_postfixed_street_is_what_follows_an_optional_number(value: str, expected: str) -> None:
    assert ft.postfixed_street(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("12 Oak Ave Apt 4", "Oak Ave"),
        ("123 Main Street Unit 3", "Main Street"),
        ("123 Main Street Apartment 3", "Main Street"),
        ("123 Main Street APT. 3", "Main Street"),
        ("123 Main Street Suite 3", "Main Street"),
        ("123 Main Street Ste. 3", "Main Street"),
        ("123 Main Street BLDG 3", "Main Street"),
        ("123 Main Street Bldg. C", "Main Street"),
        ("123 Main Street Lot 3", "Main Street"),
        ("123 Main Street #3", "Main Street"),
        ("123 Main Street # 3", "Main Street"),
        ("123 Main Street", "Main Street"),
        ("123 Aptos Way", "Aptos Way"),
        ("", ""),
    ],
)
def test_postfixed_street_with_units_cuts_a_trailing_unit(value: str, expected: str) -> None:
    assert ft.postfixed_street(value, may_contain_units=True) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Main Street Apt. 3", "Apt. 3"),
        ("Main St # 3", "# 3"),
        ("Main St #3", "#3"),
        ("123 Maple St Suite 300", "Suite 300"),
        ("Main St Unit 2 Bldg 5", "Unit 2 Bldg 5"),
        ("Main St runit 300", ""),
        ("Main St", ""),
        ("Unit 3", ""),
    ],
)
def test_postfixed_unit_starts_at_the_first_whole_word_designator(value: str, expected: str) -> None:
    assert ft.postfixed_unit(value) == expected


def test_remove_prefix_removes_the_other_value_and_following_spaces() -> None:
    assert ft.remove_prefix("2130 MAPLE AV NE", "2130") == "MAPLE AV NE"
    assert ft.remove_prefix("2130 MAPLE AV NE", "999") == "2130 MAPLE AV NE"


def test_remove_prefix_with_an_empty_prefix_still_trims_leading_spaces() -> None:
    assert ft.remove_prefix("  MAPLE AV", "") == "MAPLE AV"


def test_remove_postfix_removes_a_non_empty_suffix_and_preceding_spaces() -> None:
    assert ft.remove_postfix("310 WOOD ST APT 3", "APT 3") == "310 WOOD ST"
    assert ft.remove_postfix("310 WOOD ST  ", "") == "310 WOOD ST  "
    assert ft.remove_postfix("310 WOOD ST", "APT 3") == "310 WOOD ST"


def test_regexp_search_concatenates_the_groups_that_matched() -> None:
    assert ft.regexp_search(re.compile(r"^([0-9]+)"), "617 TUMBLEWEED TRL") == "617"
    assert ft.regexp_search(re.compile(r"^(\d+)(?:-(\w))?( )"), "617 X") == "617 "
    assert ft.regexp_search(re.compile(r"^(\d+)"), "TUMBLEWEED") == ""


def test_regexp_search_without_groups_gives_empty() -> None:
    assert ft.regexp_searcher(re.compile(r"^\d+"))("617 X") == ""


@pytest.mark.parametrize("pattern", [r"^([0-9]+)", r"^(\d+)(?:-(\w))?( )", r"(a)|(b)"])
@pytest.mark.parametrize("value", ["617 TUMBLEWEED", "617-Q X", "b", ""])
def test_regexp_searcher_equals_the_plain_search(pattern: str, value: str) -> None:
    compiled = re.compile(pattern)
    assert ft.regexp_searcher(compiled)(value) == ft.regexp_search(compiled, value)


def test_regexp_with_replace_substitutes_every_match() -> None:
    replace = ft.regexp_replacer(re.compile(r"([0-9]+)"), "<$1>")
    assert replace("12 and 34") == "<12> and <34>"


def test_regexp_with_replace_returns_the_value_unchanged_without_a_match() -> None:
    assert ft.regexp_replacer(re.compile(r"^(?:[0-9]+ )(.*)"), "$1")("TUMBLEWEED TRL") == "TUMBLEWEED TRL"
    assert ft.regexp_replacer(re.compile(r"^(?:[0-9]+ )(.*)"), "$1")("617 TUMBLEWEED TRL") == "TUMBLEWEED TRL"


def test_regexp_replace_accepts_braced_references_next_to_digits() -> None:
    replace = ft.regexp_replacer(re.compile(r"^([0-9]{5})-?([0-9]{4})$"), "${1}0$2")
    assert replace("12345-6789") == "1234506789"


def test_regexp_replace_gives_empty_for_a_group_that_did_not_take_part() -> None:
    assert ft.regexp_replacer(re.compile(r"^(\d+)(?:-(\d+))?$"), "$1/$2")("12") == "12/"


@pytest.mark.parametrize("replace", ["$1-$2", "[$2]", "x", "$1$1", r"\n$1", "${2}.${1}", "$0"])
@pytest.mark.parametrize("value", ["12345-6789", "123456789", "abc", ""])
def test_regexp_replacer_equals_re_sub_with_the_converted_template(replace: str, value: str) -> None:
    pattern = re.compile(r"([0-9]{5})-?([0-9]{4})")
    assert ft.regexp_replacer(pattern, replace)(value) == pattern.sub(ft.convert_replace(replace), value)


def test_regexp_replace_refuses_a_reference_to_a_missing_group() -> None:
    with pytest.raises(re.error):
        ft.regexp_replacer(re.compile(r"(\d+)"), "$2")


def test_convert_replace_turns_dollar_references_into_python_groups() -> None:
    assert ft.convert_replace("$1-${2}x$10") == r"\g<1>-\g<2>x\g<10>"


@pytest.mark.parametrize(
    ("template", "fields", "expected"),
    [
        ("$1$2-$3", ["25", "k", "143"], "25k-143"),
        ("$1$2-$3", ["4", "", ""], "4"),
        ("$1-$2-$3", ["12.0", "", "56"], "12-56"),
        ("$1-$2", ["", "7"], "7"),
        ("#$1 Unit", ["", ""], ""),
        ("#$1 Unit", ["3"], "#3 Unit"),
        ("$1 $4 $2", ["a", "b"], "a b"),
        ("$1", [" 12.0 "], "12"),
        ("pre$1", ["", ""], ""),
        ("$1/$2", ["x.0", ".0"], "x/"),
    ],
)
def test_format_keeps_literals_only_next_to_emitted_fields(template: str, fields: list[str], expected: str) -> None:
    assert ft.format_fields(template, fields) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("35", "56"),
        ("25", "40"),
        (" 30 ", "48"),
        ("0", "0"),
        ("", ""),
        ("fast", ""),
        ("nan", ""),
        ("inf", ""),
    ],
)
def test_mph_to_kph_rounds_to_whole_kilometres(value: str, expected: str) -> None:
    assert ft.mph_to_kph(value) == expected


def test_mph_to_kph_rounds_halves_to_even() -> None:
    # mph values whose product with 1.60934 is exactly 0.5 and 1.5 km/h in binary floating point
    assert 0.3106863683249034 * ft.MPH_TO_KPH == 0.5 and 0.9320591049747101 * ft.MPH_TO_KPH == 1.5
    assert ft.mph_to_kph("0.3106863683249034") == "0"
    assert ft.mph_to_kph("0.9320591049747101") == "2"


@pytest.mark.parametrize(
    ("value", "index", "expected"),
    [
        ('["Polska","mazowieckie","brodnicki","Bartniczka"]', 3, "Bartniczka"),
        ("['a', 'b', 'c']", 1, "b"),
        ("(3:a,b,c)", 2, "c"),
        ("(0:)", 0, ""),
        ("[a, b]", 1, "b"),
        ('["a","b"]', -1, "b"),
        ('["a","b"]', 2, ""),
        ("[1, 2.5, null]", 1, "2.5"),
        ("[1, 2.5, null]", 2, ""),
        ("single", 0, "single"),
        ("single", 1, ""),
        ("", 0, ""),
    ],
)
def test_get_takes_the_zero_based_item_of_a_repeated_value(value: str, index: int, expected: str) -> None:
    assert ft.get_item(value, index) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", 1),
        ("5", 5),
        (" 2 ", 2),
        ("3.0", 3),
        ("0", 5),
        ("6", 5),
        ("", 5),
        ("rooftop", 5),
        ("2.5", 5),
    ],
)
def test_accuracy_code_accepts_only_integers_one_to_five(value: str, expected: int) -> None:
    assert ft.accuracy_code(value) == expected
