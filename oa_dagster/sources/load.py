"""Load source files into `Source` objects: parse, upgrade v1, validate, and list the layer entries.

Everything that can be wrong with one file becomes a `SourceInvalid` carrying `<json path>: <message>` lines,
so a caller (the CLI, the catalog asset) can report it and carry on with the other sources.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .local_data import SOURCES_DIR, data_errors, inside, sources_ancestor, sources_root_for, tree_of
from .model import LAYERS, LayerEntry, Source, SourceInvalid
from .upgrade import is_v1, upgrade_v1
from .validate import bad_key_part, bad_source_key, suffixed_name_errors, validate_v1, validate_v2

SUFFIX = ".json"
# Real sources nest at most 9 levels (a MultiPolygon coverage); validation recurses once per level, so a file
# nested thousands deep would exhaust Python's stack instead of being reported.
MAX_NESTING = 64
TOO_DEEP = f"$: JSON nested too deeply (more than {MAX_NESTING} levels of objects and arrays)"


def source_key_for(path: Path | str) -> str:
    """The source key of a file: its path after the last `sources/` directory, without `.json`.

    `.../sources/us/ca/alameda.json` -> `us/ca/alameda`; a file outside any `sources/` directory is keyed by
    its bare name, so a contributor can check a file anywhere.
    """
    path = Path(path)
    ancestor = sources_ancestor(path)
    key = path.relative_to(ancestor).as_posix() if ancestor is not None else path.name
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


def build_entries(
    key: str,
    data: Mapping[str, Any],
    source_dir: Path | None,
    sources_root: Path | None = None,
    allow_local_files: bool = False,
) -> tuple[LayerEntry, ...]:
    """The layer entries of a validated v2 source, in `LAYERS` order then file order."""
    layers = data.get("layers") or {}
    entries: list[LayerEntry] = []
    for layer in LAYERS:
        items = layers.get(layer) or []
        names = _unique_names([str(item.get("name", "")) for item in items])
        entries += [
            LayerEntry(key, layer, name, index, item, source_dir, sources_root, allow_local_files)
            for index, (name, item) in enumerate(zip(names, items, strict=True))
        ]
    return tuple(entries)


def _nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether objects and arrays nest more than `limit` levels; iterative, so any depth is safe to measure."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def source_from_dict(
    data: Any,
    key: str,
    path: Path | str | None = None,
    *,
    sources_root: Path | None = None,
    allow_local_files: bool = False,
) -> Source:
    """A `Source` from parsed JSON: v1 is validated against the retired schema and upgraded, then v2 checked.

    `path` is where the file was read from: a `data` path without a URL scheme is relative to it and must stay
    inside `sources_root` (default: the tree holding the file's `sources/` directory, see `local_data`); with
    no `path` there is no tree, so such a `data` cannot be fetched. `allow_local_files` also accepts `file://` URLs
    and absolute paths (the CLI's `--allow-local-files`; the platform never passes it).

    Raises `SourceInvalid` with every error found; the input is not modified.
    """
    path = Path(path) if path is not None else None
    errors: list[str] = []
    if (why := bad_key_part(key)) is not None:
        errors.append(f"$: source key {key!r} contains {why}, which a partition key cannot hold")
    elif (why := bad_source_key(key)) is not None:
        errors.append(f"$: source key {key!r} contains {why}")
    if isinstance(data, dict | list) and _nested_deeper_than(data, MAX_NESTING):
        raise SourceInvalid(key, [*errors, TOO_DEEP])
    upgraded = False
    if isinstance(data, Mapping) and is_v1(data):
        v1_errors = validate_v1(data)
        if v1_errors:
            raise SourceInvalid(key, errors + v1_errors)
        data, upgraded = upgrade_v1(data), True
    errors += validate_v2(data)
    source_dir = path.parent if path is not None else None
    if path is not None and sources_root is None:
        sources_root = sources_root_for(path)
    if isinstance(data, Mapping):
        errors += data_errors(
            data, source_dir=source_dir, sources_root=sources_root, allow_local_files=allow_local_files
        )
    if errors:
        raise SourceInvalid(key, errors)
    data = dict(data)
    entries = build_entries(key, data, source_dir, sources_root, allow_local_files)
    if suffix_errors := suffixed_name_errors(entries):
        raise SourceInvalid(key, suffix_errors)
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
        raise SourceInvalid(key, [f"$: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"]) from None
    except RecursionError:
        raise SourceInvalid(key, [TOO_DEEP]) from None
    except _DuplicateKey as exc:
        raise SourceInvalid(key, [f"$: invalid JSON: duplicate key {exc.args[0]!r} in an object"]) from None
    except ValueError as exc:
        raise SourceInvalid(key, [f"$: invalid JSON: {exc}"]) from None


def load_source(
    path: Path | str, *, key: str | None = None, sources_root: Path | None = None, allow_local_files: bool = False
) -> Source:
    """Read, parse, upgrade and validate one source file (`source_from_dict` says what the options mean).

    Raises `SourceInvalid` for a file that isn't an acceptable source, and `OSError` when it can't be read
    (the CLI treats that as a usage error rather than a bad source).
    """
    path = Path(path)
    key = key if key is not None else source_key_for(path)
    return source_from_dict(
        parse_source_json(path.read_bytes(), key),
        key,
        path,
        sources_root=sources_root,
        allow_local_files=allow_local_files,
    )


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


def load_catalog(root: Path | str, *, local_data: bool = True) -> tuple[list[Source], dict[str, list[str]]]:
    """Load every source under `root`: the valid ones, and the invalid ones by key with their errors.

    Keys are paths relative to the `sources` directory. Relative `data` paths must stay inside the tree holding
    that directory; with `local_data=False` (a downloaded archive, which is not kept) they are refused. Never
    raises for one file: an unreadable, invalid or even crashing source is reported and the others still load.
    """
    base = sources_dir(root)
    tree = tree_of(base)
    sources: list[Source] = []
    invalid: dict[str, list[str]] = {}
    for path in iter_source_files(base):
        key = path.relative_to(base).as_posix()[: -len(SUFFIX)]
        try:
            if not inside(path.resolve(), tree):
                raise SourceInvalid(key, ["$: the source file is a symbolic link leading outside the sources tree"])
            if local_data:
                sources.append(load_source(path, key=key, sources_root=tree))
            else:
                source = source_from_dict(parse_source_json(path.read_bytes(), key), key)
                if errors := data_errors(
                    source.data, source_dir=None, sources_root=None, allow_local_files=False, require_tree=True
                ):
                    raise SourceInvalid(key, errors)
                sources.append(source)
        except SourceInvalid as exc:
            invalid[key] = exc.errors
        except OSError as exc:
            invalid[key] = [f"$: cannot read file: {exc.strerror or exc}"]
        except Exception as exc:  # a bug met by one file must not cost the catalog every other source
            invalid[key] = [f"$: could not be loaded ({type(exc).__name__}: {exc})"]
    return sources, invalid
