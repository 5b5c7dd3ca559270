"""Publishing a built collection: upload under temporary keys, move to the final names, write the record last.

The slow, failure-prone part (uploading gigabytes) happens under temporary keys that no reader knows, so a
crash or a failed upload leaves the previous collection served. The final names are then set by the store's
`rename` (a rename on disk, a server-side copy on S3), and the record, which readers and the change detection
trust, comes last.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from oa_dagster.platform.store import OutputStore, put_json


def temporary_key(final_key: str, token: str) -> str:
    folder, _, name = final_key.rpartition("/")
    return f"{folder}/tmp-{token}-{name}" if folder else f"tmp-{token}-{name}"


def publish_files(
    store: OutputStore,
    files: dict[str, Path],
    copies: dict[str, Iterable[str]],
    record_key: str,
    record: dict[str, Any],
) -> None:
    """Upload `files` (final key -> local path), add `copies` (final key -> more keys), then the record.

    `put_file` is a multipart upload on S3 for big files (boto3's `upload_file`) and a temp file renamed into
    place locally; either way no reader sees a partial object.
    """
    token = uuid.uuid4().hex[:12]
    staged = {key: temporary_key(key, token) for key in files}
    try:
        for key, path in files.items():
            store.put_file(staged[key], path)
        for key in files:
            store.rename(staged[key], key)
            for extra in copies.get(key, ()):
                store.copy(key, extra)
        put_json(store, record_key, record)
    finally:
        for temporary in staged.values():
            with contextlib.suppress(Exception):  # never linked; the next build of this collection removes it
                store.delete(temporary)


def discard_stale_temporaries(store: OutputStore, final_keys: Iterable[str], *, older_than: float) -> list[str]:
    """Temporary keys a killed build left for these collections, last changed before `older_than` (epoch s).

    Only old ones: a build of the same collection running right now (a sensor and the schedule at once) keeps its
    own.
    """
    removed = []
    for final in final_keys:
        folder, _, name = final.rpartition("/")
        prefix = f"{folder}/tmp-" if folder else "tmp-"
        for item in store.list_objects(prefix):
            if item.key.endswith("-" + name) and item.modified < older_than:
                store.delete(item.key)
                removed.append(item.key)
    return removed


def remove_collection(store: OutputStore, record_key: str, keys: Iterable[str]) -> list[str]:
    """Remove a collection that has no entries any more: the record first, so nobody follows it to gone files."""
    removed = []
    for key in [record_key, *keys]:
        if store.exists(key):
            store.delete(key)
            removed.append(key)
    return removed
