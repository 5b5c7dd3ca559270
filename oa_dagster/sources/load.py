"""Load source files into `Source` objects: parse, upgrade v1, validate, and list the layer entries.

Everything that can be wrong with one file becomes a `SourceInvalid` carrying `<json path>: <message>` lines,
so a caller (the CLI, the catalog asset) can report it and carry on with the other sources.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .model import LAYERS, LayerEntry, Source, SourceInvalid
from .upgrade import is_v1, upgrade_v1
from .validate import bad_key_part, validate_v1, validate_v2

SOURCES_DIR = "sources"
SUFFIX = ".json"


def source_key_for(path: Path | str) -> str:
    """The source key of a file: its path after the last `sources/` directory, without `.json`.

    `.../sources/us/ca/alameda.json` -> `us/ca/alameda`; a file outside any `sources/` directory is keyed by
    its bare name, so a contributor can check a file anywhere.
    """
    parts = Path(path).parts
    dirs = parts[:-1]
    start = len(dirs) - dirs[::-1].index(SOURCES_DIR) if SOURCES_DIR in dirs else len(dirs)
    key = "/".join(parts[start:])
    return key[: -len(SUFFIX)] if key.endswith(SUFFIX) else key


def _unique_names(names: list[str]) -> list[str]:
    """Make names unique by order (`city`, `city-2`, `city-3`) without taking a name another entry uses as is."""
    literal = set(names)
    taken: set[str] = set()
    out: list[str] = []
    for name in names:
        unique = name
        if unique in taken:
            n = 2
            while f"{name}-{n}" in taken or f"{name}-{n}" in literal:
                n += 1
            unique = f"{name}-{n}"
        taken.add(unique)
        out.append(unique)
    return out


def build_entries(key: str, data: Mapping[str, Any], source_dir: Path | None) -> tuple[LayerEntry, ...]:
    """The layer entries of a validated v2 source, in `LAYERS` order then file order."""
    layers = data.get("layers") or {}
    entries: list[LayerEntry] = []
    for layer in LAYERS:
        items = layers.get(layer) or []
        names = _unique_names([str(item.get("name", "")) for item in items])
        entries += [LayerEntry(key, layer, name, index, item, source_dir)
                    for index, (name, item) in enumerate(zip(names, items, strict=True))]
    return tuple(entries)


def source_from_dict(data: Any, key: str, path: Path | str | None = None) -> Source:
    """A `Source` from parsed JSON: v1 is validated against the retired schema and upgraded, then v2 checked.

    Raises `SourceInvalid` with every error found; the input is not modified.
    """
    path = Path(path) if path is not None else None
    errors: list[str] = []
    if (why := bad_key_part(key)) is not None:
        errors.append(f"$: source key {key!r} contains {why}, which a partition key cannot hold")
    upgraded = False
    if isinstance(data, Mapping) and is_v1(data):
        v1_errors = validate_v1(data)
        if v1_errors:
            raise SourceInvalid(key, errors + v1_errors)
        data, upgraded = upgrade_v1(data), True
    errors += validate_v2(data)
    if errors:
        raise SourceInvalid(key, errors)
    data = dict(data)
    entries = build_entries(key, data, path.parent if path is not None else None)
    return Source(key=key, path=path, data=data, upgraded_from_v1=upgraded, entries=entries)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for name, value in pairs:
        if name in seen:
            raise _DuplicateKey(name)
        seen[name] = value
    return seen


class _DuplicateKey(ValueError):
    """A JSON object repeats a key; the sources repo's pre-commit `check-json` refuses these too."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_source_json(raw: bytes, key: str) -> Any:
    """Parse a source file's bytes, turning every parse problem into a `SourceInvalid` with a position."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceInvalid(key, [f"$: not UTF-8 text (byte {exc.start}: {exc.reason})"]) from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise SourceInvalid(key, [f"$: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"]) \
            from None
    except _DuplicateKey as exc:
        raise SourceInvalid(key, [f"$: invalid JSON: duplicate key {exc.args[0]!r} in an object"]) from None
    except ValueError as exc:
        raise SourceInvalid(key, [f"$: invalid JSON: {exc}"]) from None


def load_source(path: Path | str, *, key: str | None = None) -> Source:
    """Read, parse, upgrade and validate one source file.

    Raises `SourceInvalid` for a file that isn't an acceptable source, and `OSError` when it can't be read
    (the CLI treats that as a usage error rather than a bad source).
    """
    path = Path(path)
    key = key if key is not None else source_key_for(path)
    return source_from_dict(parse_source_json(path.read_bytes(), key), key, path)


def sources_dir(root: Path | str) -> Path:
    """The `sources` directory of a checkout given either the checkout or that directory itself."""
    root = Path(root).resolve()
    if root.name != SOURCES_DIR and (root / SOURCES_DIR).is_dir():
        return root / SOURCES_DIR
    return root


def iter_source_files(root: Path | str) -> Iterator[Path]:
    """Every `*.json` file under the `sources` directory of `root` (or `root` itself), sorted by path."""
    base = sources_dir(root)
    files = (p for p in base.rglob(f"*{SUFFIX}") if p.is_file())
    yield from sorted(files, key=lambda p: p.relative_to(base).as_posix())


def load_catalog(root: Path | str) -> tuple[list[Source], dict[str, list[str]]]:
    """Load every source under `root`: the valid ones, and the invalid ones by key with their errors.

    Keys are paths relative to the `sources` directory. Never raises for one file: an unreadable or invalid
    source is reported and the others still load.
    """
    base = sources_dir(root)
    sources: list[Source] = []
    invalid: dict[str, list[str]] = {}
    for path in iter_source_files(base):
        key = path.relative_to(base).as_posix()[: -len(SUFFIX)]
        try:
            sources.append(load_source(path, key=key))
        except SourceInvalid as exc:
            invalid[key] = exc.errors
        except OSError as exc:
            invalid[key] = [f"$: cannot read file: {exc.strerror or exc}"]
    return sources, invalid
