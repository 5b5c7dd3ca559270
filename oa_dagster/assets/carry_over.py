"""Carried-over entries recorded in bulk: a set's planning found their upstream unchanged, so no run processes them.

The catalog run of a set probes every launched entry (`platform/set_probing.py`); for each one it may carry over it
builds here (`CarriedEvents`, as the probe answers) the events a run would have written (`layers.entry_events`: the
materialization with the same data version and metadata, `status: unchanged`, and both check evaluations) and keeps
them serialized in the store, in chunks of `CHUNK_ENTRIES` entries of one layer
(`sets/<set id>/carried/<layer>-<n>.json`, listed in order by `sets/<set id>/carried.json`). The `set_launcher`
sensor writes them as runless events once the set's runs have been requested, `WRITE_ENTRIES` entries to a database
transaction (`bulk_events.py`), a bounded number of seconds per tick, reading only the chunks it writes; so the UI
shows those partitions fresh with their data version and checks, and `set_progress` counts them as unchanged,
without a run per batch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dagster as dg

from oa_dagster.platform.store import OutputStore, get_json, put_json

from .bulk_events import Event, store_runless_events
from .layers import entry_events, previous_counts

WRITE_BUDGET_SECONDS = 20.0  # per sensor tick: the rest is written at the next tick
CHUNK_ENTRIES = 200  # entries per stored chunk: a tick reads only the chunks it writes
WRITE_ENTRIES = 100  # entries per database transaction: short enough not to hold up the runs' own writes


def carried_key(set_id: str) -> str:
    """The list of the set's chunks of carried events (what the catalog's metadata links)."""
    return f"sets/{set_id}/carried.json"


def chunk_key(set_id: str, layer: str, number: int) -> str:
    return f"sets/{set_id}/carried/{layer}-{number:04d}.json"


class CarriedEvents:
    """The serialized events of the entries a set's planning carries over, built as their probes answer.

    Passed to `set_probing.probe_set` as `on_carried`: each entry's events are built in its probe's thread, so the
    serializing overlaps the other probes' waiting on their servers; the feature counts of the launched entries'
    latest materializations (what the quality check compares with) are read meanwhile in a thread of their own.
    """

    def __init__(
        self,
        instance: dg.DagsterInstance,
        store: OutputStore,
        launched: Mapping[str, Iterable[str]],
        *,
        catalog_id: str,
        set_id: str,
        warn_drop: float,
    ) -> None:
        self.store, self.catalog_id, self.set_id, self.warn_drop = store, catalog_id, set_id, warn_drop
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="oa-previous")
        self._previous = {
            layer: self._reader.submit(previous_counts, instance, layer, list(keys_))
            for layer, keys_ in launched.items()
        }
        self._lock = threading.Lock()
        self.built: dict[str, dict[str, str]] = {}

    def __call__(self, layer: str, key: str, result: Any) -> None:
        previous = self._previous[layer].result().get(key)
        text = dg.serialize_value(
            entry_events(result, self.store, self.catalog_id, self.set_id, previous, self.warn_drop)
        )
        with self._lock:
            self.built.setdefault(layer, {})[key] = text

    def close(self) -> None:
        self._reader.shutdown(wait=True, cancel_futures=True)

    def save(self) -> int:
        """Store the events in chunks and their list; returns how many entries."""
        chunks: list[dict[str, Any]] = []
        for layer in sorted(self.built):
            keys = sorted(self.built[layer])
            for number, first in enumerate(range(0, len(keys), CHUNK_ENTRIES)):
                part = keys[first : first + CHUNK_ENTRIES]
                key = chunk_key(self.set_id, layer, number)
                put_json(self.store, key, {k: self.built[layer][k] for k in part})
                chunks.append({"key": key, "layer": layer, "entries": len(part)})
        entries = sum(c["entries"] for c in chunks)
        put_json(self.store, carried_key(self.set_id), {"entries": entries, "chunks": chunks})
        return entries


def _entries_from(store: OutputStore, listing: Mapping[str, Any], start: int) -> Iterator[str]:
    """The serialized events of each carried entry from entry number `start` on, reading only the chunks needed."""
    if "chunks" not in listing:  # a set planned before chunks: every layer's events in the one file
        texts = [listing[layer][key] for layer in sorted(listing) for key in sorted(listing[layer])]
        yield from texts[start:]
        return
    first = 0
    for chunk in listing["chunks"]:
        if first + chunk["entries"] > start:
            stored: dict[str, str] = get_json(store, chunk["key"]) or {}
            yield from [stored[key] for key in sorted(stored)][max(0, start - first) :]
        first += chunk["entries"]


def write_carried_events(
    instance: dg.DagsterInstance,
    store: OutputStore,
    set_id: str,
    start: int,
    *,
    budget_seconds: float | None = None,
) -> tuple[int, int]:
    """Write the carried entries' events from entry number `start` on, until done or out of time.

    Returns (entries written so far, entries in all); the caller keeps the first to go on at its next tick.
    `budget_seconds` defaults to `WRITE_BUDGET_SECONDS`.
    """
    budget = WRITE_BUDGET_SECONDS if budget_seconds is None else budget_seconds
    listing: dict[str, Any] = get_json(store, carried_key(set_id)) or {}
    total = listing["entries"] if "chunks" in listing else sum(len(v) for v in listing.values())
    started = time.monotonic()
    done = start
    pending: list[Event] = []
    written = 0
    for text in _entries_from(store, listing, start):
        pending += dg.deserialize_value(text, list)
        written += 1
        if written == WRITE_ENTRIES:
            store_runless_events(instance, pending)
            done, pending, written = done + written, [], 0
            if time.monotonic() - started >= budget:
                return done, total
    store_runless_events(instance, pending)
    return done + written, total
