"""Licence facts of a source entry, read the way data users need them (and the way the machine should have).

Licences live on layer entries (schema v2: `layers.<layer>[].license`, a string or an object with `url`, `text`,
`attribution`, `attribution name`, `share-alike`; plus the legacy top-level `attribution` string). The machine
printed "Required attribution: No" only for a state key its worker never wrote (spec §1.6), so a source that said
no attribution was needed still read as required. Here an explicit `attribution: false` is "No", a name is the
attribution to give, and a source that says nothing is "Yes" (the safe reading for whoever reuses the data).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

LAYER_ORDER = ("addresses", "parcels", "buildings", "centerlines")
_TRUE = {"true", "y", "yes", "t", "1"}
_FALSE = {"false", "n", "no", "f", "0", "", "null"}


@dataclass(frozen=True)
class SourceLicence:
    """One entry's licence: what LICENSE.txt, licenses.json and the share-alike split are made from."""

    text: str | None
    url: str | None
    attribution_required: bool
    attribution_name: str | None
    share_alike: bool
    website: str | None

    def describe(self) -> str:
        """The licence as one line, as the machine normalised it: `text (url)`, the url, the text or Unknown."""
        if self.text and self.url:
            return f"{self.text} ({self.url})"
        return self.url or self.text or "Unknown"

    def attribution_line(self) -> str:
        """`No` when the source says none is needed, else the name to credit, else `Yes`."""
        if not self.attribution_required:
            return "No"
        return self.attribution_name or "Yes"


def _flag(value: Any) -> bool | None:
    """A boolean from JSON that may carry the legacy string forms (`"yes"`, `"false"`, ...); None if absent."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


def _entry_of(source_data: Mapping[str, Any], layer: str | None, name: str | None) -> Mapping[str, Any]:
    """The entry object whose licence is asked for.

    `source_data` may be an entry itself (or a v1 source: licence keys at the top level); for a v2 source, the
    entry named `name` in `layer`, else the first entry of `layer`, else the first entry with a licence, looking
    at addresses first.
    """
    layers = source_data.get("layers")
    if not isinstance(layers, Mapping):
        return source_data
    order = [layer] if layer else list(LAYER_ORDER) + [key for key in layers if key not in LAYER_ORDER]
    candidates = [e for key in order for e in (layers.get(key) or []) if isinstance(e, Mapping)]
    if name is not None:
        named = [e for e in candidates if e.get("name") == name]
        if named:
            return named[0]
    with_licence = [e for e in candidates if e.get("license")]
    if with_licence:
        return with_licence[0]
    return candidates[0] if candidates else {}


def licence_of(source_data: Mapping[str, Any], layer: str | None = None, name: str | None = None) -> SourceLicence:
    """The licence of an entry: pass the entry object, or a source's JSON (and optionally the layer/entry name)."""
    entry = _entry_of(source_data, layer, name)
    raw = entry.get("license")
    text: str | None = None
    url: str | None = None
    flag: bool | None = None
    attribution_name: str | None = None
    share_alike: bool | None = None
    if isinstance(raw, str):
        text = raw.strip() or None
    elif isinstance(raw, Mapping):
        text = str(raw.get("text") or "").strip() or None
        url = str(raw.get("url") or "").strip() or None
        flag = _flag(raw.get("attribution"))
        attribution_name = str(raw.get("attribution name") or "").strip() or None
        share_alike = _flag(raw.get("share-alike"))
    legacy_name = entry.get("attribution")
    if not attribution_name and isinstance(legacy_name, str) and legacy_name.strip():
        attribution_name = legacy_name.strip()
    if share_alike is None and "share-alike" in entry:  # v1 flat sources sometimes carried it beside the licence
        share_alike = _flag(entry.get("share-alike"))
    required = flag is not False  # a name with no flag means required; silence is read as required too
    website = entry.get("website") or source_data.get("website")
    return SourceLicence(
        text=text,
        url=url,
        attribution_required=required,
        attribution_name=attribution_name if required else None,
        share_alike=bool(share_alike),
        website=str(website) if website else None,
    )
