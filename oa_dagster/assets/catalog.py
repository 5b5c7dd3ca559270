"""`source_catalog`: the sources repository at a ref, validated, stored, and mirrored into partitions.

Building and reading the stored catalog is plain code in `platform/catalog.py`; this asset runs it and adds and
removes the layer assets' partitions: one per entry to process (entries marked `skip: true` are listed in the
metadata, not made partitions).

The catalog run of a set is also the set's planning: it probes the upstream of every entry the set launches
(`platform/set_probing.py`), keeps the answers as the set's plan, and the outputs of the entries it carries over
(`carry_over.py`), so the `set_launcher` sensor launches runs only for the others and writes the carried entries'
events.
"""

import time
from pathlib import Path
from typing import Any

import dagster as dg

from oa_dagster.platform import store_layout as layout
from oa_dagster.platform.catalog import (
    build_catalog,
    changed_entries,
    fetch_github_archive,
    local_commit,
    read_pointers,
    temp_checkout_dir,
)
from oa_dagster.platform.set_planning import launched_entries
from oa_dagster.platform.set_probing import plan_key, probe_set, save_plan
from oa_dagster.platform.set_probing import summary as probe_summary
from oa_dagster.platform.store import OutputStore, put_json
from oa_dagster.resources.processing import ProcessingSettings
from oa_dagster.resources.sources_repo import SourcesRepository
from oa_dagster.resources.store import OutputStoreResource
from oa_dagster.run_tags import LAUNCH_ALL, LAUNCH_CHANGED, LAUNCH_FULL, LAUNCH_TAG, SET_TAG

from . import OWNERS
from .carry_over import CarriedEntries, carried_key
from .layers import LAYER_PARTITIONS

MAX_LISTED = 200  # keys listed in metadata per layer; the stored catalog has them all


class CatalogConfig(dg.Config):
    ref: str | None = None  # branch, tag or commit; None = the repository's default branch


def sync_partitions(instance: dg.DagsterInstance, layer: str, wanted: list[str]) -> tuple[list[str], list[str]]:
    """Make the layer's dynamic partitions exactly `wanted`; new keys are appended in sorted order."""
    name = LAYER_PARTITIONS[layer].name
    assert name is not None
    existing = instance.get_dynamic_partitions(name)
    current = set(existing)
    added = sorted(set(wanted) - current)
    removed = [key for key in existing if key not in set(wanted)]
    if added:
        instance.add_dynamic_partitions(name, added)
    for key in removed:  # history stays: Dagster keeps a deleted partition's materializations
        instance.delete_dynamic_partition(name, key)
    return added, removed


def plan_set(
    context: dg.AssetExecutionContext,
    out: OutputStore,
    catalog: dict[str, Any],
    set_id: str,
    launch: str,
    processing: ProcessingSettings,
) -> dict[str, Any]:
    """Probe the upstreams of the set's entries, keep the plan and the carried entries' outputs; metadata to show."""
    options = processing.entry_options()
    # a full set carries nothing over: its runs ask each upstream themselves, ahead of processing its entry (the
    # answer judges the upstream's honesty), so its planning asks only the sizes of entries never run before
    policy = None if launch == LAUNCH_FULL else options.refresh_policy()
    launched = {layer: launched_entries(catalog, layer, launch) for layer in catalog["entries"]}
    started = time.monotonic()
    carried_entries = CarriedEntries(
        context.instance,
        out,
        launched if policy is not None else {},
        catalog_id=catalog["id"],
        set_id=set_id,
        warn_drop=processing.warn_drop,
    )
    try:  # the carried entries are kept as their probes answer
        probes = probe_set(
            catalog, launched, out, options, policy, workers=processing.probe_workers, on_carried=carried_entries
        )
    finally:
        carried_entries.close()
    seconds = time.monotonic() - started
    save_plan(out, set_id, catalog["id"], probes, seconds)
    started = time.monotonic()
    carried = carried_entries.save()
    carry_seconds = time.monotonic() - started
    counts = probe_summary(probes)
    context.log.info(
        f"{set_id}: {counts['probed']} upstreams asked, {carried} entries carried over, {counts['sized']} sized, "
        f"{counts['probe_failed']} probes failed ({seconds:.1f} s; carried entries stored in {carry_seconds:.1f} s)"
    )
    return {
        **{f"plan_{name}": n for name, n in counts.items()},
        "plan_probe_seconds": round(seconds, 1),
        "plan_carry_seconds": round(carry_seconds, 1),  # storing the carried entries (kept while probing)
        "plan": dg.MetadataValue.path(out.url(plan_key(set_id))),
        "plan_carried_events": dg.MetadataValue.path(out.url(carried_key(set_id))),
    }


