"""Write the bundled example sources' data (run once; the outputs are committed).

A small synthetic town laid out on a street grid in California state-plane feet (EPSG:2227): address
points as CSV, parcels as a zipped shapefile, buildings as gzipped GeoJSON and street centerlines as
GeoJSON, so the quickstart exercises every layer and the common formats without any download. A second,
smaller example in Berlin (address points in lon/lat, share-alike licence) gives the collections a second area
(europe) and the share-alike class.
"""

from __future__ import annotations

import csv
import gzip
import json
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyogrio
import shapely
from pyproj import Transformer

DATA = Path(__file__).resolve().parents[1] / "oa_dagster" / "examples" / "data"
CRS = "EPSG:2227"
ORIGIN = (6_052_000.0, 2_118_000.0)  # near Berkeley, CA
BLOCK = 400.0  # feet between streets
STREETS_EW = ["CEDAR ST", "VIRGINIA ST", "BERRYMAN ST", "ROSE ST"]
STREETS_NS = ["OXFORD ST", "WALNUT ST", "SHATTUCK AVE", "HENRY ST", "MILVIA ST"]
to_wgs84 = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)


def parcels() -> list[dict]:
    """Lots along each east-west street: 8 per block side, numbered like US addresses."""
    lots = []
    for row, street in enumerate(STREETS_EW):
        y_street = ORIGIN[1] + row * BLOCK
        for block in range(len(STREETS_NS) - 1):
            for i in range(8):
                for side, dy in ((0, 20.0), (1, -120.0)):
                    x0 = ORIGIN[0] + block * BLOCK + 20 + i * 45
                    y0 = y_street + dy
                    number = 1000 + block * 100 + i * 4 + side * 2 + (1 if side else 0)
                    lots.append(
                        {
                            "street": street,
                            "number": number,
                            "x0": x0,
                            "y0": y0,
                            "apn": f"058-{2100 + row * 40 + block * 8 + i:04d}-{side + 1:03d}",
                        }
                    )
    return lots


def write_addresses(lots: list[dict]) -> None:
    rng = np.random.default_rng(3)
    rows = {"ADDRESS": [], "UNIT": [], "CITY": [], "ZIP": [], "X": [], "Y": [], "SOURCE": []}
    for lot in lots:
        units = [""] if rng.random() > 0.1 else ["A", "B"]
        for unit in units:
            rows["ADDRESS"].append(f"{lot['number']} {lot['street']}")
            rows["UNIT"].append(f"APT {unit}" if unit else "")
            rows["CITY"].append("Berkeley")
            rows["ZIP"].append("94709")
            rows["X"].append(f"{lot['x0'] + 20:.2f}")
            rows["Y"].append(f"{lot['y0'] + 50:.2f}")
            rows["SOURCE"].append("ASSESSOR")
    pcsv.write_csv(pa.table(rows), DATA / "example_addresses.csv")


