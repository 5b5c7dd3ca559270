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


def _normalise(name: str) -> str:
    return name.replace("\\", "/").strip("/").lower()


def _files_named(files: list[Path], wanted: str) -> list[Path]:
    """Files that `file` names: by path tail first (`2020/addr.shp`), else by bare name, leniently.

    Sources often omit the in-archive folder; a bare-name match is taken only when no path matches,
    so a `file` with a directory never reads a same-named file from another folder.
    """
    wanted_norm = _normalise(wanted)
    by_path = [
        f for f in files if f.as_posix().lower().endswith("/" + wanted_norm) or f.as_posix().lower() == wanted_norm
    ]
    if by_path:
        return by_path
    bare = Path(wanted_norm).name
    return [f for f in files if f.name.lower() == bare]


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
        named = _files_named(files, wanted_file)
        if fmt == "gdb":
            named = [f for f in named if f.suffix.lower() == ".gdb"] or named
        if len(named) == 1:
            return named[0]
        if len(named) > 1:
            raise ConformError(
                f"conform.file {wanted_file!r} matches several files, name one with its folder: "
                f"{', '.join(sorted(f.as_posix() for f in named)[:10])}"
            )
        if fmt != "csv":
            raise ConformError(
                f"conform.file {wanted_file!r} not found among {', '.join(sorted(f.name for f in files)[:20])}"
            )
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
    raise ConformError(
        f"several {fmt} files found, set conform.file to one of: {', '.join(sorted(c.name for c in candidates))}"
    )
