"""What an ArcGIS layer says about its own changes: the change-detection signal of an ArcGIS entry.

A layer whose service tracks edits (`editingInfo.lastEditDate`, and `dataLastEditDate` where the server has it)
is taken as unchanged only when those dates, the feature count and the object-id extent (min and max) are all
what they were: an edit date alone misses a layer truncated and reloaded by a script that keeps the date, a count
alone misses edits in place. A layer without `editingInfo` gives no signal and is always downloaded again.
"""

from __future__ import annotations

import json
from typing import Any

from oa_dagster.errors import DownloadError, EsriTokenRequired
from oa_dagster.fetch.esri.client import ArcGISClient, LayerInfo
from oa_dagster.fetch.options import LimitExceeded


def editing_dates(info: LayerInfo) -> dict[str, Any] | None:
    """`lastEditDate` / `dataLastEditDate` (epoch milliseconds), or None when the layer does not track edits."""
    editing = info.raw.get("editingInfo")
    if not isinstance(editing, dict) or editing.get("lastEditDate") is None:
        return None
    return {"last_edit": editing.get("lastEditDate"), "data_last_edit": editing.get("dataLastEditDate")}


def _attribute(attributes: dict[str, Any], name: str) -> Any:
    """Servers differ in the case of `outStatisticFieldName` in their answer."""
    return next((v for k, v in attributes.items() if k.lower() == name), None)


def object_id_extent(client: ArcGISClient, oid_field: str | None) -> tuple[int, int] | None:
    """The lowest and highest object id: one `outStatistics` query, else the id list (as the dumper pages)."""
    if oid_field:
        statistics = [
            {"statisticType": kind, "onStatisticField": oid_field, "outStatisticFieldName": f"oid_{kind}"}
            for kind in ("min", "max")
        ]
        try:
            payload = client.request_json(
                "/query",
                {"where": "1=1", "outStatistics": json.dumps(statistics), "f": "json"},
                what="object id statistics",
            )
            attributes = (payload.get("features") or [{}])[0].get("attributes") or {}
            low, high = _attribute(attributes, "oid_min"), _attribute(attributes, "oid_max")
            if isinstance(low, int | float) and isinstance(high, int | float):
                return int(low), int(high)
        except (EsriTokenRequired, LimitExceeded):
            raise
        except (DownloadError, AttributeError, IndexError, TypeError):
            pass  # statistics unsupported: the id list below
    _, ids = client.object_ids()
    return (ids[0], ids[-1]) if ids else None


def layer_signal(client: ArcGISClient, info: LayerInfo, count: int | None) -> dict[str, Any]:
    """The layer's signal now, or `{}` when it has none (no `editingInfo`, no count or no object ids).

    Raises `DownloadError` when the server fails to answer (the caller decides what that means).
    """
    dates = editing_dates(info)
    if dates is None or count is None:
        return {}
    extent = object_id_extent(client, info.oid_field)
    if extent is None and count:
        return {}
    low, high = extent or (None, None)
    return {"protocol": "esri", **dates, "count": count, "oid_min": low, "oid_max": high}
