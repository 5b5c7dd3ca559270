"""The `set_alerts` sensor: tells a chat webhook when a set finished with newly broken entries, or when a set is
still running after its expected time.

It reads what the `set_launcher` sensor reports: each `set_report` materialization (one per finished set) and the
`set_progress` materializations (which sets are open, since when). Its cursor keeps the last events read, the open
sets and the stalled ones already reported, so each alert is posted once; an alert the webhook does not take is
tried again on the next tick (the cursor stays before it).
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


def _records(instance: dg.DagsterInstance, key: dg.AssetKey, after: int | None) -> list[Any]:
    """Materializations after `after`, oldest first; on the first tick only the latest (no alerts for history)."""
    if after is None:
        return list(instance.fetch_materializations(key, limit=1).records)
    return list(
        instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, after_storage_id=after), limit=100, ascending=True
        ).records
    )


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
    state = json.loads(context.cursor) if context.cursor else {}
    open_sets: dict[str, dict[str, Any]] = state.get("open", {})  # set id -> started, latest summary
    stalled: list[str] = state.get("stalled", [])
    instance, out = context.instance, store.get_store()

    def post(payload: dict[str, Any]) -> bool:
        try:
            post_alert(str(settings.webhook_url), payload, timeout=settings.timeout_seconds)
        except AlertNotDelivered as exc:
            context.log.warning(f"{exc}; trying again next tick")
            return False
        context.log.info(f"alert posted: {payload['text']}")
        return True

    report_after = state.get("report_after")
    for record in _records(instance, SET_REPORT, report_after):
        meta = record.asset_materialization.metadata
        set_id = str(_value(meta, "set", ""))
        if int(_value(meta, "newly_broken", 0) or 0) > 0:
            report = get_json(out, report_key(set_id))
            if report is not None and not post(broken_entries_message(report, out.url(report_key(set_id)))):
                break  # this report again next tick
        report_after = record.storage_id
    progress_after = state.get("progress_after")
    for record in _records(instance, SET_PROGRESS, progress_after):
        meta = record.asset_materialization.metadata
        set_id = str(_value(meta, "set", ""))
        if _value(meta, "finished", False):
            open_sets.pop(set_id, None)
        else:
            started = record.timestamp - float(_value(meta, "wall_seconds", 0.0) or 0.0)
            open_sets[set_id] = {"started": started, "summary": str(_value(meta, "summary", ""))}
        progress_after = record.storage_id
    now = time.time()
    for set_id, known in open_sets.items():
        hours = (now - float(known["started"])) / 3600
        late = hours > settings.expected_hours and set_id not in stalled
        if late and post(stalled_set_message(set_id, hours, settings.expected_hours, known.get("summary", ""))):
            stalled.append(set_id)
    cursor = {
        "report_after": report_after,
        "progress_after": progress_after,
        "open": open_sets,
        "stalled": stalled[-50:],
    }
    return dg.SensorResult(cursor=json.dumps(cursor))


SET_ALERT_SENSORS = [set_alerts]
