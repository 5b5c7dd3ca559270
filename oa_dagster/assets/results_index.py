"""`results_index`: the download page and its machine-readable files at the store root (`index.html`, `index.json`,
`state.txt`, `licenses.json`).

Building it is plain code in `oa_dagster/results_index/`; this asset runs it on the configured store and reports
counts, the page's URL (through the download app when `OA_DOWNLOAD_URL` is set) and a short summary. It comes after
the collections and coverage assets but reads whatever of theirs is in the store, so it can run before either.
"""

import dagster as dg

from oa_dagster.assets.links import link_metadata
from oa_dagster.resources.store import OutputStoreResource
from oa_dagster.results_index import INDEX_HTML, INDEX_JSON, LICENSES_JSON, STATE_TXT, ResultsIndex
from oa_dagster.results_index import build_results_index as build

from . import OWNERS

MAX_WARNINGS = 50  # listed in metadata; the rest are counted


class ResultsIndexConfig(dg.Config):
    scan_runs: bool = True  # list `runs/` for each entry's newest run (failing entries); False: pointers alone


def summary_markdown(result: ResultsIndex, page_url: str) -> str:
    counts = ", ".join(f"{n:,} {status}" for status, n in result.status_counts().items() if n)
    lines = [
        f"**{result.features():,} features** to download from {len(result.rows):,} entries ({counts or 'none yet'}).",
        f"- collections: {len(result.collections)} ({', '.join(sorted({c.layer for c in result.collections}))})"
        if result.collections
        else "- collections: none built yet",
        f"- maps: {', '.join(result.maps)}" if result.maps else "- maps: none rendered yet",
        f"- licence groups: {result.licence_groups}",
        f"- page: [{INDEX_HTML}]({page_url})",
    ]
    return "\n".join(lines)


@dg.asset(
    group_name="downloads",
    deps=[dg.AssetKey(["collections"]), dg.AssetKey(["coverage"]), dg.AssetKey(["coverage_maps"])],
    kinds={"html", "json"},
    owners=OWNERS,
    description="The download page (index.html) and index.json, state.txt and licenses.json at the store root: "
    "collections, maps, and every entry's status and files. Reads whatever collections and maps exist.",
)
def results_index(
    context: dg.AssetExecutionContext, config: ResultsIndexConfig, store: OutputStoreResource
) -> dg.MaterializeResult:
    out = store.get_store()
    result = build(out, scan_runs=config.scan_runs)
    for warning in result.warnings:
        context.log.warning(warning)
    page_url = out.url(INDEX_HTML)
    counts = result.status_counts()
    metadata: dict[str, dg.RawMetadataValue] = {
        "url": link_metadata(page_url),
        "index_json": link_metadata(out.url(INDEX_JSON)),
        "state_txt": link_metadata(out.url(STATE_TXT)),
        "licenses_json": link_metadata(out.url(LICENSES_JSON)),
        "catalog_id": result.catalog_id or "",
        "entries": len(result.rows),
        **{f"entries_{status.replace(' ', '_')}": n for status, n in counts.items()},
        "features": result.features(),
        "collections": len(result.collections),
        "maps": len(result.maps),
        "licence_groups": result.licence_groups,
        "page_bytes": result.sizes[INDEX_HTML],
        "warnings": len(result.warnings),
        "summary": dg.MetadataValue.md(summary_markdown(result, page_url)),
    }
    if result.warnings:
        metadata["warning_list"] = dg.MetadataValue.md(
            "\n".join(f"- {w}" for w in result.warnings[:MAX_WARNINGS])
            + (f"\n- ... and {len(result.warnings) - MAX_WARNINGS} more" if len(result.warnings) > MAX_WARNINGS else "")
        )
    context.log.info(f"results index: {len(result.rows)} entries, {len(result.collections)} collections -> {page_url}")
    return dg.MaterializeResult(metadata=metadata)


RESULTS_INDEX_ASSETS = [results_index]
