"""The source catalog: every valid source at one commit, its layer entries and their versions.

The catalog is stored whole in the output store, so a run processes an entry exactly as it was in the
catalog it was launched from, even if the repository moved on. Getting the sources at a ref is either a
local directory or one archive download from the GitHub API (not one request per file).
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from oa_dagster import __version__

from . import store_layout as layout
from .publishing import entry_hash
from .store import OutputStore, get_json


def local_commit(root: Path) -> str:
    """A content hash standing in for a commit when the sources are a plain directory."""
    from oa_dagster.sources import iter_source_files

    digest = hashlib.sha1()
    for path in iter_source_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return "local-" + digest.hexdigest()[:12]


def fetch_github_archive(
    api_url: str, repo: str, ref: str, dest: Path, *, token: str | None = None, timeout: float = 300.0
) -> tuple[Path, str]:
    """Download `repo` at `ref` as one tarball and unpack only its `sources/**.json`; returns (root, commit).

    The commit comes from the archive's pax comment (what `git archive` writes), else the top directory
    name's short sha, else one `commits/<ref>` call.
    """
    import requests

    headers = {"Accept": "application/vnd.github+json", "User-Agent": f"oa-dagster/{__version__}"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    base = api_url.rstrip("/")
    response = requests.get(f"{base}/repos/{repo}/tarball/{ref}", headers=headers, timeout=timeout)
    response.raise_for_status()
    commit = None
    root = dest / "checkout"
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:*") as archive:
        commit = archive.pax_headers.get("comment")
        top = None
        for member in archive:
            parts = member.name.split("/")
            top = top or parts[0]
            if (
                member.isfile()
                and len(parts) > 2
                and parts[1] == "sources"
                and member.name.endswith(".json")
                and ".." not in parts
            ):
                target = root.joinpath(*parts[1:])
                target.parent.mkdir(parents=True, exist_ok=True)
                extracted = archive.extractfile(member)
                if extracted is not None:
                    target.write_bytes(extracted.read())
    if not commit and top and "-" in top:
        response = requests.get(f"{base}/repos/{repo}/commits/{ref}", headers=headers, timeout=60)
        response.raise_for_status()
        commit = response.json()["sha"]
    (root / "sources").mkdir(parents=True, exist_ok=True)
    return root / "sources", commit or "unknown"


def build_catalog(root: Path, commit: str, *, ref: str, origin: str, keep_source_dir: bool) -> dict[str, Any]:
    """Load and validate every source under `root` into the stored catalog form.

    `keep_source_dir` records, per source, its directory and the sources tree its relative `data` paths must
    stay in (local checkouts and the bundled examples); an archive's temporary directory is not kept, so its
    sources are loaded without a tree and a relative `data` there is refused. Local files outside the tree,
    `file://` URLs and absolute paths are always refused: the platform has no `--allow-local-files`.
    """
    from oa_dagster.sources import load_catalog
    from oa_dagster.sources.load import sources_dir
    from oa_dagster.sources.local_data import tree_of

    sources, invalid = load_catalog(root, local_data=keep_source_dir)
    return catalog_from_sources(
        sources, invalid, commit, ref=ref, origin=origin, tree=tree_of(sources_dir(root)) if keep_source_dir else None
    )


def catalog_from_sources(
    sources: list[Any], invalid: dict[str, list[str]], commit: str, *, ref: str, origin: str, tree: Path | None
) -> dict[str, Any]:
    """The stored catalog of loaded sources; sources whose entries share a partition key are all invalid."""
    from oa_dagster.sources import LAYERS

    invalid = dict(invalid)
    clashes = shared_partition_keys(sources)
    invalid.update(clashes)
    entries: dict[str, dict[str, dict[str, Any]]] = {layer: {} for layer in LAYERS}
    stored_sources: dict[str, Any] = {}
    for source in sources:
        if source.key in clashes:
            continue
        keep = tree is not None and source.path is not None
        stored_sources[source.key] = {
            "data": source.data,
            "source_dir": str(source.path.parent) if keep else None,
            "sources_root": str(tree) if keep else None,
        }
        for entry in source.entries:
            entries[entry.layer][entry.key] = {
                "source": source.key,
                "name": entry.name,
                "index": entry.index,
                "skip": entry.skip,
                "version": entry_hash(entry.raw, __version__),
            }
    return {
        "id": commit,
        "commit": commit,
        "ref": ref,
        "origin": origin,
        "engine_version": __version__,
        "sources": stored_sources,
        "entries": entries,
        "invalid": invalid,
    }


def shared_partition_keys(sources: list[Any]) -> dict[str, list[str]]:
    """Errors, by source key, for every source with an entry whose partition key another source also makes.

    Keeping either entry would silently drop the other (and report nothing), so both sources are refused.
    Entry names are single path segments, so two sources should never meet; this is the catalog's own guard.
    """
    owners: dict[tuple[str, str], dict[str, int]] = {}  # (layer, partition key) -> {source key: entry index}
    for source in sources:
        for entry in source.entries:
            owners.setdefault((entry.layer, entry.key), {}).setdefault(source.key, entry.index)
    errors: dict[str, list[str]] = {}
    for (layer, key), found in owners.items():
        for owner, index in found.items() if len(found) > 1 else ():
            others = ", ".join(k for k in found if k != owner)
            errors.setdefault(owner, []).append(
                f"$.layers.{layer}[{index}].name: partition key {key!r} is also the key of an entry of source "
                f"{others}, so neither is processed; rename one of them"
            )
    return errors


def entry_from_catalog(catalog: dict[str, Any], layer: str, partition_key: str) -> Any:
    """The `LayerEntry` a partition names, rebuilt from the stored source JSON.

    Validated again under the platform's strict local-file rule (a catalog stored before the rule existed may
    hold `file://` or absolute `data`); the tree is the stored one, or for older catalogs the one around the
    stored source directory.
    """
    from oa_dagster.sources import source_from_dict

    info = catalog["entries"][layer].get(partition_key)
    if info is None:
        raise KeyError(f"{layer} entry {partition_key} is not in catalog {catalog['id']}")
    stored = catalog["sources"][info["source"]]
    path = (
        Path(stored["source_dir"]) / (info["source"].rsplit("/", 1)[-1] + ".json") if stored.get("source_dir") else None
    )
    tree = Path(stored["sources_root"]) if stored.get("sources_root") else None
    source = source_from_dict(stored["data"], info["source"], path, sources_root=tree)
    return source.entry(layer, info["name"])


def read_pointers(
    store: OutputStore, layer: str, partition_keys: Iterable[str], *, root: str = "", workers: int = 16
) -> dict[str, dict[str, Any] | None]:
    """Latest good pointers of many entries (parallel GETs: S3 latency, not bandwidth, is the cost)."""
    wanted = list(partition_keys)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        found = pool.map(lambda k: get_json(store, root + layout.latest_key(layer, k)), wanted)
    return dict(zip(wanted, found, strict=True))


def changed_entries(
    catalog: dict[str, Any], pointers: dict[str, dict[str, dict[str, Any] | None]]
) -> dict[str, list[str]]:
    """Per layer, entries whose version differs from their latest good run (or that have none)."""
    changed: dict[str, list[str]] = {}
    for layer, entries in catalog["entries"].items():
        latest = pointers.get(layer, {})
        changed[layer] = [
            key
            for key, info in entries.items()
            if not info["skip"] and ((latest.get(key) or {}).get("entry_version") != info["version"])
        ]
    return changed


def load_stored_catalog(store: OutputStore, catalog_id: str | None = None) -> dict[str, Any] | None:
    return get_json(store, layout.catalog_key(catalog_id) if catalog_id else layout.CURRENT_CATALOG)


def temp_checkout_dir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="oa-sources-")
