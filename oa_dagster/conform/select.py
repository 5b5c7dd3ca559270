"""Choose the file to read among a download's (unpacked) files, by the conform's `format` and `file`.

Follows the original machine's rules (conform-spec §3.4) with its known gaps closed: `file` is honoured
for GeoJSON too, `shapefile-polygon` is a shapefile, and a `file` naming a member without its in-archive
directory still finds it.
"""

from __future__ import annotations

from pathlib import Path

from oa_dagster.errors import ConformError, UnknownFormat

FORMATS = ("csv", "geojson", "shapefile", "shapefile-polygon", "gdb", "gpkg", "xml")

_SUFFIXES: dict[str, tuple[str, ...]] = {
    "shapefile": (".shp",),
    "shapefile-polygon": (".shp",),
    "geojson": (".geojson", ".json", ".geojsonl", ".geojsons", ".ndjson"),
    "gdb": (".gdb",),
    "gpkg": (".gpkg",),
    "xml": (".gml", ".xml"),
    "csv": (".csv", ".txt", ".tsv"),
}


def _matches_file(path: Path, wanted: str) -> bool:
    """`file` matches the path's tail (with directories) or, leniently, the bare file name."""
    wanted_norm = wanted.replace("\\", "/").strip("/").lower()
    path_norm = path.as_posix().lower()
    return path_norm.endswith("/" + wanted_norm) or path_norm == wanted_norm or \
        path.name.lower() == Path(wanted_norm).name


def check_format(fmt: str | None) -> str:
    """The conform's format, refused before any download when missing or unknown."""
    if not fmt:
        raise UnknownFormat("conform.format is missing")
    if fmt not in FORMATS:
        raise UnknownFormat(f"conform.format {fmt!r} is not one of {', '.join(FORMATS)}")
    return fmt


def select_input(files: list[Path], fmt: str | None, wanted_file: str | None) -> Path:
    """The one input file for `fmt`; errors list what was found when the choice is empty or ambiguous."""
    fmt = check_format(fmt)
    if not files:
        raise ConformError("the download produced no files")
    if wanted_file:
        named = [f for f in files if _matches_file(f, wanted_file)]
        if fmt == "gdb":
            named = [f for f in named if f.suffix.lower() == ".gdb"] or named
        if named:
            return sorted(named, key=lambda p: len(p.parts))[0]
        if fmt != "csv":
            raise ConformError(f"conform.file {wanted_file!r} not found among "
                               f"{', '.join(sorted(f.name for f in files)[:20])}")
    candidates = [f for f in files if f.suffix.lower() in _SUFFIXES[fmt]]
    if fmt == "csv":
        return candidates[0] if candidates else sorted(files)[0]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates and len(files) == 1 and fmt in ("geojson", "xml"):
        return files[0]  # e.g. a GeoJSON served from a URL without an extension
    found = ", ".join(sorted(f.name for f in files)[:20])
    if not candidates:
        raise ConformError(f"no {fmt} file found among: {found}")
    raise ConformError(f"several {fmt} files found, set conform.file to one of: "
                       f"{', '.join(sorted(c.name for c in candidates))}")
