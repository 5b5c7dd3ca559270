"""The source model: a source file and its layer entries, as plain data.

A *source* is one JSON file of the sources repository; its *key* is its path under `sources/` without
`.json` (e.g. `us/ca/alameda`). A *layer entry* is one object in `layers.<layer>[]`; it is what a run
processes. Entry names are made unique per layer by order (`city`, `city-2`) so that the partition key
`<source key>/<entry name>` always names exactly one entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LAYERS: tuple[str, ...] = ("addresses", "parcels", "buildings", "centerlines")


@dataclass(frozen=True)
class LayerEntry:
    """One layer entry of a source, with the fields processing needs pulled out of `raw`."""

    source_key: str
    layer: str
    name: str  # unique within (source, layer): repeated names get `-2`, `-3`, ...
    index: int  # position in `layers.<layer>[]`
    raw: dict[str, Any]  # the entry's JSON object as in the (upgraded) source
    source_dir: Path | None = None  # directory of the source file, for relative `data` paths
    sources_root: Path | None = None  # the tree relative `data` must stay in; None = `source_dir`
    allow_local_files: bool = False  # `file://` and absolute `data` (the CLI's --allow-local-files only)

    @property
    def key(self) -> str:
        """Partition key: `<source key>/<entry name>`."""
        return f"{self.source_key}/{self.name}"

    @property
    def protocol(self) -> str:
        return str(self.raw.get("protocol", ""))

    @property
    def data(self) -> str:
        data = self.raw.get("data", "")
        return data[0] if isinstance(data, list) and data else str(data)

    @property
    def compression(self) -> str | None:
        return self.raw.get("compression")

    @property
    def conform(self) -> dict[str, Any] | None:
        conform = self.raw.get("conform")
        return conform if isinstance(conform, dict) else None

    @property
    def skip(self) -> bool:
        return bool(self.raw.get("skip", False))

    @property
    def request_headers(self) -> dict[str, str]:
        request = self.raw.get("request") or {}
        return dict(request.get("headers") or {})

    @property
    def tests(self) -> dict[str, Any] | None:
        test = self.raw.get("test")
        return test if isinstance(test, dict) else None

    @property
    def license(self) -> dict[str, Any]:
        """Licence facts normalised to a dict: url, text, attribution (bool), attribution name, share-alike."""
        lic = self.raw.get("license")
        if isinstance(lic, str):
            return {"text": lic}
        return dict(lic) if isinstance(lic, dict) else {}

    @property
    def website(self) -> str | None:
        return self.raw.get("website")

    @property
    def attribution(self) -> str | None:
        return self.raw.get("attribution") or self.license.get("attribution name")


@dataclass(frozen=True)
class Source:
    """A loaded, validated (and, for v1 files, upgraded) source."""

    key: str
    path: Path | None
    data: dict[str, Any]  # the v2 JSON
    upgraded_from_v1: bool = False
    entries: tuple[LayerEntry, ...] = field(default=())

    @property
    def coverage(self) -> dict[str, Any]:
        return dict(self.data.get("coverage") or {})

    def layer_entries(self, layer: str) -> list[LayerEntry]:
        return [e for e in self.entries if e.layer == layer]

    def entry(self, layer: str, name: str | None) -> LayerEntry:
        """The entry of `layer` named `name`; `name` may be omitted when the layer has one entry.

        Raises `EntryNotFound` listing the choices, which the CLI turns into a usage error.
        """
        candidates = self.layer_entries(layer)
        if name is None:
            if len(candidates) == 1:
                return candidates[0]
            raise EntryNotFound(self.key, layer, name, self.choices())
        for entry in candidates:
            if entry.name == name:
                return entry
        raise EntryNotFound(self.key, layer, name, self.choices())

    def choices(self) -> dict[str, list[str]]:
        return {layer: [e.name for e in self.layer_entries(layer)] for layer in LAYERS if self.layer_entries(layer)}


class EntryNotFound(LookupError):
    """The requested layer/name is not in the source; carries the valid choices."""

    def __init__(self, source_key: str, layer: str, name: str | None, choices: dict[str, list[str]]):
        self.choices = choices
        listing = "; ".join(f"{layer}: {', '.join(names)}" for layer, names in choices.items()) or "none"
        if name is None and choices.get(layer):
            msg = f"{source_key}: layer {layer} has several entries, choose one with --name ({listing})"
        elif name is None:
            msg = f"{source_key}: no {layer} layer (choices: {listing})"
        else:
            msg = f"{source_key}: no {layer} entry named {name!r} (choices: {listing})"
        super().__init__(msg)


class SourceInvalid(ValueError):
    """A source that cannot be loaded or does not validate; `errors` are `<json path>: <message>` lines."""

    def __init__(self, source: str, errors: list[str]):
        self.source = source
        self.errors = errors
        super().__init__(
            f"{source}: invalid source: "
            + "; ".join(errors[:5])
            + (f" (and {len(errors) - 5} more)" if len(errors) > 5 else "")
        )
