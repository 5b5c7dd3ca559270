"""A run's events written as Dagster's own `store_event` writes them, but a table at a time: the bench's history
is 1.6 million event-log rows, and one `store_event` per event (3 to 5 statements each) took hours.

`write_run_events` takes one run's events in the order a run logs them and leaves the database as calling
`instance.handle_new_event` on each in turn would (tests/test_bench_ui.py compares every table of the two):

- the event-log rows come from the storage's own `_event_to_row` (the serialized event and its index columns),
  with ids drawn from the table's sequence in the events' order, in one multi-row insert per stretch of events;
- the asset event tags are the storage's `_store_asset_event_tags` of those events, in one insert;
- the asset's row (`asset_keys`) gets the storage's `_store_asset_event` for the last event of each kind only:
  each kind writes its own columns, so the last one of each, in order, leaves what all of them would;
- the check rows (`asset_check_executions`) a planned check makes and its evaluation then updates are written
  once, as the update leaves them, after the run's other rows (the table's ids keep the same order);
- run events (start, success, failure) go through `instance.handle_new_event` itself, at their place: they
  also update the run's record, and are two a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import sqlalchemy as sa
from dagster._core.events import DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus as Status
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable, SqlEventLogStorageTable

from oa_dagster.assets.bulk_events import check_verdict

ASSET_EVENTS = (
    DagsterEventType.ASSET_MATERIALIZATION,
    DagsterEventType.ASSET_OBSERVATION,
    DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
)
CHECK_PLANNED = DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED
CHECK_EVALUATION = DagsterEventType.ASSET_CHECK_EVALUATION
CheckKey = tuple[str, str, str, str | None]  # asset key, check name, run id, partition


def write_run_events(instance: dg.DagsterInstance, events: Sequence[EventLogEntry]) -> None:
    """One run's events, in the order the run logs them."""
    checks: dict[CheckKey, dict[str, Any]] = {}
    stretch: list[EventLogEntry] = []
    for event in events:
        if event.is_dagster_event and event.get_dagster_event().is_job_event:
            _store_stretch(instance, stretch, checks)
            stretch = []
            instance.handle_new_event(event)
        else:
            stretch.append(event)
    _store_stretch(instance, stretch, checks)
    if checks:
        with instance.event_log_storage.index_connection() as conn:
            conn.execute(AssetCheckExecutionsTable.insert(), list(checks.values()))


def _store_stretch(
    instance: dg.DagsterInstance, events: list[EventLogEntry], checks: dict[CheckKey, dict[str, Any]]
) -> None:
    if not events:
        return
    storage: Any = instance.event_log_storage
    table = SqlEventLogStorageTable
    rows = [storage._event_to_row(event) for event in events]
    with storage.index_connection() as conn:
        sequence = sa.text("SELECT nextval(pg_get_serial_sequence('event_logs', 'id')) FROM generate_series(1, :n)")
        ids = [int(row[0]) for row in conn.execute(sequence, {"n": len(rows)})]
        conn.execute(table.insert(), [{**row, "id": event_id} for row, event_id in zip(rows, ids, strict=True)])
    pairs = list(zip(events, ids, strict=True))
    serialized = [row["event"] for row in rows]  # each event once, as its event-log row has it
    assets = [(e, i) for e, i in pairs if e.dagster_event_type in ASSET_EVENTS and e.get_dagster_event().asset_key]
    if assets:
        last_of_kind = {e.dagster_event_type: (e, i) for e, i in assets}
        with storage.index_transaction() as conn:
            storage._store_asset_event_tags(conn, [e for e, _ in assets], [i for _, i in assets])
            for event, event_id in sorted(last_of_kind.values(), key=lambda pair: pair[1]):
                storage._store_asset_event(conn, event, event_id)
    for (event, event_id), text in zip(pairs, serialized, strict=True):
        if event.dagster_event_type == CHECK_PLANNED:
            _planned_check(storage, event, event_id, text, checks)
        elif event.dagster_event_type == CHECK_EVALUATION:
            _check_evaluation(storage, event, event_id, text, checks)


def _planned_check(
    storage: Any, event: EventLogEntry, event_id: int, serialized: str, checks: dict[CheckKey, dict[str, Any]]
) -> None:
    """The rows `_store_asset_check_evaluation_planned` inserts: one per partition of the planned subset."""
    planned = event.get_dagster_event().event_specific_data
    keys = planned.partitions_subset.get_partition_keys() if planned.partitions_subset else [None]
    for partition in keys:
        key = (planned.asset_key.to_string(), planned.check_name, event.run_id, partition)
        checks[key] = {
            "asset_key": key[0],
            "check_name": key[1],
            "partition": partition,
            "run_id": event.run_id,
            "execution_status": Status.PLANNED.value,
            "evaluation_event": serialized,
            "evaluation_event_timestamp": storage._event_insert_timestamp(event),
            "evaluation_event_storage_id": event_id,
            "materialization_event_storage_id": None,
        }


def _check_evaluation(
    storage: Any, event: EventLogEntry, event_id: int, serialized: str, checks: dict[CheckKey, dict[str, Any]]
) -> None:
    """What `_update_asset_check_evaluation` does: the planned row gets the verdict, or a row is added."""
    if not event.run_id:
        raise ValueError("a run-less check evaluation: not what a layer run logs")
    evaluation = event.get_dagster_event().asset_check_evaluation_data
    key = (evaluation.asset_key.to_string(), evaluation.check_name, event.run_id, evaluation.partition)
    verdict = check_verdict(event, event_id, serialized)
    if key in checks:
        checks[key].update(verdict, evaluation_event_timestamp=storage._event_insert_timestamp(event))
    else:  # no planned row: Dagster inserts one (with a naive UTC timestamp of its own making)
        when = datetime.fromtimestamp(event.timestamp, UTC).replace(tzinfo=None)
        checks[key] = {
            "asset_key": key[0],
            "check_name": key[1],
            "run_id": event.run_id,
            "evaluation_event_timestamp": when,
            **verdict,
        }
