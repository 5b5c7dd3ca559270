"""Carried-over entries recorded in bulk: a set's planning found their upstream unchanged, so no run processes them.

The catalog run of a set probes every launched entry (`platform/set_probing.py`); for each one it may carry over
it builds here the events a run would have written (`layers.entry_events`: the materialization with the same data
version and metadata, `status: unchanged`, and both check evaluations) and keeps them serialized in the store
(`sets/<set id>/carried.json`). The `set_launcher` sensor writes them as runless events once the set's runs have
been requested, a bounded number of seconds per tick, so the UI shows those partitions fresh with their data version
and checks, and `set_progress` counts them as unchanged, without a run per batch.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import dagster as dg

from oa_dagster.platform.set_probing import EntryProbe
from oa_dagster.platform.store import OutputStore, get_json, put_json

from .layers import entry_events, previous_counts

Event = dg.AssetMaterialization | dg.AssetCheckEvaluation
WRITE_BUDGET_SECONDS = 20.0  # per sensor tick: the rest is written at the next tick


def carried_key(set_id: str) -> str:
    return f"sets/{set_id}/carried.json"


def save_carried_events(
    instance: dg.DagsterInstance,
    store: OutputStore,
    probes: Mapping[str, Mapping[str, EntryProbe]],
    *,
    catalog_id: str,
    set_id: str,
    warn_drop: float,
) -> int:
    """Build and store the events of every carried entry; returns how many entries."""
    stored: dict[str, dict[str, str]] = {}
    for layer, entries in probes.items():
        carried = {key: p.check.carried for key, p in entries.items() if p.check is not None and p.check.carried}
        if not carried:
            continue
        previous = previous_counts(instance, layer, list(carried))
        stored[layer] = {
            key: dg.serialize_value(entry_events(result, store, catalog_id, set_id, previous[key], warn_drop))
            for key, result in carried.items()
        }
    put_json(store, carried_key(set_id), stored)
    return sum(len(v) for v in stored.values())


def write_carried_events(
    instance: dg.DagsterInstance,
    store: OutputStore,
    set_id: str,
    start: int,
    *,
    budget_seconds: float = WRITE_BUDGET_SECONDS,
) -> tuple[int, int]:
    """Write the carried entries' events from entry number `start` on, until done or out of time.

    Returns (entries written so far, entries in all); the caller keeps the first to go on at its next tick.
    """
    stored: dict[str, dict[str, str]] = get_json(store, carried_key(set_id)) or {}
    entries = [(layer, key, text) for layer in sorted(stored) for key, text in sorted(stored[layer].items())]
    started = time.monotonic()
    done = start
    for _layer, _key, text in entries[start:]:
        events: list[Any] = dg.deserialize_value(text, list)
        for event in events:
            instance.report_runless_asset_event(event)
        done += 1
        if time.monotonic() - started > budget_seconds:
            break
    return done, len(entries)
