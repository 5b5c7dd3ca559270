"""Schema-v2 validation and the platform's own refusals: short errors named by JSON path."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from oa_dagster.sources import SourceInvalid, load_catalog, load_source, source_from_dict, validate_v2
from oa_dagster.sources.validate import json_path, v2_validator

ADDRESS: dict[str, Any] = {
    "schema": 2,
    "coverage": {"country": "us", "state": "ca"},
    "layers": {
        "addresses": [
            {
                "name": "county",
                "protocol": "http",
                "data": "https://example.org/a.csv",
                "conform": {"format": "csv", "number": "NUM", "street": "STREET"},
            }
        ]
    },
}
CONFORM = "$.layers.addresses[0].conform"


def errors_of(change: Any) -> list[str]:
    data = copy.deepcopy(ADDRESS)
    change(data)
    return validate_v2(data)


def conform(data: dict[str, Any]) -> dict[str, Any]:
    return data["layers"]["addresses"][0]["conform"]


def test_minimal_address_source_is_valid() -> None:
    assert validate_v2(ADDRESS) == []


def test_unknown_key_is_named_with_its_object_path() -> None:
    assert errors_of(lambda d: d.update(bogus=1)) == ["$: unknown key 'bogus'"]
    assert errors_of(lambda d: conform(d).update(numbre="N")) == [f"{CONFORM}: unknown key 'numbre'"]


def test_wrong_enum_value_lists_the_allowed_values() -> None:
    errors = errors_of(lambda d: d["layers"]["addresses"][0].update(protocol="HTTP"))
    assert errors == ['$.layers.addresses[0].protocol: "HTTP" is not one of "http", "ftp", "ESRI"']
    errors = errors_of(lambda d: conform(d).update(format="gpx"))
    assert errors[0].startswith(f'{CONFORM}.format: "gpx" is not one of "csv", "gdb"')


def test_missing_coverage_is_reported_at_the_root() -> None:
    assert errors_of(lambda d: d.pop("coverage")) == ["$: missing required 'coverage'"]
    assert errors_of(lambda d: d["coverage"].pop("country")) == ["$.coverage: missing required 'country'"]


def test_bad_function_parameters_name_the_function_object() -> None:
    errors = errors_of(lambda d: conform(d).update(number={"function": "regexp", "field": "N"}))
    assert errors == [f"{CONFORM}.number: missing required 'pattern'"]
    errors = errors_of(
        lambda d: conform(d).update(street={"function": "join", "fields": ["A", "B"], "separator": " ", "sep": "-"})
    )
    assert errors == [f"{CONFORM}.street: unknown key 'sep'"]
    errors = errors_of(lambda d: conform(d).update(number={"function": "prefixed_number", "field": 5}))
    assert errors == [f"{CONFORM}.number.field: expected string, got integer"]


def test_unknown_function_lists_the_known_ones() -> None:
    errors = errors_of(lambda d: conform(d).update(number={"function": "split", "field": "N"}))
    assert len(errors) == 1
    assert errors[0].startswith(f'{CONFORM}.number.function: "split" is not one of "chain", "constant"')
    assert '"prefixed_number"' in errors[0]


def test_value_of_no_accepted_type_says_which_types_would_do() -> None:
    errors = errors_of(lambda d: conform(d).update(number=5))
    assert errors == [f"{CONFORM}.number: expected string, array or object, got integer"]


def test_errors_inside_chain_steps_have_an_index() -> None:
    errors = errors_of(
        lambda d: conform(d).update(
            street={"function": "chain", "variable": "v", "functions": [{"function": "regexp", "field": "S"}]}
        )
    )
    assert errors == [f"{CONFORM}.street.functions[0]: missing required 'pattern'"]


def test_range_pattern_and_format_errors_are_short() -> None:
    assert errors_of(lambda d: conform(d).update(accuracy=7)) == [
        f"{CONFORM}.accuracy: 7 is greater than the maximum of 5"
    ]
    assert errors_of(lambda d: conform(d).update(srs="4326")) == [f'{CONFORM}.srs: "4326" does not match "EPSG:[0-9]+"']
    assert errors_of(lambda d: d["layers"]["addresses"][0].update(email="nobody")) == [
        '$.layers.addresses[0].email: "nobody" is not a valid email'
    ]


def test_long_values_are_shortened_in_messages() -> None:
    errors = errors_of(lambda d: d["layers"]["addresses"][0].update(protocol="x" * 500))
    assert len(errors[0]) < 200 and "..." in errors[0]


def test_every_error_is_reported_root_first_then_by_path() -> None:
    def break_twice(d: dict[str, Any]) -> None:
        d["layers"]["addresses"][0]["skip"] = "yes"
        d.pop("coverage")

    assert errors_of(break_twice) == [
        "$: missing required 'coverage'",
        "$.layers.addresses[0].skip: expected boolean, got string",
    ]


def test_schema_version_other_than_2_is_refused() -> None:
    assert errors_of(lambda d: d.update(schema=3)) == ["$.schema: schema version 3 is not supported (only 2)"]
    assert errors_of(lambda d: d.update(schema="2")) == ["$.schema: expected number, got string"]


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("city,county", "a comma"),
        ("city...", "'...'"),
        ("city\ttwo", "a control character"),
    ],
)
def test_entry_name_that_cannot_be_a_partition_key_is_refused(name: str, why: str) -> None:
    errors = errors_of(lambda d: d["layers"]["addresses"][0].update(name=name))
    assert len(errors) == 1
    assert errors[0].startswith("$.layers.addresses[0].name: entry name ")
    assert f"contains {why}, which a partition key cannot hold" in errors[0]


def test_empty_entry_name_is_refused() -> None:
    assert errors_of(lambda d: d["layers"]["addresses"][0].update(name="")) == [
        "$.layers.addresses[0].name: entry name is empty"
    ]


def test_source_key_with_a_comma_is_refused() -> None:
    with pytest.raises(SourceInvalid) as caught:
        source_from_dict(copy.deepcopy(ADDRESS), "us/ca/a,b")
    assert caught.value.errors == ["$: source key 'us/ca/a,b' contains a comma, which a partition key cannot hold"]


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("us/ca/..\\..\\..\\tmp\\x", "'\\\\', which is not a portable path character"),
        ("us/ca/c:x", "':', which is not a portable path character"),
        ("us/ca/two words", "' ', which is not a portable path character"),
        ("us//ca", "an empty path segment"),
        ("us/../ca", "the segment '..', which starts with a dot"),
        ("us/.hidden", "the segment '.hidden', which starts with a dot"),
    ],
)
def test_source_key_that_is_not_a_portable_path_is_refused(key: str, why: str) -> None:
    with pytest.raises(SourceInvalid) as caught:
        source_from_dict(copy.deepcopy(ADDRESS), key)
    assert caught.value.source == key
    [error] = caught.value.errors
    assert error.startswith(f"$: source key {key!r} contains {why}")


def test_a_source_file_named_with_backslashes_is_an_invalid_source_and_the_others_load(tmp_path: Path) -> None:
    sources = tmp_path / "sources"
    (sources / "us" / "ca").mkdir(parents=True)
    for name in ("..\\..\\..\\tmp\\x", "etelä-savo_fi"):
        (sources / "us" / "ca" / f"{name}.json").write_text(json.dumps(ADDRESS), encoding="utf-8")
    loaded, invalid = load_catalog(tmp_path)
    assert [source.key for source in loaded] == ["us/ca/etelä-savo_fi"]
    assert invalid == {
        "us/ca/..\\..\\..\\tmp\\x": [
            "$: source key 'us/ca/..\\\\..\\\\..\\\\tmp\\\\x' contains '\\\\', which is not a portable path character "
            "(letters, digits, '_', '-', '.')"
        ]
    }


def test_json_that_is_not_an_object_is_refused() -> None:
    assert validate_v2([1, 2]) == ["$: expected a JSON object, got array"]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('{"schema": 2,\n  "coverage": }', "$: invalid JSON at line 2 column 15: Expecting value"),
        ('{"schema": 2, "schema": 2}', "$: invalid JSON: duplicate key 'schema' in an object"),
        ('{"schema": NaN}', "$: invalid JSON: NaN is not valid JSON"),
    ],
)
def test_bad_json_is_reported_with_its_position(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "sources" / "us" / "bad.json"
    path.parent.mkdir(parents=True)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SourceInvalid) as caught:
        load_source(path)
    assert caught.value.source == "us/bad"
    assert caught.value.errors == [error]


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes('{"name": "Orléans"}'.encode("latin-1"))
    with pytest.raises(SourceInvalid) as caught:
        load_source(path)
    assert caught.value.errors[0].startswith("$: not UTF-8 text")


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(ADDRESS).encode())
    assert load_source(path).key == "bom"


def test_json_path_quotes_keys_that_are_not_identifiers() -> None:
    assert json_path(["coverage", "US Census", "geoid"]) == '$.coverage["US Census"].geoid'
    assert json_path(["layers", "addresses", 0, "conform", "number"]) == CONFORM + ".number"


def test_validator_is_built_once() -> None:
    assert v2_validator() is v2_validator()


def test_coverage_geometry_type_is_checked_through_the_geojson_schema() -> None:
    errors = errors_of(lambda d: d["coverage"].update(geometry={"type": "Circle", "coordinates": [0, 0]}))
    assert len(errors) == 1 and errors[0].startswith('$.coverage.geometry.type: "Circle" is not one of "Point"')
    assert errors_of(lambda d: d["coverage"].update(geometry={"type": "Point", "coordinates": [1, 2]})) == []


def test_the_schema_verdict_is_remembered_by_content_and_a_changed_source_is_validated_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The catalog run validates each source, then its set's planning rebuilds every entry from it: the second
    time is a lookup. Key order does not matter; `true` and `1` (equal in Python) are not the same source."""
    from oa_dagster.sources import validate

    calls: list[Any] = []
    real = validate.schema_errors

    def counted(validator: Any, data: Any) -> list[str]:
        calls.append(data)
        return real(validator, data)

    monkeypatch.setattr(validate, "schema_errors", counted)
    monkeypatch.setattr(validate, "_schema_memo", {})
    skipped = copy.deepcopy(ADDRESS)
    skipped["layers"]["addresses"][0]["skip"] = True
    reordered = {key: skipped[key] for key in reversed(list(skipped))}
    assert validate_v2(skipped) == [] and validate_v2(reordered) == [] and len(calls) == 1
    as_number = copy.deepcopy(skipped)
    as_number["layers"]["addresses"][0]["skip"] = 1
    wrong = validate_v2(as_number)
    assert wrong and wrong[0].startswith("$.layers.addresses[0].skip:") and len(calls) == 2
    assert validate_v2(as_number) == wrong and len(calls) == 2  # the errors remembered too
    # the platform's own refusals come with a remembered verdict
    refused = copy.deepcopy(ADDRESS)
    refused["layers"]["addresses"][0]["name"] = "a,b"
    first = validate_v2(refused)
    assert first == validate_v2(refused) and any("comma" in line for line in first)
    monkeypatch.setattr(validate, "SCHEMA_MEMO_SOURCES", 3)  # full: the memo starts over
    validate_v2(ADDRESS)
    assert len(calls) == 4 and len(validate._schema_memo) == 1
    validate_v2(skipped)  # forgotten when the memo started over
    assert len(calls) == 5 and len(validate._schema_memo) == 2
