"""Feature lines: a row's line is the same whatever the other rows of its batch hold."""

from __future__ import annotations

import json

import pyarrow as pa

from oa_dagster.conform.writer import feature_lines, point_geometry_json


def lines(properties: dict[str, list], lon: list[float], lat: list[float]) -> list[str]:
    arrays = {
        name: pa.array(values, pa.int64() if name == "accuracy" else pa.string()) for name, values in properties.items()
    }
    geometry = point_geometry_json(pa.array(lon).to_numpy(), pa.array(lat).to_numpy())
    return feature_lines(arrays, {"accuracy"}, geometry).to_pylist()


def test_a_property_constant_in_its_batch_writes_the_same_line_as_a_varying_one() -> None:
    constant = {
        "hash": ["a1", "b2"],
        "street": ['MAIN "ST"', "OAK\\AVE"],
        "region": ['C"A\\', 'C"A\\'],
        "district": ["", ""],
        "accuracy": [1, 1],
    }
    varying = {name: [*values, values[0] + 1 if name == "accuracy" else "other"] for name, values in constant.items()}
    short = lines(constant, [-122.5, 1.25], [37.0, -0.5])
    long = lines(varying, [-122.5, 1.25, 3.0], [37.0, -0.5, 4.0])
    assert short == long[:2]
    first = json.loads(short[0])
    assert first["properties"] == {
        "hash": "a1",
        "street": 'MAIN "ST"',
        "region": 'C"A\\',
        "district": "",
        "accuracy": 1,
    }
    assert first["geometry"] == {"type": "Point", "coordinates": [-122.5, 37]}
    assert all(line.endswith("}\n") and line.count("\n") == 1 for line in long)


def test_one_row_batch_is_all_literal_text_but_the_geometry() -> None:
    (line,) = lines({"hash": ["ff"], "unit": ["APT 1"], "accuracy": [5]}, [0.5], [0.25])
    assert line == (
        '{"type":"Feature","properties":{"hash":"ff","unit":"APT 1","accuracy":5},'
        '"geometry":{"type":"Point","coordinates":[0.5,0.25]}}\n'
    )
