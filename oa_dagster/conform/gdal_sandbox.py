"""GDAL reads the run's own files and nothing else: the drivers, network and schema settings for the process.

A download is untrusted. GDAL, left to its defaults, opens a file with whichever driver claims it, and several
drivers follow what the file names: an OGR VRT reads `CSV:/etc/passwd` or `/vsicurl/http://10.0.0.1/...`, a
GML file's `xsi:schemaLocation` makes GDAL download a WFS schema, an `.xsd` next to it may include a URL. Those
requests never meet the fetch layer's public-hosts guard. So, once per process and before any GDAL open:

- every vector driver but the ones the formats name (and KML, see `KML_DRIVER`) is skipped (`GDAL_SKIP`, then
  drivers registered again so the skip applies although pyogrio registered them on import): VRT, WFS, WMS,
  OAPIF, CSV, SQLite, LIBKML, ... cannot open anything, whatever a file contains;
- GDAL's network is cut: `/vsicurl/` and the handlers built on it (`/vsis3/`, `/vsigs/`, ...) accept one file
  name that no path can equal, and GDAL's own HTTP client (schemas, WFS) goes through a proxy address that
  cannot be reached;
- the GML driver downloads no schema and resolves no `xlink:href`; GeoPackage/SQLite never opens other files
  through virtual tables.

`check_content` then refuses a file whose bytes are another format than the conform's, naming what was found.
CSV (pyarrow) and GeoJSON (`geojson_reader`) never reach GDAL. See docs/security.md for the limits.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from oa_dagster.errors import ConformError

DRIVERS: dict[str, str] = {
    "xml": "GML",
    "gpkg": "GPKG",
    "gdb": "OpenFileGDB",
    "shapefile": "ESRI Shapefile",
    "shapefile-polygon": "ESRI Shapefile",
}
"""The one GDAL driver each GDAL-read `conform.format` is opened with; every other driver is skipped."""

KML_DRIVER = "KML"
"""`xml` sources also name `.kml` files (real ones do): OGR's own KML reader reads the one file and follows no
`NetworkLink` (LIBKML, which would, stays skipped). A `<kml>` root is opened with it, any other XML with GML."""

_NO_ADDRESS = "oa-dagster-refuses-network-access"
CONFIG: dict[str, str] = {
    # /vsicurl/, /vsis3/, /vsiaz/, /vsigs/, ... open only this exact name, which no real path is
    "CPL_VSIL_CURL_ALLOWED_FILENAME": _NO_ADDRESS,
    # GDAL's HTTP client (CPLHTTPFetch: GML schemas, WFS, OAPIF) through a proxy with a scheme curl refuses
    # before any connection is made
    "GDAL_HTTP_PROXY": f"{_NO_ADDRESS}://0.0.0.0:0",
    "GDAL_HTTPS_PROXY": f"{_NO_ADDRESS}://0.0.0.0:0",
    "GDAL_HTTP_MAX_RETRY": "0",
    "GDAL_HTTP_NETRC": "NO",
    # GML: no schema download (a WFS DescribeFeatureType URL in xsi:schemaLocation), no schema imports
    # followed, no xlink:href resolved
    "GML_DOWNLOAD_SCHEMA": "NO",
    "GML_USE_SCHEMA_IMPORT": "NO",
    "GML_SKIP_RESOLVE_ELEMS": "ALL",
    # GeoPackage: a view over a VirtualOGR table would open any dataset it names
    "OGR_SQLITE_ALLOW_EXTERNAL_ACCESS": "NO",
}

_lock = threading.Lock()
_applied = False


def apply() -> None:
    """Set the process's GDAL configuration (idempotent; cheap after the first call).

    Fails closed: when the drivers left afterwards are not exactly the allowed ones (pyogrio changed how it
    registers drivers), nothing is opened.
    """
    global _applied
    if _applied:
        return
    with _lock:
        if _applied:
            return
        import pyogrio
        from pyogrio._ogr import _register_drivers  # registers again, so GDAL_SKIP applies (GDALAllRegister)

        allowed = {*DRIVERS.values(), KML_DRIVER}
        skip = sorted(name for name in pyogrio.list_drivers() if name not in allowed)
        pyogrio.set_gdal_config_options({**CONFIG, "GDAL_SKIP": ",".join(skip)})
        _register_drivers()
        left = set(pyogrio.list_drivers())
        if left != allowed:
            raise RuntimeError(f"GDAL sandbox not in force: drivers {sorted(left)} left, wanted {sorted(allowed)}")
        _applied = True


# ------------------------------------------------------------------------------------ what a file holds

_XML_PROLOGUE = re.compile(rb"\s*(?:<\?.*?\?>|<!--.*?-->|<!DOCTYPE(?:[^\[>]|\[.*?\])*>)", re.S)
_XML_ROOT = re.compile(rb"\s*<([A-Za-z_][\w.:-]*)")
_GDAL_XML = {
    "OGRVRTDataSource": "an OGR VRT (a GDAL file that reads other datasets)",
    "VRTDataset": "a GDAL raster VRT (a file that reads other datasets)",
    "OGRWFSDataSource": "a GDAL WFS service description",
    "GDAL_WMS": "a GDAL WMS service description",
    "WFS_Capabilities": "a WFS capabilities document",
    "html": "an HTML page",
}
_SHP_MAGIC = b"\x00\x00\x27\x0a"
_HEAD_BYTES = 65536


def xml_root(head: bytes) -> str | None:
    """The root element's local name of an XML document's first bytes (None when it is not XML)."""
    text = head.removeprefix(b"\xef\xbb\xbf")
    position = 0
    while match := _XML_PROLOGUE.match(text, position):
        position = match.end()
    root = _XML_ROOT.match(text, position)
    return root.group(1).decode("ascii", "replace").rpartition(":")[2] if root else None


def describe(path: Path) -> str:
    """What a file or folder holds, in words, judged from its first bytes."""
    from oa_dagster.fetch.filetype import suffix_from_magic

    if path.is_dir():
        return "a folder" + (" (a file geodatabase)" if any(path.glob("*.gdbtable")) else "")
    with path.open("rb") as stream:
        head = stream.read(_HEAD_BYTES)
    if not head:
        return "an empty file"
    if head.startswith(_SHP_MAGIC):
        return "a shapefile (.shp)"
    kind = suffix_from_magic(head)
    if kind == ".xml":
        root = xml_root(head)
        if root is None:
            return "text starting with '<' that is not XML"
        return _GDAL_XML.get(root, f"XML with root element <{root}>")
    return {
        ".zip": "a ZIP archive",
        ".gz": "a gzip file",
        ".gpkg": "an SQLite database (GeoPackage)",
        ".json": "JSON (GeoJSON?)",
        ".bin": "binary data",
        ".csv": "text (CSV?)",
    }[kind]


def check_content(path: Path, fmt: str) -> str:
    """The GDAL driver to open `path` with for `fmt`; a ConformError naming what the file holds when its bytes
    are not that format (e.g. an OGR VRT served as `xml`)."""
    driver = DRIVERS.get(fmt)
    if driver is None:
        raise ConformError(f"conform.format {fmt!r} is not read with GDAL")
    found = describe(path)
    if driver == "GML" and found == "XML with root element <kml>":
        return KML_DRIVER
    expected = {
        "GML": lambda: found.startswith("XML with root element"),
        "GPKG": lambda: found.startswith("an SQLite database"),
        "OpenFileGDB": lambda: found == "a folder (a file geodatabase)",
        "ESRI Shapefile": lambda: found == "a shapefile (.shp)",
    }[driver]
    if not expected():
        raise ConformError(f"{path.name} is {found}, not the {driver} data conform.format {fmt!r} names")
    return driver


def gdal_path(path: Path) -> str:
    """`path` as the string GDAL opens, refused when pyogrio would read it as something else: a name with `!`
    becomes an archive path (`a!b.gpkg` opens `b.gpkg` in the working directory), `.zip` a `/vsizip/` path."""
    from pyogrio.util import vsi_path

    text = str(path.resolve())
    if text.startswith("/vsi") or vsi_path(text) != text:
        raise ConformError(f"{path.name}: GDAL would read this file name as an archive or URL path; rename it")
    return text


_EXTERNAL_CRS = re.compile(r"(?:\+|\b)(?:nadgrids|geoidgrids|grids|file|init)\s*=|\bPARAMETERFILE\s*\[", re.I)


def refuse_external_crs(crs: str, origin: str) -> None:
    """A projection that names grid or init files (`+nadgrids=/etc/...`, `@http://...`, WKT `PARAMETERFILE`)
    makes PROJ open that path or URL: refused, whether it comes from a `.prj` or from `conform.srs`."""
    found = _EXTERNAL_CRS.search(crs)
    if found:
        named = crs[found.start() : found.end() + 60].split()[0].split(",")[0]
        raise ConformError(f"{origin} names a grid or init file ({named}), which is never read")
