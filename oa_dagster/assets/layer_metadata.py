"""What a layer entry's materialization (or failure observation) shows in the UI."""

from __future__ import annotations

import base64
import itertools
import json
from pathlib import Path
from typing import Any

import dagster as dg

from oa_dagster.platform.keys import MANIFEST

INLINE_PREVIEW_BYTES = 48_000  # a local store has no web URL: small previews are inlined so the UI shows them
SAMPLE_ROWS = 10


def read_sample(output_dir: Path, files: dict[str, str | None]) -> dict[str, Any]:
    """What the metadata needs from the run directory before it is removed: sample rows, a small preview."""
    found: dict[str, Any] = {"sample_rows": [], "preview_bytes": None}
    if files.get("output"):
        with (output_dir / files["output"]).open("rb") as lines:
            for line in itertools.islice(lines, SAMPLE_ROWS):
                props = json.loads(line).get("properties") or {}
                found["sample_rows"].append({k: "" if v is None else str(v) for k, v in props.items()})
    if files.get("preview"):
        path = output_dir / files["preview"]
        if path.stat().st_size <= INLINE_PREVIEW_BYTES:
            found["preview_bytes"] = path.read_bytes()
    return found


def _sample_table(rows: list[dict[str, str]]) -> dg.TableMetadataValue | None:
    if not rows:
        return None
    columns = list(rows[0])
    return dg.MetadataValue.table(
        records=[dg.TableRecord({c: row.get(c, "") for c in columns}) for row in rows],
        schema=dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in columns]))


def _preview(store: Any, key: str | None, inline: bytes | None) -> dg.MarkdownMetadataValue | None:
    """A markdown image: the stable URL, or for a local store (no web URL) the picture inlined if small."""
    if not key:
        return None
    url = store.url(key)
    if url.startswith("file:") and inline is not None:
        url = "data:image/png;base64," + base64.b64encode(inline).decode()
    return dg.MetadataValue.md(f"![preview]({url})")


def entry_metadata(result: dict[str, Any], store: Any, catalog: dict[str, Any], set_id: str,
                   previous_count: int | None) -> dict[str, Any]:
    published = result["published"]
    entry = result["entry"]
    decision = published.decision
    status = "skipped" if result.get("skipped") else ("promoted" if published.promoted else "held")
    licence = entry.license
    metadata: dict[str, Any] = {
        "status": status,
        "feature_count": int(result.get("feature_count") or 0),
        "previous_feature_count": previous_count if previous_count is not None else -1,
        "fingerprint": result.get("fingerprint") or "",
        "bbox": dg.MetadataValue.json({"bbox": result.get("bbox")}),
        "download_seconds": float(result.get("cache_seconds") or 0.0),
        "conform_seconds": float(result.get("process_seconds") or 0.0),
        "publish_seconds": round(float(result.get("publish_seconds") or 0.0), 3),  # files + pointer to the store
        "source_problem": result.get("source_problem") or "",
        "problem_detail": result.get("problem_detail") or "",
        "quality_gate": decision.describe() if decision else status,
        "entry_version": catalog["entries"][entry.layer][entry.key]["version"],
        "engine_version": result.get("engine_version") or "",
        "catalog_id": catalog["id"],
        "set": set_id,
        "url_manifest": dg.MetadataValue.url(store.url(f"{published.prefix}/{MANIFEST}")),  # lists the run's files
        "files": dg.MetadataValue.json({role: store.url(k) for role, k in published.file_keys.items()}),
        "licence": licence.get("text") or licence.get("url") or "",
        "attribution": entry.attribution or "",
    }
    for role, key in published.file_keys.items():
        metadata[f"url_{role}"] = dg.MetadataValue.url(store.url(key))
    if entry.website:
        metadata["website"] = dg.MetadataValue.url(entry.website)
    if licence.get("url"):
        metadata["licence_url"] = dg.MetadataValue.url(licence["url"])
    if (sample := _sample_table(result.get("sample_rows") or [])) is not None:
        metadata["sample"] = sample
    if (preview := _preview(store, published.file_keys.get("preview"), result.get("preview_bytes"))) is not None:
        metadata["preview"] = preview
    return metadata


def failure_metadata(result: dict[str, Any], set_id: str) -> dict[str, Any]:
    published = result.get("published")
    metadata: dict[str, Any] = {
        "status": "failed",
        "source_problem": result.get("source_problem") or "",
        "problem_detail": result.get("problem_detail") or "",
        "set": set_id,
    }
    if published is not None and published.file_keys.get("log"):
        metadata["log"] = published.file_keys["log"]
    return metadata
