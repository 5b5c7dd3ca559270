"""The kinds of entry the production end-to-end set is made of, served from local fake upstreams.

`tests/test_production_e2e.py` builds its dozen entries from these, `bench/bench_ecs.py` its N: addresses as a CSV
over HTTP (free or share-alike), an ArcGIS layer, a shapefile zip written here with GDAL, and one whose server
answers 404; parcels as the bundled shapefile zip, buildings as the bundled gzipped GeoJSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.geofiles import write_layer, zip_folder
from tests.platform_helpers import EXAMPLE_DATA, csv_entry
from tests.servers.arcgis import FakeArcGISServer, FakeLayer, point_features
from tests.servers.downloads import DownloadServer

FREE = {"text": "Public domain"}
SHARE_ALIKE = {"text": "ODbL", "share-alike": True}


def address_csv(rows: int) -> str:
    return "lon,lat,num,street\n" + "".join(f"-122.{i:04d},37.{i:04d},{i + 1},MAIN ST\n" for i in range(rows))


@dataclass
class SetEntries:
    """Entry factories whose data the servers serve (`serve_set_data` registers it)."""

    data: DownloadServer
    esri_url: str

    def csv(self, name: str, license: dict[str, Any] = FREE) -> dict[str, Any]:
        return csv_entry(name, self.data.url("/addresses.csv"), license=license)

    def missing(self, name: str) -> dict[str, Any]:
        """A CSV whose server answers 404: the entry fails, the others go on."""
        return csv_entry(name, self.data.url("/missing.csv"), license=FREE)

    def esri(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "protocol": "ESRI",
            "data": self.esri_url,
            "license": FREE,
            "conform": {"format": "geojson", "number": "NUMBER", "street": "STREET"},
        }

    def shapefile(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "protocol": "http",
            "data": self.data.url("/points.zip"),
            "compression": "zip",
            "license": FREE,
            "conform": {"format": "shapefile", "number": "NUM", "street": "STREET"},
        }

    def parcels(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "protocol": "http",
            "data": self.data.url("/parcels.zip"),
            "compression": "zip",
            "license": FREE,
            "conform": {"format": "shapefile", "file": "Parcels.shp", "pid": "APN"},
        }

    def buildings(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "protocol": "http",
            "data": self.data.url("/buildings.geojson.gz"),
            "compression": "gzip",
            "license": FREE,
            "conform": {"format": "geojson", "id": "BLDG_ID", "height": "HEIGHT_M", "levels": "STORIES"},
        }


def serve_set_data(data: DownloadServer, arcgis: FakeArcGISServer, tmp: Path, rows: int) -> SetEntries:
    """The upstreams: `rows` address rows as CSV, as a shapefile zip and as an ArcGIS layer (paged by 8), and the
    bundled parcels and buildings; `/missing.csv` has no route, so it answers 404."""
    data.route("/addresses.csv", body=address_csv(rows).encode(), content_type="text/csv")
    folder = tmp / "shapefile"
    folder.mkdir()
    points = [f"POINT (-121.{i:04d} 38.{i:04d})" for i in range(rows)]
    attributes = [{"NUM": str(i + 1), "STREET": "OAK AVE"} for i in range(rows)]
    write_layer(folder / "points.shp", attributes, points, driver="ESRI Shapefile")
    data.route("/points.zip", body=zip_folder(folder, tmp / "points.zip").read_bytes(), content_type="application/zip")
    parcels = (EXAMPLE_DATA / "example_parcels.zip").read_bytes()
    data.route("/parcels.zip", body=parcels, content_type="application/zip")
    buildings = (EXAMPLE_DATA / "example_buildings.geojson.gz").read_bytes()
    data.route("/buildings.geojson.gz", body=buildings, content_type="application/gzip")
    esri = arcgis.add_layer("addresses", FakeLayer(point_features(rows), max_record_count=8, cache_responses=True))
    return SetEntries(data, esri)
