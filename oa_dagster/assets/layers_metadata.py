"""What a layer entry's materialization (or failure / skip observation) shows in the UI."""

from __future__ import annotations

import base64
from typing import Any

import dagster as dg

from oa_dagster.assets.links import link_metadata
from oa_dagster.platform.entry_processing import EntryResult
from oa_dagster.platform.store_layout import MANIFEST


def _sample_table(rows: tuple[dict[str, str], ...]) -> dg.TableMetadataValue | None:
    if not rows:
        return None
    columns = list(rows[0])
    return dg.MetadataValue.table(
        records=[dg.TableRecord({c: row.get(c, "") for c in columns}) for row in rows],
        schema=dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in columns]),
    )


def _preview(store: Any, key: str | None, inline: bytes | None) -> dg.MarkdownMetadataValue | None:
    """A markdown image: the stable URL, or for a local store (no web URL) the picture inlined if small."""
    if not key:
        return None
    url = store.url(key)
    if url.startswith("file:") and inline is not None:
        url = "data:image/png;base64," + base64.b64encode(inline).decode()
    return dg.MetadataValue.md(f"![preview]({url})")


def entry_metadata(
    result: EntryResult, store: Any, catalog_id: str, set_id: str, previous_count: int | None
) -> dict[str, Any]:
    """An entry with output. `previous_feature_count` is left out for an entry's first materialization: a
    sentinel (it was -1) read as a count, and disagreed with the check's `previous`."""
    published, entry, state = result.published, result.entry, result.state
    assert published is not None and entry is not None and state is not None, "only an entry with output"
    decision = published.decision
    status = "unchanged" if result.unchanged else "promoted" if published.promoted else "held"
    licence = entry.license
    metadata: dict[str, Any] = {
        "status": status,
        "feature_count": int(state.feature_count or 0),
        "features_out_of_range": int(state.features_out_of_range or 0),  # left out: not in lon/lat range
        "fingerprint": state.fingerprint or "",
        "bbox": dg.MetadataValue.json({"bbox": state.bbox}),
        "download_seconds": float(state.cache_seconds or 0.0),
        "conform_seconds": float(state.process_seconds or 0.0),
        "publish_seconds": round(result.publish_seconds, 3),  # files + pointer to the store
        "source_problem": result.source_problem or "",
        "problem_detail": result.problem_detail or "",
        "quality_gate": decision.describe() if decision else status,
        "entry_version": result.entry_version,
        "engine_version": state.engine_version or "",
        "catalog_id": catalog_id,
        "set": set_id,
        "url_manifest": link_metadata(store.url(f"{published.prefix}/{MANIFEST}")),  # lists the run's files
        "files": dg.MetadataValue.json({role: store.url(k) for role, k in published.file_keys.items()}),
        "licence": licence.get("text") or licence.get("url") or "",
        "attribution": entry.attribution or "",
    }
    if previous_count is not None:
        metadata["previous_feature_count"] = previous_count
    metadata.update(_change_metadata(result))
    for role, key in published.file_keys.items():
        metadata[f"url_{role}"] = link_metadata(store.url(key))
    if entry.website:
        metadata["website"] = link_metadata(entry.website)
    if licence.get("url"):
        metadata["licence_url"] = link_metadata(licence["url"])
    if (sample := _sample_table(result.sample_rows)) is not None:
        metadata["sample"] = sample
    if (preview := _preview(store, published.file_keys.get("preview"), result.preview_png)) is not None:
        metadata["preview"] = preview
    return metadata


def _change_metadata(result: EntryResult) -> dict[str, Any]:
    """Change detection's part: `unchanged since <run>` and the signal used, or why the entry was processed."""
    metadata: dict[str, Any] = {}
    if result.unchanged:
        decided = (result.published.previous_good or {}).get("decided") if result.published else None
        metadata["refresh"] = f"unchanged since {result.unchanged_since}"
        metadata["unchanged_since"] = result.unchanged_since
        metadata["quality_gate"] = f"carried over ({decided or 'promoted'})"
    elif result.refresh:
        metadata["refresh"] = result.refresh
    if result.change_signal:
        metadata["change_signal"] = result.change_signal
    if result.validators_distrusted:
        metadata["validators_trusted"] = False
    return metadata


def failure_metadata(result: EntryResult, set_id: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "status": "failed",
        "source_problem": result.source_problem or "",
        "problem_detail": result.problem_detail or "",
        "set": set_id,
    }
    if result.published is not None and result.published.file_keys.get("log"):
        metadata["log"] = result.published.file_keys["log"]
    return metadata


def skipped_metadata(result: EntryResult, set_id: str) -> dict[str, Any]:
    """An entry the sources mark `skip: true` that a run was asked for anyway (a catalog older than the skip)."""
    return {"status": "skipped", "source_problem": result.source_problem or "", "set": set_id}
