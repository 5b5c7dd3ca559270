"""The coverage maps: drawn from the stored coverage through `dg.materialize`, on the local store and on S3.

Each PNG has its size (the machine's, but for Europe's wider extent), and the pixel at a known lon/lat of a good,
a partly covered and a failing country, state, county and source area (projected as the map projects it) has
that layer's colour.
"""

from __future__ import annotations

import base64
import io
import re
from typing import Any

import dagster as dg
from PIL import Image

from oa_dagster.assets.coverage import COVERAGE_ASSETS, INLINE_MARKDOWN_LIMIT, map_key, map_markdown
from oa_dagster.coverage import maps
from oa_dagster.coverage.keys import thumbnail_key
from oa_dagster.platform.store import OutputStore

pytest_plugins = ["tests.servers.fixtures", "tests.coverage_helpers"]

# the machine's sizes; Europe reaches the Urals and the North Cape (the machine's was 1920x1152 and cut them off)
SIZES = {"world": (1920, 1103), "usa": (1920, 1207), "europe": (1920, 1408)}


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

    assert _colour(usa, maps.MAPS["usa"], -71.6, 43.6) == maps.PARTLY  # New Hampshire: addresses good, parcels not
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
    for lon, lat in ((58.5, 61.0), (25.0, 69.8), (-18.5, 64.8)):  # the Urals, Finnmark, Iceland: on the map
        assert _colour(europe, maps.MAPS["europe"], lon, lat) == maps.LAND, (lon, lat)

    for name, (width, height) in SIZES.items():  # drawn small for the UI, the same extent, its legend below
        thumbnail = Image.open(io.BytesIO(store.get_bytes(thumbnail_key(name)) or b"")).convert("RGB")
        assert thumbnail.width == 400 and thumbnail.height > round(400 * height / width), name
        below = thumbnail.crop((0, round(400 * height / width), 400, thumbnail.height))
        assert {maps.GOOD, maps.PARTLY, maps.BAD} <= {colour for _, colour in below.getcolors(1 << 16)}, name
    meta = result.asset_materializations_for_node("coverage_maps")[0].metadata
    assert meta["map_world"].value.startswith("![world coverage](data:image/png;base64,")  # neither store has HTTP
    assert meta["url_usa"].value == store.url(map_key("usa"))


def _town(status: str, entries_failing: int = 0) -> dict[str, Any]:
    """A town's output hull (about a pixel on any of these maps) as `render-world.geojson` has it."""
    ring = [[-122.27, 37.86], [-122.26, 37.86], [-122.26, 37.87], [-122.27, 37.87], [-122.27, 37.86]]
    return {
        "type": "Feature",
        "properties": {"status": status, "kind": "hull", "source count": 1, "entries failing": entries_failing},
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }


def test_an_area_too_small_to_see_is_drawn_as_an_outlined_dot_in_its_status_colour() -> None:
    """A town's output hull is a pixel wide on these maps: it is drawn as a dot a fifth of a centimetre wide on a
    1,000 px screen, so a covered town always shows; partly covered and failing towns in their colours."""
    from oa_dagster.coverage.boundaries import load_boundaries

    view = maps.MAPS["world"]
    for feature, colour in (
        (_town("good"), maps.GOOD_DARK),
        (_town("good", entries_failing=1), maps.PARTLY_DARK),
        (_town("bad"), maps.BAD_DARK),
    ):
        png = maps.render_map(view, {"type": "FeatureCollection", "features": [feature]}, load_boundaries())
        image = Image.open(io.BytesIO(png)).convert("RGB")
        x, y = view.pixel(-122.265, 37.865)
        inside = [image.getpixel((x + dx, y + dy)) for dx in range(-6, 7) for dy in range(-6, 7)]
        assert inside.count(colour) >= 150, colour  # a solid disc, not a pixel
        assert image.getpixel((x + 12, y - 12)) != colour
        small = image.resize((1000, round(1000 * image.height / image.width)), Image.Resampling.LANCZOS)
        seen = small.getpixel((round(x * 1000 / image.width), round(y * 1000 / image.width)))
        assert sum(abs(a - b) for a, b in zip(seen, colour, strict=True)) < 40, (seen, colour)  # still that colour


def test_every_map_has_a_legend_with_each_status_the_date_and_the_counts() -> None:
    """The legend shows the three statuses' colours even when no area has them, and its text (the date, the
    counts) is drawn: two dates or two counts give two different pictures of the same areas."""
    from oa_dagster.coverage.boundaries import load_boundaries

    one = {"type": "FeatureCollection", "features": [_town("good")]}
    two = {"type": "FeatureCollection", "features": [_town("good"), _town("good")]}
    for name, view in maps.MAPS.items():
        png = maps.render_map(view, one, load_boundaries(), "2026-12-07T02:25:03+00:00")
        colours = {colour for _, colour in Image.open(io.BytesIO(png)).convert("RGB").getcolors(1 << 20)}
        for status in (maps.GOOD, maps.GOOD_DARK, maps.PARTLY, maps.PARTLY_DARK, maps.BAD, maps.BAD_DARK):
            assert status in colours, (name, status)
        if name == "usa":  # the town is on this map: one more area counted changes the legend
            assert png != maps.render_map(view, two, load_boundaries(), "2026-12-07T02:25:03+00:00")
        assert png != maps.render_map(view, one, load_boundaries(), "2026-12-08T02:25:03+00:00")


def test_the_maps_in_the_ui_are_drawn_in_place_when_the_browser_can_fetch_them() -> None:
    """Dagster's UI draws markdown under 1,000 characters in place, at the picture's size: the thumbnail's HTTP URL,
    linked to the full map; anything else gets the thumbnail as a data: URL (shown after one click on
    "[Show Markdown]")."""
    out = io.BytesIO()
    Image.new("RGB", (400, 230), maps.LAND).save(out, format="PNG")
    small = out.getvalue()
    base = "http://127.0.0.1:3001/download/coverage/render-world"
    markdown = map_markdown("world", f"{base}-thumbnail.png", f"{base}.png", small)
    thumb, full = re.escape(f"{base}-thumbnail.png"), re.escape(f"{base}.png")
    assert re.fullmatch(rf"\[!\[world coverage\]\({thumb}\?v=[0-9a-f]{{12}}\)\]\({full}\)", markdown)
    assert len(markdown) < INLINE_MARKDOWN_LIMIT == 1000
    for elsewhere in ("file:///srv/data/coverage/", "s3://bucket/coverage/"):
        markdown = map_markdown(
            "world", f"{elsewhere}render-world-thumbnail.png", f"{elsewhere}render-world.png", small
        )
        assert markdown == f"![world coverage](data:image/png;base64,{base64.b64encode(small).decode()})"
