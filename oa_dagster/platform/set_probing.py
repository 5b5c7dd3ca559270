"""A set's planning probes: every launched entry's upstream asked once, before any run starts.

A run costs seconds of Dagster overhead, so the entries of a weekly set whose upstream did not change should not
need one: the catalog run of a set asks every launched entry's upstream (`workers` at once, at most `per_host` to
one host) whether its data changed since its latest good output (`check_entry`: a conditional GET, an FTP
`SIZE`/`MDTM`, ArcGIS `editingInfo`), and how big it is when it has no previous seconds to be packed by
(`probe_size`). A full set (`oa/launch=full`) asks only those sizes: its runs ask each upstream themselves, ahead
of processing it, to judge its honesty. The answers are kept in the store as the set's plan (`sets/<set id>/plan.json`):

- an entry that may be carried over is recorded in bulk by the `set_launcher` sensor, not by a run;
- the runs skip the carried entries their range sweeps in and reuse the recorded answers of the others (each
  upstream is asked once per set);
- sizes drive the packing of entries never run before (`set_planning.estimate_seconds`).

A probe that fails is an entry processed normally: its run asks again and downloads. No Dagster here.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .change_detection import RefreshPolicy
from .entry_processing import EntryCheck, EntryOptions, check_entry, remember_probe
from .store import OutputStore, get_json, put_json

DEFAULT_PROBE_WORKERS = 128  # upstreams asked at once: small requests that mostly wait on their servers
PROBES_PER_HOST = 16  # of those, at most this many to one host: entries share servers (ArcGIS Online, a state GIS)


def plan_key(set_id: str) -> str:
    return f"sets/{set_id}/plan.json"


@dataclass(frozen=True)
class EntryProbe:
    """What the planning learnt about one entry."""

    key: str
    check: EntryCheck | None  # the change probe's verdict (None: no size-only probe needed one)
    size: Any = None  # fetch.upstream.UpstreamSize

    @property
    def carried(self) -> bool:
        return self.check is not None and self.check.carried_output is not None

    def record(self) -> dict[str, Any]:
        check = self.check
        probed = bool(check and check.plan.probe and check.signal)
        return {
            "carried": self.carried,
            "probed": probed,  # the upstream answered (or failed to): the run reuses it instead of asking again
            "unchanged": bool(check and check.unchanged),
            "signal": check.signal if check else "",
            "keep": dict(check.keep) if check else {},
            "size": {"unit": self.size.unit, "amount": self.size.amount} if self.size else None,
            "reason": check.plan.reason if check else "",
        }


# (layer, key, the entry's `entry_processing.carried_output` record), in the probe's thread
OnCarried = Callable[[str, str, dict[str, Any]], None]


def probe_entry(
    catalog: dict[str, Any],
    layer: str,
    key: str,
    store: OutputStore,
    options: EntryOptions,
    policy: RefreshPolicy | None,
    want_size: bool,
    on_carried: OnCarried | None = None,
) -> EntryProbe:
    """The change probe (with `policy`) and, when `want_size` and that told no size, the size probe.

    Never raises, but for `on_carried`, called with an entry that may be carried over (its errors are the caller's).
    """
    from oa_dagster.fetch import FetchOptions
    from oa_dagster.fetch.upstream import probe_size

    from .catalog import entry_from_catalog

    check = check_entry(catalog, layer, key, store, options, policy) if policy is not None else None
    if check is not None and check.carried_output is not None:
        remember_probe(store, check, layer, key)  # e.g. `conditional: false`, as a run carrying it over would
        if on_carried is not None:
            on_carried(layer, key, check.carried_output)
        return EntryProbe(key, check)
    size = check.size if check is not None else None
    if want_size and size is None:
        try:
            entry = entry_from_catalog(catalog, layer, key)
        except Exception:  # not a valid entry: its run says why
            return EntryProbe(key, check)
        size = probe_size(entry, options.fetch_options or FetchOptions())
    return EntryProbe(key, check, size)


def upstream_host(catalog: dict[str, Any], layer: str, key: str) -> str:
    """The `host:port` an entry's data comes from, as its source names it; "" when that cannot be read."""
    try:
        info = catalog["entries"][layer][key]
        items = catalog["sources"][info["source"]]["data"]["layers"][layer]
        data = next(item["data"] for item in items if item.get("name") == info["name"])
        return urlsplit(str(data).strip()).netloc.lower()
    except (KeyError, TypeError, ValueError, StopIteration):
        return ""


def probe_set(
    catalog: dict[str, Any],
    launched: Mapping[str, Iterable[str]],
    store: OutputStore,
    options: EntryOptions,
    policy: RefreshPolicy | None,
    *,
    workers: int = DEFAULT_PROBE_WORKERS,
    per_host: int = PROBES_PER_HOST,
    on_carried: OnCarried | None = None,
) -> dict[str, dict[str, EntryProbe]]:
    """Every launched entry probed, `workers` at once and at most `per_host` to one host; sizes asked only of
    entries without previous seconds.

    Without `policy` (a full set: nothing carried over) only those sizes are asked. `on_carried` gets each entry
    that may be carried over as soon as its probe says so: what it does overlaps the other probes' waiting.
    """
    jobs = [
        (layer, key, not catalog["entries"][layer].get(key, {}).get("seconds"))
        for layer, keys_ in launched.items()
        for key in keys_
    ]
    jobs = [job for job in jobs if policy is not None or job[2]]
    found: dict[str, dict[str, EntryProbe]] = {layer: {} for layer in launched}
    if not jobs:
        return found
    hosts = [upstream_host(catalog, layer, key) for layer, key, _ in jobs]
    limits = {host: threading.BoundedSemaphore(max(1, per_host)) for host in set(hosts) if host}

    def probe(job: tuple[str, str, bool], host: str) -> EntryProbe:
        with limits.get(host) or contextlib.nullcontext():
            return probe_entry(catalog, job[0], job[1], store, options, policy, job[2], on_carried)

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="oa-probe") as pool:
        answers = pool.map(probe, jobs, hosts)
        for (layer, key, _), answer in zip(jobs, answers, strict=True):
            found[layer][key] = answer
    return found