def _listing(keys_: list[str]) -> str:
    shown = "\n".join(keys_[:MAX_LISTED])
    more = f"\n... and {len(keys_) - MAX_LISTED} more (see the stored catalog)" if len(keys_) > MAX_LISTED else ""
    return shown + more


@dg.asset(
    group_name="sources",
    kinds={"github", "json"},
    owners=OWNERS,
    description="Every source of the sources repository at a ref, validated; stored in the output store. "
    "Materializing it adds and removes the layer assets' partitions.",
)
def source_catalog(
    context: dg.AssetExecutionContext,
    config: CatalogConfig,
    sources_repo: SourcesRepository,
    store: OutputStoreResource,
    processing: ProcessingSettings,
) -> dg.MaterializeResult:
    out = store.get_store()
    ref = config.ref or sources_repo.default_ref
    with temp_checkout_dir() as tmp:
        if sources_repo.kind == "github":
            root, commit = fetch_github_archive(
                sources_repo.api_url, sources_repo.repo, ref, Path(tmp), token=sources_repo.current_token()
            )
            catalog = build_catalog(root, commit, ref=ref, origin=sources_repo.describe(ref), keep_source_dir=False)
        else:
            from oa_dagster.sources.load import sources_dir

            root = sources_dir(sources_repo.local_root())
            catalog = build_catalog(
                root, local_commit(root), ref=ref, origin=sources_repo.describe(), keep_source_dir=True
            )
    pointers = {layer: read_pointers(out, layer, entries) for layer, entries in catalog["entries"].items()}
    for layer, entries in catalog["entries"].items():
        for key, info in entries.items():
            pointer = pointers[layer].get(key) or {}
            info["seconds"] = pointer.get("seconds")
            info["peak_memory_mb"] = pointer.get("peak_memory_mb")  # with seconds: the task size of its next run
    changed = changed_entries(catalog, pointers)
    catalog["changed"] = changed
    set_id = context.run.tags.get(SET_TAG)
    catalog["set"] = set_id
    put_json(out, layout.catalog_key(catalog["id"]), catalog)
    put_json(out, layout.CURRENT_CATALOG, catalog)  # after the by-id copy: `current` always names a stored one

    metadata: dict[str, Any] = {
        "commit": catalog["commit"],
        "ref": ref,
        "origin": catalog["origin"],
        "catalog_id": catalog["id"],
        "catalog": dg.MetadataValue.path(out.url(layout.catalog_key(catalog["id"]))),
        "sources": len(catalog["sources"]),
        "invalid_sources": len(catalog["invalid"]),
        "invalid": dg.MetadataValue.json(catalog["invalid"]),
        "launch": context.run.tags.get(LAUNCH_TAG, "none"),
        "set": set_id or "",
    }
    for layer, entries in catalog["entries"].items():
        skipped = [key for key, info in entries.items() if info["skip"]]
        added, removed = sync_partitions(context.instance, layer, [key for key in entries if key not in skipped])
        metadata[f"{layer}_entries"] = len(entries)
        metadata[f"{layer}_skipped"] = len(skipped)  # `skip: true`: no partition
        metadata[f"{layer}_skipped_keys"] = dg.MetadataValue.text(_listing(skipped))
        metadata[f"{layer}_added"] = dg.MetadataValue.text(_listing(added))
        metadata[f"{layer}_removed"] = dg.MetadataValue.text(_listing(removed))
        metadata[f"{layer}_changed"] = len(changed[layer])
        metadata[f"{layer}_changed_keys"] = dg.MetadataValue.text(_listing(changed[layer]))
    for key, errors in catalog["invalid"].items():
        context.log.warning(f"invalid source {key}: {'; '.join(errors[:3])}")
    launch = metadata["launch"]
    if set_id and launch in (LAUNCH_ALL, LAUNCH_FULL, LAUNCH_CHANGED):  # after the partitions: their history is read
        metadata.update(plan_set(context, out, catalog, set_id, launch, processing))
    return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(catalog["id"]))


CATALOG_ASSETS = [source_catalog]
