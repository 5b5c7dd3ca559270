"""The pieces under the coverage asset: TopoJSON decoding, the streaming hull, and the placement order."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import shapely

from oa_dagster.coverage import hull as hull_module
from oa_dagster.coverage.boundaries import load_boundaries
from oa_dagster.coverage.hull import output_hull
from oa_dagster.coverage.matching import place
from oa_dagster.coverage.shapes import area_km2
from oa_dagster.coverage.topojson import Topology
from tests.coverage_helpers import grid, point_lines


def test_topojson_rings_join_arcs_and_shared_arcs_are_borders() -> None:
    # two unit squares side by side sharing arc 1 (the edge x=1), quantized with scale 1 and delta-encoded
    topology = {
        "type": "Topology",
        "transform": {"scale": [1, 1], "translate": [10, 20]},
        "objects": {
            "squares": {
                "type": "GeometryCollection",
                "geometries": [
                    {"type": "Polygon", "arcs": [[0, 1]], "id": "A", "properties": {"name": "a"}},
                    {"type": "Polygon", "arcs": [[2, ~1]], "id": "B", "properties": {"name": "b"}},
                ],
            }
        },
        "arcs": [
            [[1, 0], [-1, 0], [0, 1], [1, 0]],  # (1,0) (0,0) (0,1) (1,1)
            [[1, 1], [0, -1]],  # (1,1) (1,0)
            [[1, 0], [1, 0], [0, 1], [-1, 0]],  # (1,0) (2,0) (2,1) (1,1)
        ],
    }
    decoded = Topology(topology)
    a, b = decoded.features("squares")
    assert (a.id, a.properties, b.id) == ("A", {"name": "a"}, "B")
    assert a.geometry.equals(shapely.box(10, 20, 11, 21)) and b.geometry.equals(shapely.box(11, 20, 12, 21))
    (border,) = decoded.arc_lines("squares", shared=True)
    assert border.tolist() == [[11, 21], [11, 20]]
    assert len(decoded.arc_lines("squares", shared=False)) == 2


def test_bundled_boundaries_stay_within_the_flat_world_across_the_antimeridian() -> None:
    boundaries = load_boundaries()
    for code in ("RU", "FJ", "AQ", "US"):
        west, south, east, north = boundaries.countries[code].geometry.bounds
        assert west >= -180 and east <= 180 and south >= -90 and north <= 90, code
    assert 11_000_000 < boundaries.countries["AQ"].area_km2 < 14_500_000  # Antarctica closed over the pole
    assert 16_000_000 < boundaries.countries["RU"].area_km2 < 17_500_000
    assert boundaries.countries["FJ"].geometry.intersects(shapely.Point(179.9, -16.5).buffer(0.3))
    assert len(boundaries.states) == 56 and boundaries.states_by_usps["CA"].code == "06"
    assert boundaries.counties["06001"].name == "Alameda"
    assert boundaries.countries["FR"].extra["pop_est"] > 60_000_000 and boundaries.countries["XK"].name == "Kosovo"


def test_hull_streams_blocks_reads_other_geometries_and_stops_at_the_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hull_module, "BLOCK_BYTES", 1000)  # many blocks, lines split across them
    lines = point_lines(grid(0.0, 0.0, 1.0, 1.0, 10))
    polygon = {"type": "Polygon", "coordinates": [[[5, 5], [6, 5], [6, 7], [5, 5]]]}
    lines.insert(40, json.dumps({"type": "Feature", "properties": {"pid": "1"}, "geometry": polygon}))
    lines.insert(60, "not json")
    path = tmp_path / "out.geojson"
    path.write_text("\n".join(lines))  # no newline after the last line
    whole = output_hull(path)
    assert whole.features_read == 102 and not whole.truncated
    expected = shapely.MultiPoint([(0, 0), (1, 0), (1, 1), (0, 1), (5, 5), (6, 5), (6, 7)]).convex_hull
    assert whole.geometry.equals(expected)
    first = output_hull(path, max_features=30)  # the first three columns of the grid: x up to 2/9
    assert first.truncated and first.features_read == 30
    assert first.geometry.bounds == pytest.approx((0.0, 0.0, 2 / 9, 1.0), abs=1e-6)


def test_hull_of_a_single_point_is_that_point(tmp_path: Path) -> None:
    path = tmp_path / "out.geojson"
    path.write_text("\n".join(point_lines([(3.0, 4.0), (3.0, 4.0)])) + "\n")
    assert output_hull(path).geometry.equals(shapely.Point(3, 4))
    path.write_text("")
    assert output_hull(path).geometry is None


def _place(coverage: dict[str, Any], key: str = "xx/source", hull: Any = None) -> Any:
    return place(key, {"coverage": coverage}, load_boundaries(), lambda: hull)


def test_placement_order_from_exact_codes_to_approximate_areas() -> None:
    square = shapely.box(-122.3, 37.7, -122.1, 37.9)
    county = _place({"US Census": {"geoid": "06001"}, "ISO 3166": {"alpha2": "US-CA"}}, "us/ca/alameda")
    assert (county.kind, county.boundary.code, county.country, county.state) == ("county", "06001", "US", "06")
    state = _place({"US Census": {"geoid": "06"}})
    assert (state.kind, state.code_property, state.code) == ("state", "US Census GEOID", "06")
    iso_state = _place({"ISO 3166": {"alpha2": "US-CA"}})
    assert (iso_state.kind, iso_state.code_property, iso_state.boundary) == ("state", "ISO 3166-2", state.boundary)
    assert _place({"ISO 3166": "nz"}).boundary.code == "NZ"  # a bare string, lower case
    # a US place GEOID: its output's hull when there is one, else its state (approximate)
    place_geoid = {"US Census": {"geoid": "0606000"}, "country": "us", "state": "ca", "city": "Berkeley"}
    assert _place(place_geoid, "us/ca/berkeley", hull=square).kind == "hull"
    fallback = _place(place_geoid, "us/ca/berkeley")
    assert (fallback.kind, fallback.boundary.code) == ("state", "06") and "whole state" in fallback.approximate
    # a non-US subdivision with no output: its country, approximate
    subdivision = _place({"ISO 3166": {"alpha2": "DE-BE"}})
    assert (subdivision.kind, subdivision.boundary.code) == ("country", "DE") and subdivision.approximate
    # a coverage polygon beats the hull; a coverage point loses to it, and is widened to 10 km without one
    polygon = {"type": "Polygon", "coordinates": [[[-97, 35], [-96, 35], [-96, 36], [-97, 35]]]}
    assert _place({"country": "us", "geometry": polygon}, hull=square).kind == "geometry"
    point = {"type": "Point", "coordinates": [-122.27, 37.87]}
    assert _place({"country": "us", "city": "x", "geometry": point}, hull=square).kind == "hull"
    widened = _place({"country": "us", "city": "x", "geometry": point})
    assert widened.kind == "point" and 300 < area_km2(widened.geometry) < 330  # pi x 10 km x 10 km
    # free text naming a whole country or state, and nothing narrower
    assert _place({"country": "dk"}).boundary.code == "DK"
    assert _place({"country": "us", "state": "vt"}, "us/vt/statewide").boundary.code == "50"
    riga = {"country": "lv", "city": "Riga"}
    assert _place(riga, hull=shapely.box(24, 56.9, 24.3, 57)).geometry.equals(shapely.box(24, 56.9, 24.3, 57))
    assert _place(riga).kind == "country" and _place(riga).approximate  # no output: the country, approximate
    assert _place({}, "zz/nowhere").kind == "unplaced"


def test_the_coverage_package_imports_no_dagster() -> None:
    code = (
        "import sys, oa_dagster.coverage.report, oa_dagster.coverage.maps\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'dagster'], 'dagster imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parent.parent)


def test_build_boundaries_takes_its_input_folder_as_an_argument(tmp_path: Path) -> None:
    """The rebuild script reads only the folder it is given, and says what is missing from it."""
    script = [sys.executable, str(Path(__file__).resolve().parents[1] / "scripts" / "build_boundaries.py")]
    bare = subprocess.run(script, capture_output=True, text=True, timeout=60)
    assert bare.returncode == 2 and "FOLDER" in bare.stderr
    empty = subprocess.run([*script, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert empty.returncode == 2
    assert f"{tmp_path} has no world-atlas/countries-50m.json, us-atlas/counties-10m.json" in empty.stderr