def save_plan(
    store: OutputStore, set_id: str, catalog_id: str, probes: Mapping[str, Mapping[str, EntryProbe]], seconds: float
) -> dict[str, Any]:
    plan = {
        "set": set_id,
        "catalog_id": catalog_id,
        "planned_at": time.time(),
        "probe_seconds": round(seconds, 1),
        "entries": {layer: {key: p.record() for key, p in entries.items()} for layer, entries in probes.items()},
    }
    put_json(store, plan_key(set_id), plan)
    return plan


def load_plan(store: OutputStore, set_id: str, catalog_id: str | None = None) -> dict[str, Any] | None:
    """The set's plan, if its planning ran (and was for that catalog)."""
    plan = get_json(store, plan_key(set_id)) if set_id else None
    if plan is None or (catalog_id is not None and plan.get("catalog_id") != catalog_id):
        return None
    return plan


def carried_keys(plan: Mapping[str, Any] | None, layer: str) -> set[str]:
    entries = (plan or {}).get("entries", {}).get(layer, {})
    return {key for key, record in entries.items() if record.get("carried")}


def recorded_answer(plan: Mapping[str, Any] | None, layer: str, key: str) -> Any:
    """The upstream's answer recorded by the planning (a `fetch.upstream.UpstreamAnswer`), None if not asked."""
    from oa_dagster.fetch.upstream import UpstreamAnswer, UpstreamSize

    record = (plan or {}).get("entries", {}).get(layer, {}).get(key)
    if not record or not record.get("probed"):
        return None
    size = UpstreamSize(**record["size"]) if record.get("size") else None
    return UpstreamAnswer(bool(record["unchanged"]), str(record["signal"]), dict(record.get("keep") or {}), size)


def sizes(plan: Mapping[str, Any] | None, layer: str) -> dict[str, dict[str, Any]]:
    entries = (plan or {}).get("entries", {}).get(layer, {})
    return {key: record["size"] for key, record in entries.items() if record.get("size")}


def summary(probes: Mapping[str, Mapping[str, EntryProbe]]) -> dict[str, int]:
    """Counts for the catalog's metadata: entries probed, carried over, sized, and whose probe failed."""
    every = [p for entries in probes.values() for p in entries.values()]
    return {
        "probed": sum(1 for p in every if p.check is not None and p.check.signal),
        "carried": sum(1 for p in every if p.carried),
        "sized": sum(1 for p in every if p.size is not None),
        "probe_failed": sum(1 for p in every if p.check is not None and p.check.signal.startswith("probe failed")),
    }
