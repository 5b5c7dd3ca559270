"""Output bytes pinned: `oa-dagster process` on fixed inputs of every format must write exactly the files it did.

Each case writes a deterministic input (seeded rows, several batches long, with the values that need care:
quotes, backslashes, control characters, non-ASCII text, empty and missing values, rows without or with bad
geometry, CSV rows with too many or too few fields), processes it through the CLI, and compares the SHA-256
of `out.geojson` and `sample.json`, `state.json` without its timings, and the warnings of `log.txt`, with
`tests/data/golden/conform_outputs.json`. Any change of an output byte fails here, so engine work (pipelining,
readers) can prove it changed nothing. Regenerate deliberately, after reviewing the change, with
`OA_GOLDEN_WRITE=1 pytest tests/test_conform_golden.py`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import shapely

from oa_dagster.cli import main
from tests.geofiles import write_source, zip_folder

GOLDEN = Path(__file__).parent / "data" / "golden" / "conform_outputs.json"
EXAMPLE = Path(__file__).resolve().parents[1] / "oa_dagster" / "examples" / "sources"
ROWS = 70_000  # more than two reader batches (32,768 rows), so batch boundaries and ordering are covered
STATE_PLANE = "EPSG:2227"
TIMINGS = {"cache_seconds", "process_seconds", "peak_memory_mb"}  # measurements, not outputs
# GDAL writes fresh GUIDs into every File Geodatabase, so that download's fingerprint, and with it each
# feature's hash, differs per run: there the hashes are blanked (every other case pins them)
FRESH_BYTES = {"gdb-zip"}
HASH = re.compile(rb'"hash":"[0-9a-f]{16}"')
ADDRESS_CONFORM: dict[str, Any] = {
    "number": {"function": "join", "fields": ["ADDNUM", "ADDNUMSUF"], "separator": ""},
    "street": ["PREDIR", "STNAME", "STTYPE"],
    "unit": {"function": "regexp", "field": "UNIT", "pattern": "^(?:APT|UNIT) (.*)$", "replace": "#$1"},
    "city": {"function": "remove_postfix", "field": "CITY", "field_to_remove": "ZIP"},
    "postcode": "ZIP",
    "region": {"function": "constant", "value": "CA"},
    "id": "OBJECTID",
    "accuracy": 1,
}
TRICKY = ['SAY "HI"', "BACK\\SLASH", "TAB\tAND\x01CTRL", "ÉGLISE ÇA", "東京 🏠", "", "  SPACES  "]


def _rows(count: int, seed: int = 20) -> tuple[dict[str, list[str]], np.ndarray, np.ndarray]:
    """Seeded address attributes (strings) and state-plane x/y; some rows hold the tricky values."""
    rng = np.random.default_rng(seed)
    streets = np.array(["MAIN", "OAK", "PINE", "CEDAR", "ELM", "LAKE", "MILL", "RIVER"])
    street_ids = rng.integers(0, 400, count)
    columns = {
        "OBJECTID": [str(i) for i in range(1, count + 1)],
        "ADDNUM": rng.integers(1, 20000, count).astype(str).tolist(),
        "ADDNUMSUF": np.where(rng.random(count) < 0.05, "A", "").tolist(),
        "PREDIR": np.array(["", "", "N", "S"])[rng.integers(0, 4, count)].tolist(),
        "STNAME": np.char.add(streets[street_ids % 8], (street_ids // 8).astype(str)).tolist(),
        "STTYPE": np.array(["ST", "AVE", "RD", "WAY"])[street_ids % 4].tolist(),
        "UNIT": np.where(rng.random(count) < 0.2, np.char.add("APT ", rng.integers(1, 40, count).astype(str)), "")
        .astype(str)
        .tolist(),
        "CITY": np.array(["OAKLAND 94601", "BERKELEY", "ALAMEDA 94501"])[street_ids % 3].tolist(),
        "ZIP": (94500 + street_ids % 120).astype(str).tolist(),
    }
    for i, value in enumerate(TRICKY):
        for row in range(97 * (i + 1), count, 4001):
            columns["STNAME"][row] = value
            columns["UNIT"][row] = value
    x = 6_050_000 + np.round(rng.random(count) * 120_000, 3)
    y = 2_050_000 + np.round(rng.random(count) * 90_000, 3)
    x[np.arange(13, count, 5003)] = np.nan  # rows without a geometry
    x[np.arange(29, count, 9001)] = np.inf  # rows whose coordinates reproject outside lon/lat range
    return columns, x, y


def _lon_lat(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from pyproj import Transformer

    lon, lat = Transformer.from_crs(STATE_PLANE, "EPSG:4326", always_xy=True).transform(x, y)
    return np.round(lon, 7), np.round(lat, 7)


def _points(x: np.ndarray, y: np.ndarray, finite_only: bool = False) -> np.ndarray:
    """Point geometries, none where x is NaN (and where it is infinite for formats that refuse it)."""
    points = shapely.points(x, y)
    points[np.isnan(x) | (finite_only & np.isinf(x))] = None
    return points


def _write_ogr(path: Path, driver: str, columns: dict[str, list[str]], geometries: np.ndarray, **kwargs: Any) -> None:
    """A layer written by GDAL; GeoPackage's own timestamps fixed, so the same rows give the same bytes."""
    import pyogrio

    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": "2020-01-01T00:00:00Z"})
    table = pa.table({name: pa.array(values, pa.string()) for name, values in columns.items()})
    wkb = [None if g is None else shapely.to_wkb(g) for g in geometries]
    table = table.append_column("geometry", pa.array(wkb, pa.binary()))
    try:
        pyogrio.write_arrow(table, path, driver=driver, geometry_name="geometry", **kwargs)
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": None})


