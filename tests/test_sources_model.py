"""Loading sources into the model: keys, entries, unique names, entry selection, catalog, coverage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from oa_dagster.errors import MISSING_COVERAGE
from oa_dagster.sources import (
    LAYERS,
    EntryNotFound,
    SourceInvalid,
    has_coverage,
    iter_source_files,
    load_catalog,
    load_source,
    source_from_dict,
    source_key_for,
)
from oa_dagster.sources.coverage import coverage_problem

DATA = Path(__file__).parent / "data" / "sources"
ALAMEDA = DATA / "us" / "ca" / "alameda.json"
PERRYSBURG = DATA / "us" / "oh" / "city_of_perrysburg.json"
AMHERSTBURG = DATA / "ca" / "on" / "amherstburg.json"


def test_source_key_is_the_path_after_the_last_sources_directory() -> None:
    assert source_key_for(ALAMEDA) == "us/ca/alameda"
    assert source_key_for("checkout/sources/fi/etelä-savo-fi/x.json") == "fi/etelä-savo-fi/x"
    assert source_key_for("a/sources/b/sources/br/sp/GeoSampa.json") == "br/sp/GeoSampa"
    assert source_key_for("sources/us/ca/alameda.json") == "us/ca/alameda"


def test_source_key_outside_a_sources_directory_is_the_file_name() -> None:
    assert source_key_for("somewhere/my-source.json") == "my-source"
    assert source_key_for("my-source.json") == "my-source"


def test_valid_v2_source_loads_with_one_entry_per_layer_item() -> None:
    source = load_source(ALAMEDA)
    assert source.key == "us/ca/alameda"
    assert not source.upgraded_from_v1
    assert [(e.layer, e.name, e.index) for e in source.entries] == [
        ("addresses", "county", 0),
        ("parcels", "county", 0),
    ]
    address = source.entry("addresses", "county")
    assert address.key == "us/ca/alameda/county"
    assert address.protocol == "ESRI"
    assert address.conform is not None and address.conform["number"] == "ST_NUM"
    assert address.source_dir == ALAMEDA.parent
    assert address.license == {"text": "https://www.acgov.org/acdata/terms.htm"}


def test_entries_follow_layer_order_not_file_order() -> None:
    # perrysburg lists addresses, buildings, parcels; entries come in LAYERS order
    layers = [e.layer for e in load_source(PERRYSBURG).entries]
    assert layers == sorted(layers, key=LAYERS.index)
    assert layers == ["addresses", "addresses", "parcels", "buildings"]


def test_repeated_entry_names_get_suffixes_by_order() -> None:
    source = load_source(PERRYSBURG)
    addresses = source.layer_entries("addresses")
    assert [e.name for e in addresses] == ["city", "city-2"]
    assert [e.index for e in addresses] == [0, 1]
    assert addresses[1].data.endswith("FeatureServer/1")
    assert source.entry("addresses", "city-2") is addresses[1]
    # other layers keep their own names
    assert source.entry("parcels", "city").key == "us/oh/city_of_perrysburg/city"


def test_suffixes_skip_names_another_entry_uses_literally() -> None:
    entry = {"protocol": "http", "data": "x.csv", "conform": {"format": "csv", "number": "n", "street": "s"}}
    data = {
        "schema": 2,
        "coverage": {"country": "us"},
        "layers": {"addresses": [{"name": n, **entry} for n in ("city", "city", "city-2", "city")]},
    }
    source = source_from_dict(data, "us/xx/test")
    assert [e.name for e in source.entries] == ["city", "city-3", "city-2", "city-4"]
    assert len({e.key for e in source.entries}) == 4


def test_entry_name_may_be_omitted_when_the_layer_has_one_entry() -> None:
    source = load_source(ALAMEDA)
    assert source.entry("parcels", None).name == "county"


def test_entry_without_name_is_refused_when_the_layer_has_several() -> None:
    source = load_source(PERRYSBURG)
    with pytest.raises(EntryNotFound) as caught:
        source.entry("addresses", None)
    assert "several entries" in str(caught.value)
    assert caught.value.choices["addresses"] == ["city", "city-2"]


def test_entry_not_found_lists_the_choices() -> None:
    source = load_source(ALAMEDA)
    with pytest.raises(EntryNotFound) as caught:
        source.entry("addresses", "city")
    message = str(caught.value)
    assert "'city'" in message and "addresses: county" in message and "parcels: county" in message
    assert caught.value.choices == {"addresses": ["county"], "parcels": ["county"]}
    with pytest.raises(EntryNotFound, match="no buildings layer"):
        source.entry("buildings", None)


def test_source_from_dict_does_not_modify_its_input() -> None:
    data = json.loads(ALAMEDA.read_text(encoding="utf-8"))
    before = json.dumps(data, sort_keys=True)
    source = source_from_dict(data, "us/ca/alameda", ALAMEDA)
    assert json.dumps(data, sort_keys=True) == before
    assert source.path == ALAMEDA and source.entries[0].source_dir == ALAMEDA.parent


def test_source_without_layers_is_valid_and_has_no_entries() -> None:
    source = source_from_dict({"schema": 2, "coverage": {"country": "us"}}, "us/xx/empty")
    assert source.entries == ()
    assert source.choices() == {}


def test_unreadable_file_raises_os_error_for_the_caller_to_report(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_source(tmp_path / "sources" / "missing.json")


def test_iter_source_files_lists_json_under_sources_sorted(tmp_path: Path) -> None:
    tree = tmp_path / "checkout"
    shutil.copytree(DATA, tree / "sources")
    (tree / "sources" / "us" / "README.md").write_text("not a source", encoding="utf-8")
    expected = ["ca/on/amherstburg.json", "us/ca/alameda.json", "us/oh/city_of_perrysburg.json"]
    for root in (tree, tree / "sources"):
        found = [p.relative_to(tree / "sources").as_posix() for p in iter_source_files(root)]
        assert found == expected


def test_catalog_reports_bad_files_and_still_loads_the_others(tmp_path: Path) -> None:
    root = tmp_path / "sources"
    shutil.copytree(DATA, root)
    (root / "us" / "xx").mkdir()
    (root / "us" / "xx" / "broken.json").write_text('{"schema": 2,', encoding="utf-8")
    (root / "us" / "xx" / "no_coverage.json").write_text('{"schema": 2}', encoding="utf-8")
    sources, invalid = load_catalog(tmp_path)
    assert [s.key for s in sources] == ["ca/on/amherstburg", "us/ca/alameda", "us/oh/city_of_perrysburg"]
    assert set(invalid) == {"us/xx/broken", "us/xx/no_coverage"}
    assert invalid["us/xx/broken"][0].startswith("$: invalid JSON at line 1 column")
    assert invalid["us/xx/no_coverage"] == ["$: missing required 'coverage'"]


def test_catalog_keys_are_relative_to_the_sources_directory(tmp_path: Path, monkeypatch) -> None:
    shutil.copytree(DATA, tmp_path / "sources")
    monkeypatch.chdir(tmp_path / "sources")
    sources, invalid = load_catalog(".")
    assert not invalid
    assert [s.key for s in sources][0] == "ca/on/amherstburg"


def test_coverage_with_census_iso_or_geometry_is_placeable() -> None:
    assert has_coverage(load_source(ALAMEDA))  # US Census
    assert has_coverage(load_source(PERRYSBURG))  # US Census and geometry
    assert has_coverage({"coverage": {"country": "fr", "ISO 3166": {"alpha2": "FR-75"}}})
    assert has_coverage({"coverage": {"country": "xx", "geometry": {"type": "Point", "coordinates": [1, 2]}}})
    assert coverage_problem(load_source(ALAMEDA)) is None


def test_coverage_with_only_names_is_missing_or_incomplete() -> None:
    source = load_source(AMHERSTBURG)
    assert not has_coverage(source)
    assert coverage_problem(source) == MISSING_COVERAGE == "Missing or incomplete coverage"
    assert not has_coverage({"coverage": {"country": "us", "US Census": {}}})
    assert not has_coverage({})


def test_invalid_source_carries_its_key_and_errors() -> None:
    with pytest.raises(SourceInvalid) as caught:
        source_from_dict({"schema": 2}, "us/xx/bad")
    assert caught.value.source == "us/xx/bad"
    assert caught.value.errors == ["$: missing required 'coverage'"]
    assert str(caught.value).startswith("us/xx/bad: invalid source: ")
