"""`coverage` and `coverage_maps`: what the data covers, per country, US state and county, and the machine's maps.

The work is plain code in `oa_dagster/coverage/` (no Dagster); these assets run it on the store and show the
results: tables of countries, states and lost entries, and the maps as pictures. The lost-sources table lives on
`coverage` rather than an asset of its own: it comes from the same pass over the entries' runs and pointers.
"""

import base64
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import dagster as dg

from oa_dagster.assets.links import link_metadata
from oa_dagster.coverage.keys import RENDER_GEOJSON_KEY, map_key
from oa_dagster.platform.store import OutputStore, get_json
from oa_dagster.resources.store import OutputStoreResource
from oa_dagster.sources.model import LAYERS

from . import OWNERS

if TYPE_CHECKING:  # the coverage package pulls shapely, pyproj and pycountry: imported by its runs only
    from oa_dagster.coverage.lost_sources import LostEntry

COVERAGE = dg.AssetKey("coverage")
TABLE_ROWS = 100  # rows shown in the UI per table; the stored files have them all


def _region_table(rows: Sequence[dict[str, Any]], *, population: bool) -> dg.TableMetadataValue:
    columns = [
        dg.TableColumn("code", "string"),
        dg.TableColumn("name", "string"),
        dg.TableColumn("status", "string"),
        dg.TableColumn("sources", "int"),
        dg.TableColumn("entries_good", "int"),
        dg.TableColumn("entries_failing", "int"),
        *(dg.TableColumn(f"{layer}_features", "int") for layer in LAYERS),
        dg.TableColumn("covered_share", "float"),
        dg.TableColumn("good_share", "float"),
        dg.TableColumn("covered_km2", "float"),
    ]
    if population:
        columns.append(dg.TableColumn("covered_pop_est", "int"))
    records = []
    for row in sorted(rows, key=lambda r: (-r["sources"], r["code"]))[:TABLE_ROWS]:
        values: dict[str, Any] = {
            "code": row["code"],
            "name": row["name"],
            "status": row["status"] or "",
            "sources": row["sources"],
            "entries_good": sum(n["good"] for n in row["entries"].values()),
            "entries_failing": sum(n["failing"] for n in row["entries"].values()),
            **{f"{layer}_features": row["features"].get(layer, 0) for layer in LAYERS},
            "covered_share": row["covered_share"],
            "good_share": row["good_share"],
            "covered_km2": row["covered_km2"],
        }
        if population:
            values["covered_pop_est"] = row.get("covered_pop_est") or 0
        records.append(dg.TableRecord(values))
    return dg.MetadataValue.table(records=records, schema=dg.TableSchema(columns=columns))


def _lost_table(lost: "Sequence[LostEntry]") -> dg.TableMetadataValue:
    columns = ["source", "layer", "entry", "max_features", "last_good", "problem"]
    types = {"max_features": "int"}
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord(
                {
                    "source": row.source,
                    "layer": row.layer,
                    "entry": row.entry,
                    "max_features": row.max_features,
                    "last_good": row.last_good or "",
                    "problem": row.problem or "",
                }
            )
            for row in lost[:TABLE_ROWS]
        ],
        schema=dg.TableSchema(columns=[dg.TableColumn(c, types.get(c, "string")) for c in columns]),
    )


@dg.asset(
    group_name="downloads",
    deps=[dg.AssetKey("source_catalog"), *(dg.AssetKey(layer) for layer in LAYERS)],
    kinds={"python", "json"},
    owners=OWNERS,
    description="Where the sources are and what they cover, per country, US state and county (sources, entries "
    "good and failing, features per layer, covered area and population share), and the entries lost today. "
    "Writes coverage/stats.json, coverage/render-world.geojson and coverage/lost-sources.json.",
)
def coverage(context: dg.AssetExecutionContext, store: OutputStoreResource) -> dg.MaterializeResult:
    from oa_dagster.coverage.regions import AREA_METHOD, POPULATION_METHOD
    from oa_dagster.coverage.report import compute_coverage, write_coverage

    out = store.get_store()
    report = compute_coverage(out)
    keys = write_coverage(out, report)
    for problem in report.problems:
        context.log.warning(problem)
    placed = report.placements()
    metadata: dict[str, Any] = {
        "catalog_id": report.catalog_id,
        "set": (report.newest_set or {}).get("set_id") or "",
        "sources": len(report.sources),
        "sources_good": sum(1 for s in report.sources if s.good),
        "placements": dg.MetadataValue.json(placed),
        "unplaced": placed.get("unplaced", 0),
        "approximate": sum(1 for s in report.sources if s.placement.approximate),
        "countries": len(report.countries),
        "lost_entries": len(report.lost),
        "countries_table": _region_table(report.countries, population=True),
        "us_states_table": _region_table(report.states, population=False),
        "lost_sources": _lost_table(report.lost),
        "area_method": AREA_METHOD,
        "population_method": POPULATION_METHOD,
        "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in report.problems) or "none"),
    }
    for role, key in keys.items():
        metadata[f"url_{role}"] = link_metadata(out.url(key))
    return dg.MaterializeResult(metadata=metadata)


def _picture(out: OutputStore, name: str, key: str, png: bytes) -> dg.MarkdownMetadataValue:
    """A thumbnail inlined (the UI cannot show file:// or s3:// pictures), linked to the full map if it can be."""
    from oa_dagster.coverage.maps import thumbnail

    inline = f"![{name} coverage](data:image/png;base64,{base64.b64encode(thumbnail(png)).decode()})"
    url = out.url(key)
    return dg.MetadataValue.md(f"[{inline}]({url})" if url.startswith("http") else inline)


@dg.asset(
    group_name="downloads",
    deps=[COVERAGE],
    kinds={"python", "png"},
    owners=OWNERS,
    description="The machine's coverage maps of the world, the USA and Europe (good and failing areas by country, "
    "state, county and sources' own areas), drawn from coverage/render-world.geojson; coverage/render-*.png.",
)
def coverage_maps(context: dg.AssetExecutionContext, store: OutputStoreResource) -> dg.MaterializeResult:
    from oa_dagster.coverage.boundaries import load_boundaries
    from oa_dagster.coverage.maps import MAPS, render_map

    out = store.get_store()
    geojson = get_json(out, RENDER_GEOJSON_KEY)
    if geojson is None:
        raise dg.Failure(f"no {RENDER_GEOJSON_KEY} in the store: materialize coverage first")
    boundaries = load_boundaries()
    metadata: dict[str, Any] = {"areas": len(geojson.get("features") or [])}
    for name, view in MAPS.items():
        png = render_map(view, geojson, boundaries)
        key = map_key(name)
        out.put_bytes(key, png)
        context.log.info(f"{key}: {view.width}x{view.height}, {len(png):,} bytes")
        metadata[f"map_{name}"] = _picture(out, name, key, png)
        metadata[f"url_{name}"] = link_metadata(out.url(key))
    return dg.MaterializeResult(metadata=metadata)


COVERAGE_ASSETS = [coverage, coverage_maps]
