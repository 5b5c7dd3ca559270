"""`collections`: the regional downloads, one partition per area × layer, built from every entry's latest good output.

The work is plain code in `oa_dagster/collections/` (inputs, zip, GeoParquet, publishing, change detection); this
asset reads the current catalog, builds the partitions of its run and reports one materialization per partition.
One run can hold many partitions (a single-run backfill policy: a partition range, and in config the partitions of
that range to build), so a trigger is one run, not one per partition. One partition builds both licence classes of
its area and layer; an unchanged one finishes in the time it takes to read the entries' pointers. Launched by the
`collections_after_set` sensor and the `collections_schedule` (`sensors/collections.py`), which plan which
partitions changed first, or from the UI for any partitions (config `force: true` rebuilds even when nothing
changed). A partition whose build fails does not stop the others; the run fails at the end, naming it.
"""

import hashlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import dagster as dg

from oa_dagster.assets.links import link_metadata
from oa_dagster.collections.areas import AREA_IDS, area_label
from oa_dagster.collections.keys import LICENCE_LABELS
from oa_dagster.platform.catalog import load_stored_catalog
from oa_dagster.platform.store import OutputStore
from oa_dagster.resources.processing import ProcessingSettings
from oa_dagster.resources.store import OutputStoreResource
from oa_dagster.run_tags import DATA_VERSION_TAG
from oa_dagster.sources.model import LAYERS

from . import OWNERS

if TYPE_CHECKING:  # the build pulls numpy, pyarrow and shapely: imported by collection runs only, not at load
    from oa_dagster.collections.build import CollectionResult
    from oa_dagster.collections.inputs import AreaInputs

COLLECTIONS = dg.AssetKey("collections")
AREA_DIMENSION, LAYER_DIMENSION = "area", "layer"
COLLECTION_PARTITIONS = dg.MultiPartitionsDefinition(
    {
        AREA_DIMENSION: dg.StaticPartitionsDefinition(list(AREA_IDS)),
        LAYER_DIMENSION: dg.StaticPartitionsDefinition(list(LAYERS)),
    }
)
POOL = "oa_collections"
MISSING_LISTED = 200  # entries named in the metadata; the count and the record hold all of them


def collection_partition_key(area: str, layer: str) -> str:
    return str(dg.MultiPartitionKey({AREA_DIMENSION: area, LAYER_DIMENSION: layer}))


def area_and_layer(partition_key: str) -> tuple[str, str]:
    key = COLLECTION_PARTITIONS.get_partition_key_from_str(partition_key)
    return key.keys_by_dimension[AREA_DIMENSION], key.keys_by_dimension[LAYER_DIMENSION]


class CollectionsConfig(dg.Config):
    force: bool = False  # rebuild even when no entry's latest good run changed since the last build
    # the partitions of the run's range to build (a trigger's plan); empty: every partition of the run
    partitions: list[str] = []


def _data_version(results: "list[CollectionResult]") -> str:
    """Same inputs, same version: an unchanged rebuild shows as no change in the UI."""
    inputs = {r.licence: (r.record or {}).get("inputs", {}) for r in results}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def collection_metadata(store: OutputStore, inputs: "AreaInputs", results: "list[CollectionResult]") -> dict[str, Any]:
    missing = sorted(key for r in results for key in r.missing)
    problems = sorted({p for r in results for p in r.problems})
    records = [r for r in results if r.record]
    metadata: dict[str, Any] = {
        "area": f"{inputs.area} ({area_label(inputs.area)})",
        "layer": inputs.layer,
        "status": ", ".join(f"{r.licence}: {r.status}" for r in results),
        "entries": sum(r.record["entries"] for r in records),
        "features": sum(r.record["features"] for r in records),
        "size": sum(r.record["zip"]["size"] + r.record["parquet"]["size"] for r in records),
        "missing_count": len(missing),
        "missing": dg.MetadataValue.json(missing[:MISSING_LISTED]),
        "skipped_count": len(inputs.skipped),
        "problems": dg.MetadataValue.json(problems),
        "seconds": round(sum(r.seconds for r in results), 2),
    }
    rows = []
    for r in records:
        short = "sa" if r.licence == "share-alike" else "free"
        zip_url, parquet_url = store.url(r.record["zip"]["key"]), store.url(r.record["parquet"]["key"])
        metadata[f"{short}_zip_url"] = link_metadata(zip_url)
        metadata[f"{short}_parquet_url"] = link_metadata(parquet_url)
        metadata[f"{short}_zip_size"] = r.record["zip"]["size"]
        metadata[f"{short}_parquet_size"] = r.record["parquet"]["size"]
        rows.append(
            f"| {LICENCE_LABELS[r.licence]} | {r.status} | {r.record['entries']:,} | {r.record['features']:,} | "
            f"[zip]({zip_url}) ({r.record['zip']['size']:,} B) | "
            f"[GeoParquet]({parquet_url}) ({r.record['parquet']['size']:,} B) | {len(r.missing)} |"
        )
    if rows:
        header = (
            "| licence | status | entries | features | zip | GeoParquet | missing |\n|---|---|---|---|---|---|---|\n"
        )
        metadata["collections"] = dg.MetadataValue.md(header + "\n".join(rows))
    return metadata


@dg.asset(
    name="collections",
    partitions_def=COLLECTION_PARTITIONS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    output_required=False,  # one AssetMaterialization per partition built, none for a partition left out
    deps=[dg.AssetDep(dg.AssetKey(layer), partition_mapping=dg.AllPartitionMapping()) for layer in LAYERS],
    group_name="downloads",
    kinds={"python", "parquet"},
    owners=OWNERS,
    pool=POOL,
    description="Regional downloads per area × layer: a zip (GeoJSON lines, classic CSV for addresses, 0.1° "
    "summaries, README and LICENSE) and one GeoParquet file, freely shareable and share-alike apart, from every "
    "entry's latest good output. Rebuilt only when an entry's latest good run changed; one run builds many "
    "partitions.",
)
def collections(
    context: dg.AssetExecutionContext,
    config: CollectionsConfig,
    store: OutputStoreResource,
    processing: ProcessingSettings,
) -> Iterator[dg.AssetMaterialization]:
    wanted = set(config.partitions)
    partitions = [(key, *area_and_layer(key)) for key in context.partition_keys if not wanted or key in wanted]
    out = store.get_store()
    catalog = load_stored_catalog(out)
    if catalog is None:
        named = ", ".join(f"{area} {layer}" for _, area, layer in partitions)
        raise dg.Failure(
            f"collections {named}: no catalog in the store ({out.describe()}): materialize source_catalog first"
        )
    work = processing.work_root()
    work.mkdir(parents=True, exist_ok=True)
    from oa_dagster.collections.build import build_area

    failed: list[str] = []
    for partition_key, area, layer in partitions:
        try:
            inputs, results = build_area(
                out, catalog, layer, area, force=config.force, work_dir=work, log=context.log.info
            )
        except Exception as exc:  # one broken collection never stops the others of the run
            context.log.error(f"collections {area} {layer}: build failed: {type(exc).__name__}: {exc}")
            failed.append(f"{area} {layer} ({type(exc).__name__}: {exc})")
            continue
        yield dg.AssetMaterialization(
            asset_key=COLLECTIONS,
            partition=partition_key,
            metadata=collection_metadata(out, inputs, results),
            tags={DATA_VERSION_TAG: _data_version(results)},
        )
    if failed:
        raise dg.Failure(f"collections: {len(failed)} of {len(partitions)} failed: {'; '.join(failed)}")


COLLECTION_ASSETS = [collections]
