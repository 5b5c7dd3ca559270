"""README.txt and LICENSE.txt of a collection zip, in the machine's words (spec §1.6), with the attribution right."""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from .areas import area_label
from .inputs import EntryInput
from .keys import LICENCE_LABELS, Licence

WHY = (
    "Addresses are one of the most basic pieces of geographic data: they are how people find each other, how "
    "deliveries and emergency services reach a door, and how many other datasets are joined to a place. "
    "OpenAddresses collects them, and other open layers, from their official publishers, so that anyone may use "
    "them."
)


def sources_location(catalog: Mapping[str, Any]) -> str:
    """Where the source definitions of this catalog are: the GitHub tree at its commit, else the catalog's origin."""
    origin = str(catalog.get("origin") or "")
    commit = str(catalog.get("commit") or "")
    if origin.startswith("github:"):
        repo = origin.removeprefix("github:").split("@", 1)[0]
        return f"https://github.com/{repo}/tree/{commit}/sources"
    return f"{origin or 'the sources directory'} (catalog {commit})"


def readme(catalog: Mapping[str, Any], layer: str, area: str, licence: Licence, *, today: dt.date) -> bytes:
    lines = [
        f"Data collected around {today.isoformat()} by OpenAddresses (http://openaddresses.io).",
        "",
        WHY,
        "",
        f"This is the {layer} collection of {area_label(area)}, {LICENCE_LABELS[licence].lower()} sources only.",
        f"Catalog commit: {catalog.get('commit') or 'unknown'}.",
        "",
        "Each entry is in <source>/<entry>.geojsonl (GeoJSON, one feature per line, WGS 84)"
        + (", with the classic OpenAddresses CSV beside it in <source>/<entry>.csv" if layer == "addresses" else "")
        + ", and a count of features per 0.1 degree square in summary/<source>/<entry>-summary.csv (with a VRT to "
        "open it as polygons).",
        "",
        "Data licenses can be found in LICENSE.txt.",
        f"Data source information can be found at {sources_location(catalog)}",
        "",
    ]
    return "\n".join(lines).encode()


def one_line(text: str) -> str:
    """`text` with every line break (also the Unicode ones `str.splitlines` knows) and other control character
    folded to a space, runs of white space made one: a source's text can never start a line of its own."""
    return " ".join("".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text).split())


def license_text(entries: Iterable[EntryInput]) -> bytes:
    """One block per entry, sorted by partition key: the entry, its website, licence and the attribution it
    requires. Every field is one line, so a block is exactly four lines starting with their labels, and blocks are
    separated by one empty line: a source cannot forge another entry's block."""
    blocks = [
        "Data collected by OpenAddresses (http://openaddresses.io).\n"
        "One block per entry: Entry, Website, License and Required attribution, each on one line."
    ]
    for entry in sorted(entries, key=lambda e: e.partition_key):
        lic = entry.licence
        blocks.append(
            "\n".join(
                [
                    f"Entry: {one_line(entry.partition_key)}",
                    f"Website: {one_line(lic.website or '') or 'Unknown'}",
                    f"License: {one_line(lic.describe())}",
                    f"Required attribution: {one_line(lic.attribution_line())}",
                ]
            )
        )
    return ("\n\n".join(blocks) + "\n").encode()
