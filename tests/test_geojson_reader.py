"""The streaming GeoJSON reader: its Arrow fast path agrees with the exact Python path on awkward files."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from oa_dagster.conform import geojson_fast, geojson_reader
from oa_dagster.errors import ConformError


def read(path: Path, **conform: object) -> tuple[pa.Table, list]:
    batches = list(geojson_reader.open_geojson(path, dict(conform)).batches)
    table = pa.concat_tables([b.columns for b in batches], promote_options="permissive")
    coords = []
    for b in batches:
        if b.lon is not None:
            coords += [None if x != x else (x, y) for x, y in zip(b.lon.tolist(), b.lat.tolist(), strict=True)]
        else:
            coords += [None if g is None else g.wkt for g in b.geoms]
    return table, coords


def slow(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[pa.Table, list]:
    with monkeypatch.context() as m:
        m.setattr(geojson_reader, "_fast_start", lambda head, suffix: None)
        return read(path)


AWKWARD = {
    "type": "FeatureCollection",
    "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84", "features": "not these"}},
    "name": 'awkward "features": [ {',
    "features": [
        {
            "type": "Feature",
            "properties": {"N": "1", "S": 'Quote " and brace } street', "T": "a\\\\"},
            "geometry": {"type": "Point", "coordinates": [1.5, 2.5]},
        },
        {"type": "Feature", "properties": {"N": "2", "S": "Tab\tand \\u00e9", "T": None}, "geometry": None},
        {"type": "Feature", "properties": None, "geometry": {"type": "Point", "coordinates": [3, 4, 99]}},
        {
            "type": "Feature",
            "properties": {"N": "4", "S": "[nested]", "X": {"k": [1, 2]}},
            "geometry": {"type": "Point", "coordinates": [5, 6]},
        },
    ],
    "bbox": [1, 2, 5, 6],
}


@pytest.mark.parametrize("indent", [None, 2])
def test_fast_path_matches_the_exact_reader_on_escapes_nesting_and_nulls(
    tmp_path: Path, indent: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.geojson"
    path.write_text(json.dumps(AWKWARD, indent=indent))
    assert geojson_reader._fast_start(path.read_bytes(), ".geojson") is not None
    fast_table, fast_coords = read(path)
    slow_table, slow_coords = slow(path, monkeypatch)
    assert fast_coords == slow_coords == [(1.5, 2.5), None, (3.0, 4.0), (5.0, 6.0)]
    assert fast_table.column("S").to_pylist() == slow_table.column("S").to_pylist()
    assert fast_table.column("S").to_pylist()[0] == 'Quote " and brace } street'
    assert json.loads(fast_table.column("X").to_pylist()[3]) == {"k": [1, 2]}


def test_features_split_across_chunk_boundaries_are_all_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    features = [
        {
            "type": "Feature",
            "properties": {"N": str(i), "S": "x" * (i % 50)},
            "geometry": {"type": "Point", "coordinates": [i, -i]},
        }
        for i in range(2_000)
    ]
    path = tmp_path / "a.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    monkeypatch.setattr(geojson_fast, "CHUNK_BYTES", 997)
    table, coords = read(path)
    assert table.column("N").to_pylist() == [str(i) for i in range(2_000)]
    assert coords[1999] == (1999.0, -1999.0)


def test_mixed_property_types_and_polygons_fall_back_to_the_exact_path(tmp_path: Path) -> None:
    path = tmp_path / "a.geojsonl"
    path.write_text(
        "\n".join(
            json.dumps(f)
            for f in [
                {"type": "Feature", "properties": {"N": 12}, "geometry": {"type": "Point", "coordinates": [0, 0]}},
                {
                    "type": "Feature",
                    "properties": {"N": "12B"},
                    "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]},
                },
            ]
        )
        + "\n"
    )
    table, coords = read(path)
    assert table.column("N").to_pylist() == ["12", "12B"]
    assert coords[0] == "POINT (0 0)" and coords[1].startswith("POLYGON")


def test_integral_floats_read_as_integers_like_the_original_machine(tmp_path: Path) -> None:
    path = tmp_path / "a.geojson"
    path.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"N": 5.0, "B": True},
                        "geometry": {"type": "Point", "coordinates": [0, 0]},
                    },
                    {"type": "Feature", "properties": {"N": 5.5, "B": False}, "geometry": None},
                ],
            }
        )
    )
    table, _ = read(path)
    assert table.column("N").to_pylist() == ["5", "5.5"]
    assert table.column("B").to_pylist() == ["true", "false"]


def test_a_truncated_file_is_an_error_naming_the_cause(tmp_path: Path) -> None:
    path = tmp_path / "a.geojson"
    path.write_text(json.dumps(AWKWARD)[:-60])
    with pytest.raises(ConformError, match="invalid GeoJSON"):
        read(path)


def test_latin1_geojson_is_read_with_the_conform_encoding(tmp_path: Path) -> None:
    path = tmp_path / "a.geojson"
    path.write_bytes(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"S": "Église"},
                        "geometry": {"type": "Point", "coordinates": [0, 0]},
                    }
                ],
            },
            ensure_ascii=False,
        ).encode("latin-1")
    )
    table, _ = read(path, encoding="latin-1")
    assert table.column("S").to_pylist() == ["Église"]
