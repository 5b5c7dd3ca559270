"""Which layer attributes each layer outputs, and which source columns a conform reads.

Kept apart from the function engine because the ArcGIS dumper needs `referenced_columns` to ask the
server for only the fields the conform uses, without importing the (heavier) engine.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

OUTPUT_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "addresses": ("number", "street", "unit", "city", "district", "region", "postcode", "id", "accuracy"),
    "parcels": ("pid",),
    "buildings": ("id", "height", "levels"),
    "centerlines": (
        "id",
        "name",
        "oneway",
        "speed",
        "classification",
        "surface",
        "addr_from_left",
        "addr_to_left",
        "addr_from_right",
        "addr_to_right",
        "zip_left",
        "zip_right",
    ),
}
"""Output properties per layer, in output order, after the leading `hash`."""

PROCESSING_TAGS = frozenset(
    {
        "format",
        "srs",
        "file",
        "layer",
        "encoding",
        "csvsplit",
        "headers",
        "skiplines",
        "addrtype",
        "notes",
        "size",
        "lon",
        "lat",
    }
)


def output_properties(layer: str) -> tuple[str, ...]:
    """All output property names of a layer in file order, `hash` first."""
    return ("hash", *OUTPUT_ATTRIBUTES[layer])


def _function_columns(spec: Mapping[str, Any], chain_variables: set[str]) -> Iterator[str]:
    for key in ("field", "field_to_remove"):
        value = spec.get(key)
        if isinstance(value, str):
            yield value
    for value in spec.get("fields") or ():
        if isinstance(value, str):
            yield value
    if spec.get("function") == "chain":
        variable = spec.get("variable")
        if isinstance(variable, str):
            chain_variables.add(variable)
        for step in spec.get("functions") or ():
            yield from _value_columns(step, chain_variables)


def _value_columns(value: Any, chain_variables: set[str]) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        yield from (v for v in value if isinstance(v, str))
    elif isinstance(value, Mapping):
        yield from _function_columns(value, chain_variables)


def referenced_columns(conform: Mapping[str, Any] | None, layer: str) -> list[str]:
    """Source columns the conform reads (attributes, lon/lat), in first-use order, without chain variables.

    An empty list means the conform names no column, and a reader should keep every field.
    """
    if not conform:
        return []
    chain_variables: set[str] = set()
    seen: dict[str, None] = {}
    attributes = OUTPUT_ATTRIBUTES.get(layer, ())
    for key, value in conform.items():
        if key in attributes:
            for column in _value_columns(value, chain_variables):
                seen.setdefault(column, None)
        elif key in ("lon", "lat") and isinstance(value, str):
            seen.setdefault(value, None)
    hidden = chain_variables | {f"oa:{v}" for v in chain_variables}
    return [c for c in seen if c not in hidden and not c.startswith("oa:")]
