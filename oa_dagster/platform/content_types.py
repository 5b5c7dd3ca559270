"""What each stored object is served as: its `Content-Type`, from its key's suffix.

S3 serves an object with the type it was stored with (`binary/octet-stream` when none was given), so a public
bucket would offer `index.html` and the maps as downloads instead of showing them. Every write and copy of the
store sets the type from this table unless the caller names one (`coverage/render-world.geojson` is one GeoJSON
document, not lines).

GeoJSON lines: a run's `out.geojson` holds one Feature per line, newline-separated. `application/geo+json-seq`
(RFC 8142) would require an RS byte before each one, which these files do not have, so they are
`application/x-ndjson` (newline-delimited JSON, what tools reading them line by line expect).
"""

from __future__ import annotations

GEOJSON = "application/geo+json"  # one GeoJSON document (a FeatureCollection)
GEOJSON_LINES = "application/x-ndjson"  # one Feature per line
PARQUET = "application/vnd.apache.parquet"
DEFAULT = "application/octet-stream"

BY_SUFFIX = {
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".geojson": GEOJSON_LINES,
    ".geojsonl": GEOJSON_LINES,
    ".png": "image/png",
    ".zip": "application/zip",
    ".parquet": PARQUET,
    ".txt": "text/plain; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
}


def content_type(key: str) -> str:
    """The type an object stored under `key` is served as (by its suffix; unknown: octet-stream)."""
    name = key.rpartition("/")[2]
    dot = name.rfind(".")
    return BY_SUFFIX.get(name[dot:].lower(), DEFAULT) if dot > 0 else DEFAULT