def _zip(folder: Path, archive: Path, prefix: str = "") -> None:
    """`folder` zipped with fixed member times (a zip stores them), then removed."""
    for member in folder.rglob("*"):
        os.utime(member, (1577836800, 1577836800))
    zip_folder(folder, archive, prefix)
    shutil.rmtree(folder)


def _csv(folder: Path) -> tuple[str, dict[str, Any], str | None]:
    import csv

    columns, x, y = _rows(ROWS)
    path = folder / "points.csv"
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow([*columns, "X", "Y"])
        for i in range(ROWS):
            coordinates = ["" if np.isnan(x[i]) else repr(float(x[i])), repr(float(y[i]))]
            row = [values[i] for values in columns.values()] + coordinates
            if i % 7919 == 5:
                row.append("EXTRA")  # a row with too many fields is dropped and counted
            if i % 10007 == 6:
                row = row[:4]  # a short row is kept, its missing fields empty
            writer.writerow(row)
    return path.name, {**ADDRESS_CONFORM, "format": "csv", "lon": "X", "lat": "Y", "srs": STATE_PLANE}, None


def _shapefile_zip(folder: Path) -> tuple[str, dict[str, Any], str | None]:
    columns, x, y = _rows(ROWS)
    shp = folder / "shp" / "address_points.shp"
    shp.parent.mkdir()
    points = _points(x, y, True)
    _write_ogr(shp, "ESRI Shapefile", columns, points, geometry_type="Point", crs=STATE_PLANE, encoding="UTF-8")
    _zip(shp.parent, folder / "points.zip", "AddressPoints/")
    return "points.zip", {**ADDRESS_CONFORM, "format": "shapefile"}, "zip"


def _geojson(folder: Path) -> tuple[str, dict[str, Any], str | None]:
    columns, x, y = _rows(ROWS)
    lon, lat = _lon_lat(x, y)
    lon[np.isinf(x)], lat[np.isinf(x)] = 500.0, 0.0  # outside lon/lat range (JSON has no infinity)
    names = list(columns)
    with (folder / "points.geojson").open("w", encoding="utf-8") as out:
        out.write('{"type":"FeatureCollection","features":[\n')
        for i in range(ROWS):
            props = json.dumps({n: columns[n][i] for n in names}, ensure_ascii=False)
            point = f"[{float(lon[i])!r},{float(lat[i])!r}]"
            geometry = "null" if np.isnan(lon[i]) else f'{{"type":"Point","coordinates":{point}}}'
            out.write(f'{"," if i else ""}{{"type":"Feature","properties":{props},"geometry":{geometry}}}\n')
        out.write("]}\n")
    return "points.geojson", {**ADDRESS_CONFORM, "format": "geojson"}, None


