"""Fetchers: HTTP(S)/FTP/file downloads, the ArcGIS REST dumper and safe archive extraction.

A plain library (no Dagster imports): `fetch_entry` downloads one layer entry into a work directory as
`cache.<ext>`, `unpack` extracts it. Every refusal is a `DownloadError` whose detail names the cause.
"""

from oa_dagster.fetch.archive import unpack
from oa_dagster.fetch.entry import fetch_entry
from oa_dagster.fetch.options import Download, FetchOptions

__all__ = ["Download", "FetchOptions", "fetch_entry", "unpack"]
