"""Small real files in every supported format, written by the tests themselves with GDAL (pyogrio).

Each helper writes one layer from plain Python rows so a test reads like the data it is about.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import shapely


def write_layer(
    path: Path,
    rows: list[dict[str, Any]],
    geometries: list[Any],
    *,
    driver: str,
    crs: str | None = "EPSG:4326",
    layer: str | None = None,
    geometry_type: str | None = None,
    encoding: str | None = None,
    append: bool = False,
) -> Path:
    """Write rows (string attributes) and shapely geometries (or WKT) as one layer of `path`."""
    import pyogrio

    geoms = [shapely.from_wkt(g) if isinstance(g, str) else g for g in geometries]
    names = list(dict.fromkeys(k for row in rows for k in row))
    columns = {
        name: pa.array([None if row.get(name) is None else str(row[name]) for row in rows], pa.string())
        for name in names
    }
    columns["geometry"] = pa.array([None if g is None else shapely.to_wkb(g) for g in geoms], pa.binary())
    kinds = {g.geom_type for g in geoms if g is not None}
    kwargs: dict[str, Any] = {}
    if encoding:
        kwargs["encoding"] = encoding
    pyogrio.write_arrow(
        pa.table(columns),
        path,
        driver=driver,
        layer=layer,
        geometry_name="geometry",
        geometry_type=geometry_type or (kinds.pop() if len(kinds) == 1 else "Unknown"),
        crs=crs,
        append=append,
        **kwargs,
    )
    return path


def zip_folder(folder: Path, archive: Path, prefix: str = "") -> Path:
    """Zip every file under `folder` (directories kept, e.g. a .gdb) with an optional in-zip prefix."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for member in sorted(folder.rglob("*")):
            if member.is_file():
                zf.write(member, prefix + member.relative_to(folder).as_posix())
    return archive


def feature_collection(features: list[tuple[dict[str, Any], dict[str, Any] | None]]) -> str:
    return json.dumps(
        {
            "type": "FeatureCollection",
            "features": [{"type": "Feature", "properties": props, "geometry": geom} for props, geom in features],
        }
    )


def write_source(path: Path, layers: dict[str, list[dict[str, Any]]], coverage: dict[str, Any] | None = None) -> Path:
    """A schema-v2 source file with the given layer entries."""
    path.parent.mkdir(parents=True, exist_ok=True)
    source = {
        "schema": 2,
        "coverage": coverage
        or {"country": "us", "state": "or", "US Census": {"geoid": "41", "name": "Oregon", "state": "Oregon"}},
        "layers": layers,
    }
    path.write_text(json.dumps(source, indent=2))
    return path


def read_features(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
