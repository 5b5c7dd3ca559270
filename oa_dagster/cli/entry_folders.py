"""Where `process` and `download` put an entry's files: `<root>/<layer>/<source key>/<name>/`, the store's own
layout, so one folder can take any number of sources, layers and entries without one overwriting another.

A folder that already holds another entry's output (its `state.json` names another source, layer or entry: put
there by hand, or by an older version that wrote `<root>/<layer>/<name>/`) is refused rather than overwritten.
"""

from __future__ import annotations

import json
from pathlib import Path


def plain_key(value: str, segments: int | None = None) -> bool:
    """A key a folder path takes as is: no empty, `.` or `..` segment, no backslash (nothing escapes the root)."""
    parts = value.split("/")
    plain = all(p not in ("", ".", "..") and "\\" not in p for p in parts)
    return plain and (segments is None or len(parts) == segments)


def entry_folder(root: Path, layer: str, source: str, name: str) -> Path:
    """The entry's folder under `root`; ValueError for a source key or name that would leave it."""
    if not plain_key(source) or not plain_key(name, segments=1):
        raise ValueError(f"{source}/{name}: not a plain source key and entry name (an empty, '.' or '..' part)")
    return root / layer / source / name


def other_entry_in(folder: Path, layer: str, source: str, name: str) -> str | None:
    """The other entry whose output `folder` holds (`<source>/<name> <layer>`), or None when it holds this entry's
    output or none (no `state.json`, or one that is not an entry's state)."""
    try:
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not {"source", "layer", "name"} <= state.keys():
        return None
    if (state["source"], state["layer"], state["name"]) == (source, layer, name):
        return None
    return f"{state['source']}/{state['name']} {state['layer']}"


def refusal(folder: Path, layer: str, source: str, name: str) -> str | None:
    """The error line when writing `source/name layer` into `folder` would overwrite another entry's output."""
    other = other_entry_in(folder, layer, source, name)
    if other is None:
        return None
    return (
        f"error: {folder} holds the output of {other}, not of {source}/{name} {layer}: not overwriting it "
        "(remove the folder or choose another destination)"
    )
