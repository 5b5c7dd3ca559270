"""Carried-over entries recorded in bulk: a set's planning found their upstream unchanged, so no run processes them.

The catalog run of a set probes every launched entry (`platform/set_probing.py`); for each one it may carry over it
keeps here (`CarriedEntries`, as the probe answers) the entry's latest good output as plain data
(`entry_processing.carried_output`) and the feature count of its latest materialization, in chunks of
`CHUNK_ENTRIES` entries of one layer (`sets/<set id>/carried/<layer>-<n>.json`, listed in order by
`sets/<set id>/carried.json`). The `set_launcher` sensor, once the set's runs have been requested, builds from them
the events a run would have written (`layers.entry_events`: the materialization with the same data version and
metadata, `status: unchanged`, and both check evaluations) and writes them as runless events, `WRITE_ENTRIES`
entries to a database transaction (`bulk_events.py`), a bounded number of seconds per tick, reading only the
chunks it writes. So the UI shows those partitions fresh with their data version and checks, and `set_progress`
counts them as unchanged, without a run per batch; and the planning, which the set's runs wait for, builds no event.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dagster as dg

from oa_dagster.platform.entry_processing import carried_result
from oa_dagster.platform.store import OutputStore, get_json, put_json

from .bulk_events import Event, store_runless_events
from .layers import entry_events, previous_counts

WRITE_BUDGET_SECONDS = 20.0  # per sensor tick: the rest is written at the next tick
CHUNK_ENTRIES = 200  # entries per stored chunk: a tick reads only the chunks it writes
WRITE_ENTRIES = 100  # entries per database transaction: short enough not to hold up the runs' own writes

# a stored carried entry: {"output": its `carried_output` record, "previous": feature count or None}; a set
# planned by an older version stored its serialized events instead
Carried = dict[str, Any] | str


def carried_key(set_id: str) -> str:
    """The list of the set's chunks of carried entries (what the catalog's metadata links)."""
    return f"sets/{set_id}/carried.json"


def chunk_key(set_id: str, layer: str, number: int) -> str:
    return f"sets/{set_id}/carried/{layer}-{number:04d}.json"


class CarriedEntries:
    """The entries a set's planning carries over, kept as their probes answer (plain data, no events yet).

    Passed to `set_probing.probe_set` as `on_carried`. The feature counts of the launched entries' latest
    materializations (what the quality check compares with) are read meanwhile in a thread of their own.
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
        self.kept: dict[str, dict[str, dict[str, Any]]] = {}

    def __call__(self, layer: str, key: str, output: dict[str, Any]) -> None:
        carried = {"output": output, "previous": self._previous[layer].result().get(key)}
        with self._lock:
            self.kept.setdefault(layer, {})[key] = carried

    def close(self) -> None:
        self._reader.shutdown(wait=True, cancel_futures=True)

    def save(self) -> int:
        """Store the entries in chunks and their list; returns how many entries."""
        chunks: list[dict[str, Any]] = []
        for layer in sorted(self.kept):
            keys = sorted(self.kept[layer])
            for number, first in enumerate(range(0, len(keys), CHUNK_ENTRIES)):
                part = keys[first : first + CHUNK_ENTRIES]
                key = chunk_key(self.set_id, layer, number)
                put_json(self.store, key, {k: self.kept[layer][k] for k in part})
                chunks.append({"key": key, "layer": layer, "entries": len(part)})
        entries = sum(c["entries"] for c in chunks)
        listing = {"entries": entries, "chunks": chunks, "catalog_id": self.catalog_id, "warn_drop": self.warn_drop}
        put_json(self.store, carried_key(self.set_id), listing)
        return entries


def _entries_from(store: OutputStore, listing: Mapping[str, Any], start: int) -> Iterator[Carried]:
    """Each carried entry from entry number `start` on, reading only the chunks needed."""
    if "chunks" not in listing:  # a set planned before chunks: every layer's events in the one file
        texts = [listing[layer][key] for layer in sorted(listing) for key in sorted(listing[layer])]
        yield from texts[start:]
        return
    first = 0
    for chunk in listing["chunks"]:
        if first + chunk["entries"] > start:
            stored: dict[str, Carried] = get_json(store, chunk["key"]) or {}
            yield from [stored[key] for key in sorted(stored)][max(0, start - first) :]
        first += chunk["entries"]


def _events_of(carried: Carried, store: OutputStore, listing: Mapping[str, Any], set_id: str) -> list[Event]:
    """The events of one carried entry: built from its output, or as serialized by a planning of an older version."""
    if isinstance(carried, str):
        return dg.deserialize_value(carried, list)
    result = carried_result(carried["output"])
    previous = carried["previous"]
    return entry_events(result, store, listing["catalog_id"], set_id, previous, listing["warn_drop"])


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
    for carried in _entries_from(store, listing, start):
        pending += _events_of(carried, store, listing, set_id)
        written += 1
        if written == WRITE_ENTRIES:
            store_runless_events(instance, pending)
            done, pending, written = done + written, [], 0
            if time.monotonic() - started >= budget:
                return done, total
    store_runless_events(instance, pending)
    return done + written, total
