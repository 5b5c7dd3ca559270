"""The coverage maps: drawn from the stored coverage through `dg.materialize`, on the local store and on S3.

Each PNG has the machine's size, and the pixel at a known lon/lat of a good and a failing country, state, county
and source area (projected as the map projects it) has that layer's colour.
"""

from __future__ import annotations

import io
from typing import Any

import dagster as dg
from PIL import Image

from oa_dagster.assets.coverage import COVERAGE_ASSETS, map_key
from oa_dagster.coverage import maps
from oa_dagster.platform.store import OutputStore

pytest_plugins = ["tests.servers.fixtures", "tests.coverage_helpers"]

SIZES = {"world": (1920, 1103), "usa": (1920, 1207), "europe": (1920, 1152)}  # the machine's, §1.8


def _colour(png: bytes, view: maps.MapView, lon: float, lat: float) -> tuple[int, int, int]:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    return image.getpixel(view.pixel(lon, lat))  # type: ignore[return-value]


def test_maps_have_the_machine_size_and_colour_good_and_bad_areas(world: tuple[dict[str, Any], OutputStore]) -> None:
    resources, store = world
    with dg.instance_for_test() as instance:
        result = dg.materialize(COVERAGE_ASSETS, instance=instance, resources=resources)
    assert result.success
    pngs = {name: store.get_bytes(map_key(name)) for name in SIZES}
    for name, png in pngs.items():
        assert png is not None, name
        assert Image.open(io.BytesIO(png)).size == SIZES[name]
        assert maps.MAPS[name].height == SIZES[name][1]

    world_map, usa, europe = pngs["world"], pngs["usa"], pngs["europe"]
    assert _colour(world_map, maps.MAPS["world"], 9.2, 56.2) == maps.GOOD  # Denmark, by its ISO code
    assert _colour(world_map, maps.MAPS["world"], 15.5, 49.8) == maps.BAD  # Czechia: failing, never good
    assert _colour(world_map, maps.MAPS["world"], 134.0, -25.0) == maps.BAD  # Australia: AU-VIC, no output
    assert _colour(world_map, maps.MAPS["world"], 100.0, 60.0) == maps.LAND  # Russia: no source
    assert _colour(world_map, maps.MAPS["world"], -30.0, 30.0) == maps.WATER

    assert _colour(usa, maps.MAPS["usa"], -71.6, 43.6) == maps.GOOD  # New Hampshire, by its GEOID
    assert _colour(usa, maps.MAPS["usa"], -71.55, 41.7) == maps.GOOD  # Rhode Island, by ISO 3166 US-RI
    assert _colour(usa, maps.MAPS["usa"], -79.75, 34.05) == maps.GOOD_DARK  # Florence County, SC
    assert _colour(usa, maps.MAPS["usa"], -95.4, 29.85) == maps.BAD_DARK  # Harris County, TX: failing now
    assert _colour(usa, maps.MAPS["usa"], -97.5, 35.5) == maps.GOOD_DARK  # the ACOG polygon
    assert _colour(usa, maps.MAPS["usa"], -100.0, 31.0) == maps.LAND  # elsewhere in Texas

    assert _colour(europe, maps.MAPS["europe"], 9.2, 56.2) == maps.GOOD
    assert _colour(europe, maps.MAPS["europe"], 15.5, 49.8) == maps.BAD
    assert _colour(europe, maps.MAPS["europe"], 13.5, 52.5) == maps.GOOD_DARK  # Brandenburg, by its output hull
    assert _colour(europe, maps.MAPS["europe"], 24.15, 56.97) == maps.GOOD_DARK  # Riga, by its output hull
    assert _colour(europe, maps.MAPS["europe"], 2.5, 46.5) == maps.LAND  # France: no source

    meta = result.asset_materializations_for_node("coverage_maps")[0].metadata
    assert meta["map_world"].value.startswith("![world coverage](data:image/png;base64,")
    assert meta["url_usa"].value == store.url(map_key("usa"))


def test_an_area_too_small_to_see_is_drawn_as_a_dot() -> None:
    """A town's output hull is a pixel wide on these maps: it is drawn as a dot so a good source always shows."""
    town = [[-122.27, 37.86], [-122.26, 37.86], [-122.26, 37.87], [-122.27, 37.87], [-122.27, 37.86]]
    feature = {"type": "Feature", "properties": {"status": "good", "kind": "hull"}}
    geojson = {
        "type": "FeatureCollection",
        "features": [{**feature, "geometry": {"type": "Polygon", "coordinates": [town]}}],
    }
    from oa_dagster.coverage.boundaries import load_boundaries

    view = maps.MAPS["usa"]
    png = maps.render_map(view, geojson, load_boundaries())
    x, y = view.pixel(-122.265, 37.865)
    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.getpixel((x + 2, y)) == maps.GOOD_DARK and image.getpixel((x, y + 2)) == maps.GOOD_DARK
    assert image.getpixel((x + 12, y - 12)) != maps.GOOD_DARK
