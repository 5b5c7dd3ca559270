"""Upgrade retired flat (v1) sources to schema v2, the way the reference processor does on the fly.

A v1 source is one implicit address layer: its keys sit at the top level next to `coverage`. Many old
fixtures and contributors' local files are still v1, so `check` and `process` accept them. v1 was stricter
than v2 in the places that overlap (`accuracy` an integer 1..5, `compression` only `zip`), so the values
need no conversion: upgrading is only moving keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .validate import SUPPORTED_SCHEMA

V1_ENTRY_NAME = "primary"


def is_v1(data: Mapping[str, Any]) -> bool:
    """A source with neither `schema` nor `layers` is v1 (spec §1.5)."""
    return "schema" not in data and "layers" not in data


def upgrade_v1(data: Mapping[str, Any]) -> dict[str, Any]:
    """The v2 form of a v1 source: every non-coverage key moves into `layers.addresses[0]`, named `primary`."""
    entry: dict[str, Any] = {"name": V1_ENTRY_NAME}
    entry.update((k, v) for k, v in data.items() if k != "coverage")
    upgraded: dict[str, Any] = {"schema": SUPPORTED_SCHEMA}
    if "coverage" in data:
        upgraded["coverage"] = data["coverage"]
    upgraded["layers"] = {"addresses": [entry]}
    return upgraded