def write_parcels(lots: list[dict]) -> None:
    boxes = [shapely.box(lot["x0"], lot["y0"], lot["x0"] + 40, lot["y0"] + 100) for lot in lots]
    table = pa.table(
        {
            "APN": [lot["apn"] for lot in lots],
            "SITUS": [f"{lot['number']} {lot['street']}" for lot in lots],
            "geometry": pa.array(shapely.to_wkb(np.array(boxes)), pa.binary()),
        }
    )
    folder = DATA / "parcels"
    folder.mkdir(exist_ok=True)
    pyogrio.write_arrow(
        table,
        folder / "Parcels.shp",
        driver="ESRI Shapefile",
        geometry_name="geometry",
        geometry_type="Polygon",
        crs=CRS,
        encoding="UTF-8",
    )
    with zipfile.ZipFile(DATA / "example_parcels.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for member in sorted(folder.iterdir()):
            archive.write(member, f"Parcels_2026/{member.name}")
            member.unlink()
    folder.rmdir()


def write_buildings(lots: list[dict]) -> None:
    features = []
    for i, lot in enumerate(lots):
        ring = [
            (lot["x0"] + 5, lot["y0"] + 30),
            (lot["x0"] + 35, lot["y0"] + 30),
            (lot["x0"] + 35, lot["y0"] + 80),
            (lot["x0"] + 5, lot["y0"] + 80),
            (lot["x0"] + 5, lot["y0"] + 30),
        ]
        lon, lat = to_wgs84.transform([p[0] for p in ring], [p[1] for p in ring])
        coords = [[round(x, 7), round(y, 7)] for x, y in zip(lon, lat, strict=True)]
        features.append(
            {
                "type": "Feature",
                "properties": {"BLDG_ID": f"B{i + 1:05d}", "HEIGHT_M": 6 + i % 9, "STORIES": 1 + i % 3},
                "geometry": {"type": "Polygon", "coordinates": [coords]},
            }
        )
    with gzip.open(DATA / "example_buildings.geojson.gz", "wt", encoding="utf-8") as out:
        json.dump({"type": "FeatureCollection", "features": features}, out)


def write_centerlines() -> None:
    features = []
    width = (len(STREETS_NS) - 1) * BLOCK
    height = (len(STREETS_EW) - 1) * BLOCK
    segments = [
        (name, (ORIGIN[0], ORIGIN[1] + r * BLOCK), (ORIGIN[0] + width, ORIGIN[1] + r * BLOCK))
        for r, name in enumerate(STREETS_EW)
    ]
    segments += [
        (name, (ORIGIN[0] + c * BLOCK, ORIGIN[1]), (ORIGIN[0] + c * BLOCK, ORIGIN[1] + height))
        for c, name in enumerate(STREETS_NS)
    ]
    for i, (name, start, end) in enumerate(segments):
        lon, lat = to_wgs84.transform([start[0], end[0]], [start[1], end[1]])
        features.append(
            {
                "type": "Feature",
                "properties": {
                    "SEGMENT_ID": 5000 + i,
                    "FULLNAME": name,
                    "ONEWAY": "FT" if name == "SHATTUCK AVE" else "B",
                    "SPEED_MPH": 35 if name == "SHATTUCK AVE" else 25,
                    "FCLASS": "ARTERIAL" if "AVE" in name else "LOCAL",
                    "L_F_ADD": 1000,
                    "L_T_ADD": 1398,
                    "R_F_ADD": 1001,
                    "R_T_ADD": 1399,
                    "ZIP_L": "94709",
                    "ZIP_R": "94709",
                },
                "geometry": {
                    "type": "LineString",
                    "coordinates": [[round(x, 7), round(y, 7)] for x, y in zip(lon, lat, strict=True)],
                },
            }
        )
    (DATA / "example_centerlines.geojson").write_text(
        json.dumps({"type": "FeatureCollection", "features": features}, indent=1)
    )


BERLIN_STREETS = ("Beispielstraße", "Musterweg", "Probeallee", "Testufer", "Übungsplatz", "Datenring")
BERLIN_POSTCODES = ("10115", "10117", "10119", "10178", "10179", "10435")


def write_berlin_addresses() -> None:
    """Made-up house numbers along a few made-up streets around Berlin-Mitte, in lon/lat."""
    rows = []
    for s, street in enumerate(BERLIN_STREETS):
        for n in range(1, 21):
            lon = 13.3800 + s * 0.0090 + n * 0.00035
            lat = 52.5150 + s * 0.0040 - n * 0.00012
            number = f"{n}{'a' if n % 7 == 0 else ''}"
            rows.append(
                {
                    "LON": f"{lon:.6f}",
                    "LAT": f"{lat:.6f}",
                    "HAUSNR": number,
                    "STRASSE": street,
                    "PLZ": BERLIN_POSTCODES[s],
                }
            )
    with (DATA / "example_berlin_addresses.csv").open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=["LON", "LAT", "HAUSNR", "STRASSE", "PLZ"])
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    DATA.mkdir(parents=True, exist_ok=True)
    lots = parcels()
    write_addresses(lots)
    write_parcels(lots)
    write_buildings(lots)
    write_centerlines()
    write_berlin_addresses()
    for path in sorted(DATA.iterdir()):
        print(path.name, path.stat().st_size)
