"""Where a layer entry's `data` may point when it is not a download URL: inside the sources tree, nowhere else.

Sources are untrusted input: a `data` of `/etc/passwd` or `../../../../proc/self/environ` would otherwise copy a
file of the worker into the run's outputs, which the platform publishes. So a `data` value without a URL scheme
is a path relative to the source file that must stay, symbolic links resolved, inside the *sources tree*: the
directory holding `sources/` (for the bundled examples, `oa_dagster/examples/`), or the source file's own
directory when there is no `sources/` above it. `file://` URLs and absolute paths are refused unless the caller
passes `allow_local_files` (only `oa-dagster process/check --allow-local-files` does; the platform never).

The same rule is checked when a source is loaded (a schema-level error, before any download) and again when the
file is opened (`fetch/entry.py`), since the tree can change in between.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from .model import LAYERS
from .validate import json_path

SOURCES_DIR = "sources"
REMOTE_SCHEMES = frozenset({"http", "https", "ftp"})
FLAG = "--allow-local-files"


class LocalDataRefused(ValueError):
    """`data` names a local file the policy does not allow; the message says why."""


class NoSourcesTree(LocalDataRefused):
    """A relative `data` path in a source that was not read from a local tree (built from a dict, an archive)."""


def sources_ancestor(path: Path) -> Path | None:
    """The last (innermost) `sources/` directory above `path`, as `path` spells it; None when there is none."""
    return next((ancestor for ancestor in path.parents if ancestor.name == SOURCES_DIR), None)


def sources_root_for(source_file: Path) -> Path:
    """The sources tree of a source file: the parent of its last `sources/` ancestor, else its own directory."""
    source_file = source_file.absolute()
    ancestor = sources_ancestor(source_file)
    return tree_of(ancestor) if ancestor is not None else source_file.parent


def tree_of(sources_dir: Path) -> Path:
    """The sources tree of a `sources/` directory handed to the catalog (a directory of another name is its own).

    A `sources/` directory at the top of the file system (`/sources`, a container's mount) is its own tree:
    the file system root must never be the tree.
    """
    sources_dir = sources_dir.absolute()
    if sources_dir.name != SOURCES_DIR or sources_dir.parent == sources_dir.parent.parent:
        return sources_dir
    return sources_dir.parent


def inside(path: Path, root: Path) -> bool:
    """Whether the already resolved `path` is `root` (resolved here) or below it."""
    return path.is_relative_to(root.resolve())


def local_data_path(
    data: str, *, source_dir: Path | None, sources_root: Path | None, allow_local_files: bool
) -> Path | None:
    """The resolved local file `data` names, or None when `data` is a download URL (http, https, ftp).

    Raises `LocalDataRefused` when the policy does not allow it: a `file://` URL or absolute path without
    `allow_local_files`, a relative path leading out of the tree, a path with no tree to be relative to, or a
    scheme nothing can fetch. Nothing is opened here; existence is the fetcher's business.
    """
    value = data.strip()
    if not value:
        return None
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    if scheme in REMOTE_SCHEMES:
        return None
    if "\0" in value:
        raise LocalDataRefused("contains a NUL character")
    if scheme == "file":
        if not allow_local_files:
            raise LocalDataRefused(
                "file:// URLs are refused: data is a download URL or a path relative to the "
                f"source file inside the sources tree (only the command line's {FLAG} "
                "reads other local files)"
            )
        if parts.netloc not in ("", "localhost"):
            raise LocalDataRefused(f"file:// URL names another host ({parts.netloc})")
        return _resolve(Path(url2pathname(unquote(parts.path))))
    if scheme:
        raise LocalDataRefused(
            f"unsupported URL scheme {scheme!r} (data is an http, https or ftp URL, "
            "or a path relative to the source file)"
        )
    path = Path(value)
    if path.is_absolute():
        if not allow_local_files:
            raise LocalDataRefused(
                "absolute paths are refused: a path without a URL scheme is relative to the "
                f"source file and stays inside the sources tree (only the command line's "
                f"{FLAG} reads other local files)"
            )
        return _resolve(path)
    root = sources_root or source_dir
    if source_dir is None or root is None:
        raise NoSourcesTree(
            "a path without a URL scheme needs a local sources tree to be relative to, "
            "and this source has none (it was not read from a local checkout)"
        )
    target = _resolve(source_dir / path)
    if not allow_local_files and not inside(target, root):
        raise LocalDataRefused(
            f"path {value!r} leads outside the sources tree (the directory holding sources/; "
            "symbolic links are followed)"
        )
    return target


def _resolve(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a name too long
        raise LocalDataRefused(f"path cannot be resolved: {exc}") from None


def data_errors(
    data: Mapping[str, Any],
    *,
    source_dir: Path | None,
    sources_root: Path | None,
    allow_local_files: bool,
    require_tree: bool = False,
) -> list[str]:
    """`<json path>: <message>` lines for every entry whose `data` the policy refuses (schema-level errors).

    A relative path in a source without a tree (`source_dir` None) is only an error with `require_tree`: a
    source built from a dict may still be given its tree later, and the fetcher refuses it if it never is.
    """
    errors: list[str] = []
    layers = data.get("layers")
    if not isinstance(layers, Mapping):
        return errors
    for layer in LAYERS:
        items = layers.get(layer)
        for index, item in enumerate(items if isinstance(items, list) else ()):
            value = item.get("data") if isinstance(item, Mapping) else None
            if not isinstance(value, str):
                continue  # the schema reports a missing or mistyped `data`
            try:
                local_data_path(
                    value, source_dir=source_dir, sources_root=sources_root, allow_local_files=allow_local_files
                )
            except NoSourcesTree as exc:
                if require_tree:
                    errors.append(f"{json_path(['layers', layer, index, 'data'])}: {exc}")
            except LocalDataRefused as exc:
                errors.append(f"{json_path(['layers', layer, index, 'data'])}: {exc}")
    return errors