def _geojson_mixed(folder: Path) -> tuple[str, dict[str, Any], str | None]:
    """Newline-delimited, property types that disagree and polygons: the exact Python path of the reader."""
    columns, x, y = _rows(3000, seed=21)
    lon, lat = _lon_lat(x, y)
    lines = []
    for i in range(3000):
        props: dict[str, Any] = {n: v[i] for n, v in columns.items()}
        props["ADDNUM"] = int(props["ADDNUM"]) if i % 3 else props["ADDNUM"]
        props["EXTRA"] = [i, {"nested": True}] if i % 11 == 0 else 1.5 * i
        if np.isnan(lon[i]):
            geometry = None
        elif i % 4 == 0:
            d = 0.0001
            ring = [[lon[i], lat[i]], [lon[i] + d, lat[i]], [lon[i] + d, lat[i] + d], [lon[i], lat[i]]]
            geometry = {"type": "Polygon", "coordinates": [ring]}
        else:
            geometry = {"type": "Point", "coordinates": [lon[i], lat[i]]}
        lines.append(json.dumps({"type": "Feature", "properties": props, "geometry": geometry}, ensure_ascii=False))
    (folder / "mixed.geojsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return "mixed.geojsonl", {**ADDRESS_CONFORM, "format": "geojson"}, None


def _gpkg(folder: Path) -> tuple[str, dict[str, Any], str | None]:
    columns, x, y = _rows(ROWS)
    _write_ogr(folder / "points.gpkg", "GPKG", columns, _points(x, y), geometry_type="Point", crs=STATE_PLANE)
    return "points.gpkg", {**ADDRESS_CONFORM, "format": "gpkg"}, None


def _gdb_zip(folder: Path) -> tuple[str, dict[str, Any], str | None]:
    columns, x, y = _rows(ROWS)
    gdb = folder / "g" / "Addresses.gdb"
    gdb.parent.mkdir()
    columns["ADDRESSID"] = columns.pop("OBJECTID")  # OpenFileGDB takes OBJECTID for its own integer FID
    _write_ogr(gdb, "OpenFileGDB", columns, _points(x, y, True), geometry_type="Point", crs=STATE_PLANE, layer="points")
    _zip(gdb.parent, folder / "points.gdb.zip")
    conform = {**ADDRESS_CONFORM, "format": "gdb", "layer": "points", "id": "ADDRESSID"}
    return "points.gdb.zip", conform, "zip"


def _parcels_gpkg(folder: Path) -> tuple[str, dict[str, Any], str | None]:
    """Polygons in a projected CRS: reprojected shapes written as GeoJSON text (the parcels path)."""
    columns, x, y = _rows(40_000, seed=22)
    shapes = shapely.box(x, y, x + 50, y + 80)
    shapes[np.isnan(x)] = None
    _write_ogr(folder / "parcels.gpkg", "GPKG", columns, shapes, geometry_type="Polygon", crs=STATE_PLANE)
    return "parcels.gpkg", {"format": "gpkg", "pid": "OBJECTID"}, None


CASES: dict[str, tuple[str, Callable[[Path], tuple[str, dict[str, Any], str | None]]]] = {
    "csv": ("addresses", _csv),
    "shapefile-zip": ("addresses", _shapefile_zip),
    "geojson": ("addresses", _geojson),
    "geojsonl-mixed": ("addresses", _geojson_mixed),
    "gpkg": ("addresses", _gpkg),
    "gdb-zip": ("addresses", _gdb_zip),
    "parcels-gpkg": ("parcels", _parcels_gpkg),
}
EXAMPLES = {
    "example-addresses": ("us/ca/berkeley_example.json", "addresses", "city"),
    "example-parcels": ("us/ca/berkeley_example.json", "parcels", "county"),
    "example-buildings": ("us/ca/berkeley_example.json", "buildings", "city"),
    "example-centerlines": ("us/ca/berkeley_example.json", "centerlines", "city"),
    "example-berlin": ("de/berlin_example.json", "addresses", None),
}


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _outputs(folder: Path, fresh_bytes: bool = False) -> dict[str, Any]:
    """What must not change in a run's folder, as comparable text and digests."""
    state = json.loads((folder / "state.json").read_text())
    output = (folder / "out.geojson").read_bytes()
    if fresh_bytes:
        output = HASH.sub(b'"hash":""', output)
        state["fingerprint"] = None
    assert state["source_problem"] is None, state
    log = (folder / "log.txt").read_text(encoding="utf-8").splitlines()
    warnings = [re.sub(r"^\S+ \S+ ", "", line) for line in log if " WARNING " in line or " ERROR " in line]
    return {
        "out.geojson": _digest(output),
        "sample.json": _digest((folder / "sample.json").read_bytes()),
        "state": {k: v for k, v in state.items() if k not in TIMINGS},
        "warnings": warnings,
    }


def _process(source: Path, layer: str, out: Path, name: str | None = None) -> Path:
    extra = ["--name", name] if name else []
    code = main(["process", str(source), "--layer", layer, "--output", str(out), "-q", "--no-preview", *extra])
    states = list(out.glob(f"{layer}/**/state.json"))
    assert code == 0 and len(states) == 1, states and states[0].read_text()
    return states[0].parent


def _golden() -> dict[str, Any]:
    return json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}


