"""Work out a download's file type without downloading it twice.

Order: the URL path's extension when it names a data type, then `Content-Disposition`'s file name, then
`Content-Type`, then the first bytes (magic numbers). The reference downloaded the whole URL a second time
to read `Content-Type`; here everything is decided from the one response.
"""

from __future__ import annotations

import re
from email.message import Message
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

DATA_SUFFIXES = frozenset(
    {
        ".zip",
        ".gz",
        ".csv",
        ".tsv",
        ".txt",
        ".json",
        ".geojson",
        ".geojsonl",
        ".ndjson",
        ".gml",
        ".xml",
        ".gpkg",
        ".kml",
        ".kmz",
        ".shp",
        ".dbf",
        ".gdb",
        ".psv",
        ".dat",
    }
)
"""Extensions trusted from a URL or file name. Scripts (`.php`, `.aspx`, ...) and unknown ones are not."""

CONTENT_TYPES: dict[str, str] = {
    "application/zip": ".zip",
    "application/x-zip-compressed": ".zip",
    "application/x-zip": ".zip",
    "application/gzip": ".gz",
    "application/x-gzip": ".gz",
    "application/json": ".json",
    "application/geo+json": ".geojson",
    "application/vnd.geo+json": ".geojson",
    "text/csv": ".csv",
    "application/csv": ".csv",
    "text/comma-separated-values": ".csv",
    "text/tab-separated-values": ".tsv",
    "application/gml+xml": ".gml",
    "application/xml": ".xml",
    "text/xml": ".xml",
    "application/geopackage+sqlite3": ".gpkg",
}
"""`text/plain`, `text/html` and `application/octet-stream` say too little: the bytes decide."""


def suffix_of_name(name: str) -> str | None:
    """`.csv`, `.csv.gz`, ... when `name` ends in a data extension; `.gz` keeps the inner type."""
    path = PurePosixPath(unquote(name).strip().rstrip("/"))
    suffix = path.suffix.lower()
    if suffix not in DATA_SUFFIXES:
        return None
    if suffix == ".gz":
        inner = PurePosixPath(path.stem).suffix.lower()
        if inner in DATA_SUFFIXES and inner != ".gz":
            return inner + suffix
    return suffix


def suffix_from_url(url: str) -> str | None:
    return suffix_of_name(urlsplit(url).path)


_FILENAME_STAR = re.compile(r"filename\*\s*=\s*[^']*'[^']*'([^;]+)", re.I)


def suffix_from_disposition(value: str | None) -> str | None:
    if not value:
        return None
    star = _FILENAME_STAR.search(value)
    if star:
        return suffix_of_name(star.group(1).strip('"'))
    message = Message()
    message["content-disposition"] = value
    filename = message.get_filename()
    return suffix_of_name(filename) if filename else None


def suffix_from_content_type(value: str | None) -> str | None:
    if not value:
        return None
    return CONTENT_TYPES.get(value.split(";")[0].strip().lower())


def suffix_from_magic(head: bytes) -> str:
    """Classify by the first bytes: zip, gzip, GeoPackage, JSON, XML, else text (CSV) or binary."""
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return ".zip"
    if head.startswith(b"\x1f\x8b"):
        return ".gz"
    if head.startswith(b"SQLite format 3\x00"):
        return ".gpkg"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith((b"{", b"[")):
        return ".json"
    if text.startswith(b"<"):
        return ".xml"
    sample = head[:4096]
    if b"\x00" in sample:
        return ".bin"
    return ".csv"


def guess_suffix(
    url: str,
    *,
    final_url: str | None = None,
    disposition: str | None = None,
    content_type: str | None = None,
    head: bytes = b"",
) -> str:
    """The download's extension from the best evidence available (see module docstring)."""
    magic = suffix_from_magic(head) if head else None
    for candidate in (
        suffix_from_url(url),
        suffix_from_url(final_url) if final_url else None,
        suffix_from_disposition(disposition),
        suffix_from_content_type(content_type),
    ):
        if candidate:
            if candidate.endswith(".gz") and magic not in (None, ".gz"):
                # decoded by the HTTP layer (`Content-Encoding: gzip`): the bytes are the inner type
                return candidate[:-3] or magic
            if magic == ".zip" and candidate != ".zip" and not candidate.endswith(".gz"):
                return ".zip"  # e.g. a shapefile download named `.shp` or served as JSON: trust the bytes
            if magic == ".gz" and not candidate.endswith(".gz"):
                return candidate + ".gz" if candidate in DATA_SUFFIXES else ".gz"
            return candidate
    return magic or ".bin"
