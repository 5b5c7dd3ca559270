"""Retired v1 (flat) sources: validated against the v1 schema, then upgraded to one `primary` address entry."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from oa_dagster.sources import SourceInvalid, load_source, source_from_dict
from oa_dagster.sources.upgrade import is_v1, upgrade_v1

DATA = Path(__file__).parent / "data" / "sources"

V1: dict[str, Any] = {
    "coverage": {
        "US Census": {"geoid": "06001", "name": "Alameda County", "state": "California"},
        "country": "us",
        "state": "ca",
        "county": "Alameda",
    },
    "data": "https://services5.arcgis.com/ROBnTHSNjoZ2Wm1P/ArcGIS/rest/services/Address_Points/FeatureServer/0",
    "website": "https://data.acgov.org/datasets/4610acbf49364583986d45ee4106cc3f_0/about",
    "license": {"url": "https://www.acgov.org/acdata/terms.htm", "presumed": True},
    "protocol": "ESRI",
    "conform": {
        "format": "geojson",
        "number": "ST_NUM",
        "street": ["DIRPRE", "FEANME", "FEATYP", "DIRSUF"],
        "accuracy": 1,
    },
    "skip": False,
}


def flat(change: Any = None) -> dict[str, Any]:
    data = copy.deepcopy(V1)
    if change:
        change(data)
    return data


def test_v1_source_is_upgraded_to_a_primary_address_entry() -> None:
    source = source_from_dict(flat(), "us/ca/alameda")
    assert source.upgraded_from_v1
    assert source.data["schema"] == 2
    assert source.data["coverage"] == V1["coverage"]
    assert list(source.data["layers"]) == ["addresses"]
    [entry] = source.entries
    assert (entry.layer, entry.name, entry.index, entry.key) == ("addresses", "primary", 0, "us/ca/alameda/primary")
    expected = {"name": "primary", **{k: v for k, v in V1.items() if k != "coverage"}}
    assert entry.raw == expected
    assert source.entry("addresses", None) is entry


def test_v1_upgrade_moves_keys_without_converting_values() -> None:
    upgraded = upgrade_v1(flat())
    entry = upgraded["layers"]["addresses"][0]
    assert entry["conform"] == V1["conform"] and entry["license"] == V1["license"]
    assert entry["skip"] is False


def test_v1_upgrade_is_what_a_v2_file_with_one_primary_entry_loads_as(tmp_path: Path) -> None:
    v1_path = tmp_path / "sources" / "us" / "ca" / "flat.json"
    v1_path.parent.mkdir(parents=True)
    # a real v2 source's address entry written flat (v1), and the same written as v2 by hand
    real = json.loads((DATA / "us" / "ca" / "alameda.json").read_text(encoding="utf-8"))
    v2 = {
        "schema": 2,
        "coverage": real["coverage"],
        "layers": {"addresses": [{**real["layers"]["addresses"][0], "name": "primary"}]},
    }
    v2_path = v1_path.with_name("v2.json")
    v2_path.write_text(json.dumps(v2), encoding="utf-8")
    flat_entry = {k: v for k, v in real["layers"]["addresses"][0].items() if k != "name"}
    v1_path.write_text(json.dumps({"coverage": real["coverage"], **flat_entry}), encoding="utf-8")
    upgraded, written = load_source(v1_path), load_source(v2_path)
    assert upgraded.upgraded_from_v1 and not written.upgraded_from_v1
    assert upgraded.data == written.data
    assert upgraded.key == "us/ca/flat"


def test_only_sources_without_schema_and_layers_are_v1() -> None:
    assert is_v1(flat())
    assert not is_v1({"schema": 2, "coverage": {"country": "us"}})
    assert not is_v1({"layers": {}, "coverage": {"country": "us"}})


def test_layers_without_schema_is_a_broken_v2_source_not_v1() -> None:
    with pytest.raises(SourceInvalid) as caught:
        source_from_dict({"coverage": {"country": "us"}, "layers": {}}, "us/xx/x")
    assert caught.value.errors == ["$: missing required 'schema'"]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda d: d.pop("protocol"), "$: missing required 'protocol'"),
        (lambda d: d.update(name="county"), "$: unknown key 'name'"),
        (lambda d: d.update(compression="gzip"), '$.compression: expected "zip", got "gzip"'),
        (lambda d: d["conform"].update(accuracy="rooftop"), "$.conform.accuracy: expected integer, got string"),
        (lambda d: d["conform"].update(format="gpkg"), '$.conform.format: "gpkg" is not one of'),
        (
            lambda d: d["conform"].update(number={"function": "regexp", "field": "N"}),
            "$.conform.number: missing required 'pattern'",
        ),
        (
            lambda d: d["conform"].update(number={"function": "constant", "value": "1"}),
            '$.conform.number.function: "constant" is not one of',
        ),
    ],
)
def test_v1_errors_use_the_retired_schema_and_v1_paths(change: Any, error: str) -> None:
    with pytest.raises(SourceInvalid) as caught:
        source_from_dict(flat(change), "us/ca/alameda")
    assert len(caught.value.errors) == 1, caught.value.errors
    assert caught.value.errors[0].startswith(error)


def test_v1_valid_source_that_v2_refuses_reports_v2_paths() -> None:
    # v1 allowed a nested chain step; v2 does not
    nested = {
        "function": "chain",
        "variable": "v",
        "functions": [{"function": "chain", "variable": "w", "functions": ["A"]}],
    }
    v1 = flat(lambda d: d["conform"].update(street=nested))
    with pytest.raises(SourceInvalid) as caught:
        source_from_dict(v1, "us/ca/alameda")
    assert caught.value.errors
    assert all(e.startswith("$.layers.addresses[0].conform.street.functions[0]") for e in caught.value.errors)