def _compare(case: str, found: dict[str, Any]) -> None:
    if os.environ.get("OA_GOLDEN_WRITE"):
        golden = _golden()
        golden[case] = found
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(dict(sorted(golden.items())), indent=1, ensure_ascii=False) + "\n")
        return
    assert found == _golden()[case]


@pytest.mark.parametrize("threads", ["on", "off"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_process_output_bytes_match_the_golden_files(
    case: str, threads: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the same bytes whether the conform's stages run on threads (an idle machine) or inline (a busy one)
    monkeypatch.setenv("OA_CONFORM_THREADS", threads)
    layer, make = CASES[case]
    data = tmp_path / "sources" / "us" / "ca"
    data.mkdir(parents=True)
    name, conform, compression = make(data)
    entry: dict[str, Any] = {"name": "county", "protocol": "http", "data": name, "conform": conform}
    if compression:
        entry["compression"] = compression
    source = write_source(data / "golden.json", {layer: [entry]})
    _compare(case, _outputs(_process(source, layer, tmp_path / "out"), case in FRESH_BYTES))


@pytest.mark.parametrize("case", sorted(EXAMPLES))
def test_process_of_the_shipped_examples_matches_the_golden_files(case: str, tmp_path: Path) -> None:
    source, layer, name = EXAMPLES[case]
    _compare(case, _outputs(_process(EXAMPLE / source, layer, tmp_path, name)))


def test_a_changed_output_byte_fails_the_comparison(tmp_path: Path) -> None:
    folder = _process(EXAMPLE / "us/ca/berkeley_example.json", "parcels", tmp_path)
    output = folder / "out.geojson"
    output.write_bytes(output.read_bytes().replace(b'"pid":"', b'"pid": "', 1))
    assert _outputs(folder) != _golden()["example-parcels"]


def test_the_golden_inputs_cover_the_values_that_need_care(tmp_path: Path) -> None:
    data = tmp_path / "d"
    data.mkdir()
    _csv(data)
    lines = (data / "points.csv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == ROWS + 1 > 2 * 32_768
    assert any(line.endswith(",EXTRA") for line in lines) and any(line.count(",") < 5 for line in lines)
