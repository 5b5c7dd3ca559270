"""`coverage` and `coverage_maps`: what the data covers, per country, US state and county, and the machine's maps.

The work is plain code in `oa_dagster/coverage/` (no Dagster); these assets run it on the store and show the
results: tables of countries, states and lost entries, and the maps as pictures. The lost-sources table lives on
`coverage` rather than an asset of its own: it comes from the same pass over the entries' runs and pointers.
"""

import base64
import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import dagster as dg

from oa_dagster.assets.links import link_metadata
from oa_dagster.coverage.keys import RENDER_GEOJSON_KEY, STATS_KEY, map_key, thumbnail_key
from oa_dagster.platform.store import get_json
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


INLINE_MARKDOWN_LIMIT = 1000  # Dagster's UI draws shorter markdown in place, longer behind "[Show Markdown]"


def map_markdown(name: str, thumbnail_url: str, url: str, thumbnail: bytes) -> str:
    """The map where a Dagster user looks first. Markdown shorter than `INLINE_MARKDOWN_LIMIT` is drawn in place
    in the asset's latest materialization and its events, at the picture's own size: so where the browser can
    fetch the map over HTTP (the download app, a public bucket), the thumbnail's URL (its hash in the query, so a
    new map is never hidden by the browser's cache), linked to the full map. Any other store (file:// without the
    download app, a private bucket) gets the thumbnail as a data: URL: too long to be drawn in place, it shows
    after one click on "[Show Markdown]", with `url_<map>` beside it."""
    if thumbnail_url.startswith(("http://", "https://")):
        version = hashlib.sha256(thumbnail).hexdigest()[:12]
        markdown = f"[![{name} coverage]({thumbnail_url}?v={version})]({url})"
        if len(markdown) < INLINE_MARKDOWN_LIMIT:
            return markdown
    return f"![{name} coverage](data:image/png;base64,{base64.b64encode(thumbnail).decode()})"


@dg.asset(
    group_name="downloads",
    deps=[COVERAGE],
    kinds={"python", "png"},
    owners=OWNERS,
    description="The coverage maps of the world, the USA and Europe (covered, partly covered and failing areas by "
    "country, state, county and sources' own areas; places too small to see as dots; a legend with the date and "
    "counts), drawn from coverage/render-world.geojson: coverage/render-{world,usa,europe}.png, and 400 px wide copies "
    "(render-*-thumbnail.png) that the latest materialization's metadata shows (map_world, map_usa, map_europe).",
)
def coverage_maps(context: dg.AssetExecutionContext, store: OutputStoreResource) -> dg.MaterializeResult:
    from oa_dagster.coverage.boundaries import load_boundaries
    from oa_dagster.coverage.maps import MAPS, render_map, render_thumbnail

    out = store.get_store()
    geojson = get_json(out, RENDER_GEOJSON_KEY)
    if geojson is None:
        raise dg.Failure(f"no {RENDER_GEOJSON_KEY} in the store: materialize coverage first")
    boundaries = load_boundaries()
    as_of = (get_json(out, STATS_KEY) or {}).get("created")
    metadata: dict[str, Any] = {"areas": len(geojson.get("features") or [])}
    for name, view in MAPS.items():
        png = render_map(view, geojson, boundaries, as_of)
        key = map_key(name)
        out.put_bytes(key, png)
        context.log.info(f"{key}: {view.width}x{view.height}, {len(png):,} bytes")
        small = render_thumbnail(view, geojson, boundaries, as_of)
        out.put_bytes(thumbnail_key(name), small)
        metadata[f"map_{name}"] = dg.MetadataValue.md(
            map_markdown(name, out.url(thumbnail_key(name)), out.url(key), small)
        )
        metadata[f"url_{name}"] = link_metadata(out.url(key))
    return dg.MaterializeResult(metadata=metadata)


COVERAGE_ASSETS = [coverage, coverage_maps]
