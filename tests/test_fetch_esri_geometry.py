"""Esri JSON → GeoJSON geometry conversion, including the reference's bugs that are fixed here."""

from __future__ import annotations

from shapely.geometry import shape

from oa_dagster.fetch.esri import esri_to_geojson

SQUARE_CW = [[0, 0], [0, 10], [10, 10], [10, 0], [0, 0]]  # Esri outer rings are clockwise
HOLE_CCW = [[2, 2], [4, 2], [4, 4], [2, 4], [2, 2]]


def test_point_with_zero_coordinate_is_kept() -> None:
    assert esri_to_geojson({"x": 0, "y": 51.5}) == {"type": "Point", "coordinates": [0.0, 51.5]}


def test_empty_points_are_none() -> None:
    assert esri_to_geojson({"x": None, "y": None}) is None
    assert esri_to_geojson({"x": "NaN", "y": "NaN"}) is None
    assert esri_to_geojson(None) is None
    assert esri_to_geojson({"points": []}) is None


def test_multipoint_of_one_is_a_point() -> None:
    assert esri_to_geojson({"points": [[1, 2]]}) == {"type": "Point", "coordinates": [1.0, 2.0]}
    assert esri_to_geojson({"points": [[1, 2], [3, 4]]})["type"] == "MultiPoint"


def test_paths_become_lines() -> None:
    assert esri_to_geojson({"paths": [[[0, 0], [1, 1]]]})["type"] == "LineString"
    multi = esri_to_geojson({"paths": [[[0, 0], [1, 1]], [[2, 2], [3, 3]], [[9, 9]]]})
    assert multi["type"] == "MultiLineString" and len(multi["coordinates"]) == 2


def test_polygon_with_hole_is_valid_and_counter_clockwise() -> None:
    geometry = esri_to_geojson({"rings": [SQUARE_CW, HOLE_CCW]})
    polygon = shape(geometry)
    assert geometry["type"] == "Polygon" and polygon.is_valid
    assert polygon.area == 100 - 4
    assert polygon.exterior.is_ccw


def test_hole_goes_to_the_outer_ring_containing_it() -> None:
    far_square = [[[x + 20, y] for x, y in SQUARE_CW]][0]
    # the hole is listed after the second outer ring but lies inside the first
    geometry = esri_to_geojson({"rings": [SQUARE_CW, far_square, HOLE_CCW]})
    assert geometry["type"] == "MultiPolygon"
    multi = shape(geometry)
    assert multi.is_valid and multi.area == 200 - 4
    assert len(geometry["coordinates"][0]) == 2 and len(geometry["coordinates"][1]) == 1


def test_open_rings_are_closed_and_degenerate_rings_dropped() -> None:
    geometry = esri_to_geojson({"rings": [SQUARE_CW[:-1], [[0, 0], [1, 1], [0, 0]]]})
    assert geometry["type"] == "Polygon" and len(geometry["coordinates"]) == 1
    ring = geometry["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) == 5


def test_rings_wound_only_counter_clockwise_are_still_polygons() -> None:
    geometry = esri_to_geojson({"rings": [SQUARE_CW[::-1]]})
    assert geometry is not None and shape(geometry).area == 100
