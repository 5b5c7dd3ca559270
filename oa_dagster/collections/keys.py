"""Store keys of the collections (the contract the results index and the download app rely on).

collections/<layer>/openaddr-collected-<area>[-sa].zip    the zip (freely shareable; -sa: share-alike only)
collections/<layer>/<area>[-sa].parquet                   one GeoParquet file of every entry
collections/<layer>/<area>[-sa].json                      the record of the build, written last
openaddr-collected-<area>[-sa].zip                        addresses only: the machine's classic root names
"""

from __future__ import annotations

from typing import Literal

Licence = Literal["free", "share-alike"]
LICENCES: tuple[Licence, ...] = ("free", "share-alike")
LICENCE_LABELS = {"free": "Freely Shareable", "share-alike": "Share-Alike Required"}


def suffix(licence: Licence) -> str:
    return "-sa" if licence == "share-alike" else ""


def zip_name(area: str, licence: Licence) -> str:
    return f"openaddr-collected-{area}{suffix(licence)}.zip"


def zip_key(layer: str, area: str, licence: Licence) -> str:
    return f"collections/{layer}/{zip_name(area, licence)}"


def parquet_key(layer: str, area: str, licence: Licence) -> str:
    return f"collections/{layer}/{area}{suffix(licence)}.parquet"


def record_key(layer: str, area: str, licence: Licence) -> str:
    return f"collections/{layer}/{area}{suffix(licence)}.json"


def classic_keys(layer: str, area: str, licence: Licence) -> list[str]:
    """The machine's bucket-root names, kept for addresses so old links and scripts keep working."""
    return [zip_name(area, licence)] if layer == "addresses" else []
