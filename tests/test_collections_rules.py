"""Collections: which area a source is in (every code of the machine's rules), and the licence of an entry."""

from __future__ import annotations

import pytest

from oa_dagster.collections import areas
from oa_dagster.collections.areas import AREA_IDS, areas_of, in_area
from oa_dagster.collections.inputs import licence_class
from oa_dagster.collections.licences import licence_of

US_AREAS = {
    "us_northeast": areas.US_NORTHEAST,
    "us_midwest": areas.US_MIDWEST,
    "us_south": areas.US_SOUTH,
    "us_west": areas.US_WEST,
}
COUNTRY_AREAS = {
    "europe": areas.EUROPE,
    "asia": areas.ASIA,
    "south_america": areas.SOUTH_AMERICA,
    "north_america": areas.NORTH_AMERICA,
}


def test_the_lists_have_the_machines_sizes() -> None:
    assert AREA_IDS == (
        "global",
        "us_northeast",
        "us_midwest",
        "us_south",
        "us_west",
        "europe",
        "asia",
        "south_america",
        "north_america",
    )
    assert sum(len(codes) for codes in US_AREAS.values()) == 51  # 50 states and DC
    assert (len(set(areas.EUROPE)), len(set(areas.ASIA)), len(set(areas.NORTH_AMERICA))) == (30, 78, 38)
    assert len(areas.SOUTH_AMERICA) == 13


@pytest.mark.parametrize("area", list(US_AREAS))
def test_every_us_state_is_in_its_region_only_in_every_spelling(area: str) -> None:
    for state in US_AREAS[area]:
        for key in (
            f"us/{state}",
            f"us/{state}/city_of_x",
            f"us/{state}.statewide",
            f"us-{state}-county",
            f"us-{state}",
        ):
            assert areas_of(key) == ["global", area], key
        assert not in_area(area, f"us/{state}x/somewhere")  # a longer code is another state
        assert not in_area("north_america", f"us/{state}")  # the US is not in north_america (the machine's rule)


@pytest.mark.parametrize("area", list(COUNTRY_AREAS))
def test_every_country_code_is_in_its_area_in_every_spelling(area: str) -> None:
    for code in COUNTRY_AREAS[area]:
        for key in (code, f"{code}/countrywide", f"{code}.statewide", f"{code}-legacy-name"):
            assert in_area(area, key), (area, key)
            assert in_area("global", key)
        assert not in_area(area, f"{code}x/somewhere")


def test_the_machines_quirks_and_sources_outside_every_list() -> None:
    assert areas_of("is/reykjavik") == ["global", "asia"]  # Iceland with Asia
    for key in ("za/cape_town", "ch/zurich", "no/countrywide", "ru/moscow", "ua/kyiv", "ng/lagos", "us"):
        assert areas_of(key) == ["global"], key
    assert areas_of("ca/on/toronto") == ["global", "north_america"]  # Canada, not California
    assert areas_of("us/ca/berkeley") == ["global", "us_west"]
    with pytest.raises(KeyError, match="unknown collection area 'mars'"):
        in_area("mars", "us/ca")


def test_licence_attribution_is_no_only_when_the_source_says_so() -> None:
    assert licence_of({"license": {"text": "PD", "attribution": False}}).attribution_line() == "No"
    named = licence_of({"license": {"text": "CC-BY", "attribution": True, "attribution name": "City of X"}})
    assert (named.attribution_required, named.attribution_line()) == (True, "City of X")
    assert licence_of({"license": {"attribution name": "County Y"}}).attribution_line() == "County Y"
    assert licence_of({"attribution": "Legacy Z", "license": "CC-BY"}).attribution_line() == "Legacy Z"
    assert licence_of({"license": {"attribution": False, "attribution name": "Ignored"}}).attribution_name is None
    assert licence_of({"license": "some terms"}).attribution_line() == "Yes"  # silence: required, to be safe
    assert licence_of({}).describe() == "Unknown"


def test_licence_text_url_and_share_alike_split() -> None:
    sa = licence_of({"license": {"text": "ODbL", "url": "https://odbl.example", "share-alike": True}})
    assert sa.describe() == "ODbL (https://odbl.example)" and licence_class(sa) == "share-alike"
    assert licence_class(licence_of({"license": {"text": "PD", "share-alike": False}})) == "free"
    assert licence_class(licence_of({"license": "CC-BY-SA"})) == "free"  # not flagged: the machine's rule
    assert licence_class(licence_of({"license": {"share-alike": "yes"}})) == "share-alike"  # legacy strings
    assert licence_of({"license": {"url": "https://only.url"}}).describe() == "https://only.url"


def test_licence_of_a_v2_source_picks_the_entry() -> None:
    source = {
        "layers": {
            "addresses": [
                {"name": "a", "license": {"text": "A", "attribution": False}, "website": "https://a.example"},
                {"name": "b", "license": {"text": "B", "share-alike": True}},
            ],
            "parcels": [{"name": "p", "license": "P terms"}],
        }
    }
    assert licence_of(source).text == "A" and licence_of(source).website == "https://a.example"
    assert licence_of(source, "addresses", "b").share_alike is True
    assert licence_of(source, "parcels").describe() == "P terms"
