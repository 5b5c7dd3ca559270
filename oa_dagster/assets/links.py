"""URL metadata only for web links: a source's `website` or `license.url` set to `javascript:…` (or `data:`,
`file:`) must not become a link someone clicks in the Dagster UI."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import dagster as dg

LINK_SCHEMES = frozenset({"http", "https"})
# white space (`\s` is what `str.isspace` calls white space, Unicode's included) and control characters: one regex
# scan instead of a Python loop over the characters, as every entry's materialization has seven links
NOT_IN_A_LINK = re.compile(r"[\s\x00-\x1f\x7f]")


def is_web_link(url: str) -> bool:
    """An absolute `http` or `https` URL with a host, and nothing a browser would strip or fold into the scheme
    (white space, control characters)."""
    if NOT_IN_A_LINK.search(url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False
    return parts.scheme.lower() in LINK_SCHEMES and bool(parts.netloc)


def link_metadata(url: str) -> dg.UrlMetadataValue | dg.TextMetadataValue:
    """A clickable link for a web URL; anything else as plain text."""
    return dg.MetadataValue.url(url) if is_web_link(url) else dg.MetadataValue.text(url)
