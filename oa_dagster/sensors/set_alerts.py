"""The `set_alerts` sensor: tells a chat webhook when a set finished with newly broken entries, or when a set is
still running after its expected time.

It reads what the `set_launcher` sensor reports: each `set_report` materialization (one per finished set) and the
`set_progress` materializations (which sets are open, since when). Its cursor keeps the last events read, the open
sets and the stalled ones already reported, so each alert is posted once; an alert the webhook does not take is
tried again on the next tick (the cursor stays before it).

The first tick (no cursor) only takes its bearings: the latest events' positions and the open set they show. It
posts nothing, so turning the sensor on does not alert on a report that was there before it. An open set is
forgotten once it is `ABANDONED_AFTER` times its expected time old (its stalled alert went out long before; a set
that never finishes, e.g. its runs were deleted, would otherwise stay in the cursor for good), and its later
progress events are ignored, so it is not reported stalled again.
"""

from __future__ import annotations

import json
import time
from typing import Any

import dagster as dg

from oa_dagster.assets.sets import SET_PROGRESS, SET_REPORT
from oa_dagster.platform.set_alerts import AlertNotDelivered, broken_entries_message, post_alert, stalled_set_message
from oa_dagster.platform.set_report import report_key
from oa_dagster.platform.store import get_json
from oa_dagster.resources.set_alerts import SetAlertSettings
from oa_dagster.resources.store import OutputStoreResource


def _value(meta: Any, name: str, default: Any = None) -> Any:
    return meta[name].value if name in meta else default


ABANDONED_AFTER = 4  # an open set older than this many expected times is dropped from the cursor


def _records(instance: dg.DagsterInstance, key: dg.AssetKey, after: int | None) -> list[Any]:
    """Materializations after `after`, oldest first; with `after` None (the first tick) only the latest."""
    if after is None:
        return list(instance.fetch_materializations(key, limit=1).records)
    return list(
        instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, after_storage_id=after), limit=100, ascending=True
        ).records
    )


def _latest_id(instance: dg.DagsterInstance, key: dg.AssetKey) -> int:
    """The latest materialization's storage id (0 when there is none: every later one is new)."""
    records = _records(instance, key, None)
    return records[0].storage_id if records else 0


@dg.sensor(
    name="set_alerts",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Posts to the alert webhook (Slack-compatible) when a set finishes with newly broken entries or "
    "has not finished within its expected time.",
)
def set_alerts(
    context: dg.SensorEvaluationContext, set_alerts: SetAlertSettings, store: OutputStoreResource
) -> dg.SensorResult | dg.SkipReason:
    settings = set_alerts
    if not settings.webhook_url:
        return dg.SkipReason("no alert webhook configured (OA_ALERT_WEBHOOK_URL)")
    first_tick = not context.cursor
    state = json.loads(context.cursor) if context.cursor else {}
    open_sets: dict[str, dict[str, Any]] = state.get("open", {})  # set id -> started, latest summary
    stalled: list[str] = state.get("stalled", [])
    instance, out = context.instance, store.get_store()
    now = time.time()
    abandoned_before = now - ABANDONED_AFTER * settings.expected_hours * 3600

    def post(payload: dict[str, Any]) -> bool:
        try:
            post_alert(str(settings.webhook_url), payload, timeout=settings.timeout_seconds)
        except AlertNotDelivered as exc:
            context.log.warning(f"{exc}; trying again next tick")
            return False
        context.log.info(f"alert posted: {payload['text']}")
        return True

    if first_tick:
        report_after = _latest_id(instance, SET_REPORT)  # reports before the sensor started are history
    else:
        report_after = state.get("report_after") or 0
        for record in _records(instance, SET_REPORT, report_after):
            meta = record.asset_materialization.metadata
            set_id = str(_value(meta, "set", ""))
            if int(_value(meta, "newly_broken", 0) or 0) > 0:
                report = get_json(out, report_key(set_id))
                if report is not None and not post(broken_entries_message(report, out.url(report_key(set_id)))):
                    break  # this report again next tick
            report_after = record.storage_id
    progress_after = None if first_tick else state.get("progress_after") or 0
    for record in _records(instance, SET_PROGRESS, progress_after):
        meta = record.asset_materialization.metadata
        set_id = str(_value(meta, "set", ""))
        started = record.timestamp - float(_value(meta, "wall_seconds", 0.0) or 0.0)
        if _value(meta, "finished", False) or started < abandoned_before:
            open_sets.pop(set_id, None)
        else:
            open_sets[set_id] = {"started": started, "summary": str(_value(meta, "summary", ""))}
        progress_after = record.storage_id
    progress_after = progress_after or 0  # a first tick without progress: every later event is new
    open_sets = {k: v for k, v in open_sets.items() if float(v["started"]) >= abandoned_before}
    stalled = [set_id for set_id in stalled if set_id in open_sets]
    for set_id, known in open_sets.items():
        hours = (now - float(known["started"])) / 3600
        late = hours > settings.expected_hours and set_id not in stalled and not first_tick
        if late and post(stalled_set_message(set_id, hours, settings.expected_hours, known.get("summary", ""))):
            stalled.append(set_id)
    cursor = {
        "report_after": report_after,
        "progress_after": progress_after,
        "open": open_sets,
        "stalled": stalled,
    }
    return dg.SensorResult(cursor=json.dumps(cursor))


SET_ALERT_SENSORS = [set_alerts]
