"""Synthetic county address-point layers for benchmarks: CSV, zipped shapefile, GeoJSON, GeoPackage, zipped gdb.

Fields look like a US county address-point layer (house number, pre/suffix directions, street name and
type, unit, city, ZIP, full address, state-plane coordinates), with repeated street names as in real data.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa

STATE_PLANE = "EPSG:2227"  # California zone 3, US feet: what a Bay Area county publishes
STREETS = np.array(
    [
        "MAIN",
        "OAK",
        "PINE",
        "MAPLE",
        "CEDAR",
        "ELM",
        "WASHINGTON",
        "LAKE",
        "HILL",
        "SUNSET",
        "PARK",
        "RIDGE",
        "CHURCH",
        "MILL",
        "SPRING",
        "VALLEY",
        "FOREST",
        "MEADOW",
        "RIVER",
        "LINCOLN",
        "JACKSON",
        "FRANKLIN",
        "MADISON",
        "ADAMS",
        "JEFFERSON",
        "HIGHLAND",
    ]
)
TYPES = np.array(["ST", "AVE", "RD", "DR", "LN", "CT", "WAY", "BLVD", "PL", "CIR"])
DIRS = np.array(["", "", "", "", "N", "S", "E", "W"])
CITIES = np.array(["OAKLAND", "BERKELEY", "ALAMEDA", "FREMONT", "HAYWARD", "PLEASANTON", "LIVERMORE"])

CONFORM = {
    "number": {"function": "join", "fields": ["ADDNUM", "ADDNUMSUF"], "separator": ""},
    "street": ["PREDIR", "STNAME", "STTYPE", "SUFDIR"],
    "unit": "UNIT",
    "city": "CITY",
    "postcode": "ZIP",
    "region": {"function": "constant", "value": "CA"},
    "id": "OBJECTID",
    "accuracy": 1,
}


def address_table(rows: int, seed: int = 7) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """Attribute table and state-plane x/y arrays of `rows` synthetic address points."""
    rng = np.random.default_rng(seed)
    street_ids = rng.integers(0, len(STREETS) * 40, rows)
    names = np.char.add(STREETS[street_ids % len(STREETS)], np.char.add(" ", (street_ids // len(STREETS)).astype(str)))
    number = rng.integers(1, 20000, rows).astype(str)
    suffix = np.where(rng.random(rows) < 0.03, "A", "")
    unit = np.where(rng.random(rows) < 0.15, np.char.add("APT ", rng.integers(1, 40, rows).astype(str)), "")
    predir, sufdir = DIRS[rng.integers(0, len(DIRS), rows)], DIRS[rng.integers(0, len(DIRS), rows)]
    types = TYPES[street_ids % len(TYPES)]
    city = CITIES[street_ids % len(CITIES)]
    zips = (94500 + street_ids % 120).astype(str)
    full = np.char.add(np.char.add(number, " "), np.char.add(names, np.char.add(" ", types)))
    x = 6_050_000 + rng.random(rows) * 120_000
    y = 2_050_000 + rng.random(rows) * 90_000
    table = pa.table(
        {
            "OBJECTID": pa.array(np.arange(1, rows + 1).astype(str)),
            "ADDNUM": number,
            "ADDNUMSUF": suffix,
            "PREDIR": predir,
            "STNAME": names,
            "STTYPE": types,
            "SUFDIR": sufdir,
            "UNIT": unit,
            "CITY": city,
            "ZIP": zips,
            "STATE": np.full(rows, "CA"),
            "FULLADDR": full,
            "STATUS": np.full(rows, "ACTIVE"),
        }
    )
    return table, x, y


def write_csv(path: Path, rows: int) -> None:
    import pyarrow.csv as pcsv

    table, x, y = address_table(rows)
    table = table.append_column("X", pa.array(np.round(x, 3))).append_column("Y", pa.array(np.round(y, 3)))
    pcsv.write_csv(table, path)


def _points_wkb(x: np.ndarray, y: np.ndarray) -> pa.Array:
    import shapely

    return pa.array(shapely.to_wkb(shapely.points(x, y)), pa.binary())


def write_shapefile_zip(path: Path, rows: int) -> None:
    import pyogrio

    table, x, y = address_table(rows)
    table = table.append_column("geometry", _points_wkb(x, y))
    folder = path.with_suffix("")
    folder.mkdir(parents=True, exist_ok=True)
    shp = folder / "address_points.shp"
    # RESIZE shrinks the 254-character default string fields to their longest value, as a county export has
    pyogrio.write_arrow(
        table,
        shp,
        driver="ESRI Shapefile",
        geometry_name="geometry",
        geometry_type="Point",
        crs=STATE_PLANE,
        encoding="UTF-8",
        layer_options={"RESIZE": "YES"},
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for member in sorted(folder.iterdir()):
            archive.write(member, f"AddressPoints/{member.name}")
            member.unlink()
    folder.rmdir()


def _write_ogr(path: Path, rows: int, driver: str, rename: dict[str, str] | None = None, **kwargs: object) -> None:
    import pyogrio

    table, x, y = address_table(rows)
    table = table.rename_columns([(rename or {}).get(n, n) for n in table.column_names])
    table = table.append_column("geometry", _points_wkb(x, y))
    pyogrio.write_arrow(
        table, path, driver=driver, geometry_name="geometry", geometry_type="Point", crs=STATE_PLANE, **kwargs
    )


def write_gpkg(path: Path, rows: int) -> None:
    _write_ogr(path, rows, "GPKG", layer="address_points")


def write_gdb_zip(path: Path, rows: int) -> None:
    """A zipped File Geodatabase; OBJECTID is renamed ADDRESSID (the driver keeps OBJECTID for its own FID)."""
    import shutil

    folder = path.with_suffix("")
    gdb = folder / "AddressPoints.gdb"
    folder.mkdir(parents=True, exist_ok=True)
    _write_ogr(gdb, rows, "OpenFileGDB", layer="address_points", rename={"OBJECTID": "ADDRESSID"})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for member in sorted(gdb.iterdir()):
            archive.write(member, f"AddressPoints.gdb/{member.name}")
    shutil.rmtree(folder)


def write_geojson(path: Path, rows: int) -> None:
    from pyproj import Transformer

    table, x, y = address_table(rows)
    lon, lat = Transformer.from_crs(STATE_PLANE, "EPSG:4326", always_xy=True).transform(x, y)
    columns = table.column_names
    values = [table.column(c).to_pylist() for c in columns]
    with path.open("w", encoding="utf-8") as out:
        out.write('{"type":"FeatureCollection","features":[\n')
        for i in range(rows):
            props = json.dumps({c: values[k][i] for k, c in enumerate(columns)}, ensure_ascii=False)
            sep = "," if i else ""
            out.write(
                f'{sep}{{"type":"Feature","properties":{props},"geometry":{{"type":"Point",'
                f'"coordinates":[{lon[i]:.7f},{lat[i]:.7f}]}}}}\n'
            )
        out.write("]}\n")


def write_source(path: Path, data: str, conform: dict, compression: str | None = None) -> None:
    """A schema-v2 source file whose single address entry reads `data` (relative to the source)."""
    entry = {"name": "county", "protocol": "http", "data": data, "conform": conform}
    if compression:
        entry["compression"] = compression
    source = {
        "schema": 2,
        "coverage": {
            "country": "us",
            "state": "ca",
            "county": "Synthetic",
            "US Census": {"geoid": "06001", "name": "Synthetic County", "state": "CA"},
        },
        "layers": {"addresses": [entry]},
    }
    path.write_text(json.dumps(source, indent=2))
