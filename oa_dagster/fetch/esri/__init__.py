"""ArcGIS REST (FeatureServer/MapServer layer) dumper."""

from oa_dagster.fetch.esri.dumper import dump_layer
from oa_dagster.fetch.esri.geometry import esri_to_geojson
from oa_dagster.fetch.esri.pages import LonLat

__all__ = ["LonLat", "dump_layer", "esri_to_geojson"]
