"""What an ArcGIS layer says about its own changes: the change-detection signal of an ArcGIS entry.

A layer whose service tracks edits (`editingInfo.lastEditDate`, and `dataLastEditDate` where the server has it)
is taken as unchanged only when those dates, the feature count and the object-id extent (min and max) are all
what they were: an edit date alone misses a layer truncated and reloaded by a script that keeps the date, a count
alone misses edits in place. A layer without `editingInfo` gives no signal and is always downloaded again.

The count and the extent are asked at once; the signal keeps the object-id field's name, so the next probe asks the
extent beside the metadata too (one round trip of waiting per layer, where a set's planning asks thousands).
"""

from __future__ import annotations

import json
from concurrent.futures import Future, ThreadPoolExecutor
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


def ask_at_once(
    client: ArcGISClient, oid_field: str | None, *, info: LayerInfo | None = None, extent_wanted: bool = True
) -> tuple[LayerInfo, int | None, Future[tuple[int, int] | None]]:
    """The layer's metadata (unless `info` is known), its feature count and the extent of `oid_field`, asked at the
    same time: one round trip of waiting instead of up to three (a set's planning asks every ArcGIS layer it
    launches, a dump asks before its pages).

    The metadata's and the count's errors are raised here; the extent's are kept in its (completed) future, for
    `signal_from`'s caller to judge. Without `extent_wanted` (a layer without `editingInfo` has no signal) the future
    holds None.
    """
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="oa-esri") as pool:
        if extent_wanted:
            extent = pool.submit(object_id_extent, client, oid_field)
        else:
            extent = Future()
            extent.set_result(None)
        if info is None:
            counting = pool.submit(client.count)
            info = client.metadata()
            count = counting.result()
        else:
            count = client.count()
    return info, count, extent


def signal_from(info: LayerInfo, count: int | None, extent: tuple[int, int] | None) -> dict[str, Any]:
    """The layer's signal from its editing dates, count and object-id extent; `{}` when a part is missing."""
    dates = editing_dates(info)
    if dates is None or count is None or (extent is None and count):
        return {}
    low, high = extent or (None, None)
    # the id field too: the next probe asks its extent beside the metadata, not after it
    return {"protocol": "esri", **dates, "count": count, "oid_min": low, "oid_max": high, "oid_field": info.oid_field}
