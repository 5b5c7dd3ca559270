"""URL metadata only for web links: a source's `website` or `license.url` set to `javascript:…` (or `data:`,
`file:`) must not become a link someone clicks in the Dagster UI."""

from __future__ import annotations

from urllib.parse import urlsplit

import dagster as dg

LINK_SCHEMES = frozenset({"http", "https"})


def is_web_link(url: str) -> bool:
    """An absolute `http` or `https` URL with a host, and nothing a browser would strip or fold into the scheme
    (white space, control characters)."""
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False
    return parts.scheme.lower() in LINK_SCHEMES and bool(parts.netloc)


def link_metadata(url: str) -> dg.UrlMetadataValue | dg.TextMetadataValue:
    """A clickable link for a web URL; anything else as plain text."""
    return dg.MetadataValue.url(url) if is_web_link(url) else dg.MetadataValue.text(url)
