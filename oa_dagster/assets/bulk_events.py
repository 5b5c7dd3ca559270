"""Runless asset events written many to a database transaction: the carried-over entries of a set, in bulk.

`DagsterInstance.report_runless_asset_event` stores one event at a time, and each store opens its own connections
and commits: on SQLite a new engine and a committed (fsynced) transaction for the run shard, another for the
index shard, a third for an asset check's execution row; on Postgres a round trip and a commit per table. For the
~3 events of each of the hundreds of entries a weekly set carries over, those commits are most of the time.

`store_runless_events` writes the same rows `store_event` writes for a runless event (the event log row, the
asset's latest materialization and indexed tags, an asset check's execution row), in one transaction per shard,
and a check already evaluated runless for the partition gets its new evaluation (`_store_check_rows`).
The storage classes it writes through are Dagster's own SQL event log storages (`SqlEventLogStorage`: SQLite,
Postgres); on any other storage it falls back to `report_runless_asset_event`, one event at a time. The readers
(UI, `fetch_materializations`, check results, partition status) see the same records either way: the tests
compare them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import dagster as dg
from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
from dagster._core.events.log import EventLogEntry
from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID
from dagster._serdes import serialize_value
from dagster._time import get_current_timestamp

if TYPE_CHECKING:  # Dagster's SQL storages import SQLAlchemy: only where events are written, not at code load
    from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage

Event = dg.AssetMaterialization | dg.AssetCheckEvaluation


def _log_entry(event: Event, timestamp: float) -> EventLogEntry:
    """The entry `report_runless_asset_event` would build for the event."""
    if isinstance(event, dg.AssetMaterialization):
        kind, data = DagsterEventType.ASSET_MATERIALIZATION, StepMaterializationData(event)
    else:
        kind, data = DagsterEventType.ASSET_CHECK_EVALUATION, event
    dagster_event = DagsterEvent(event_type_value=kind.value, event_specific_data=data, job_name=RUNLESS_JOB_NAME)
    return EventLogEntry(
        user_message="",
        level=20,  # logging.INFO, as report_dagster_event records it
        job_name=RUNLESS_JOB_NAME,
        run_id=RUNLESS_RUN_ID,
        error_info=None,
        timestamp=timestamp,
        step_key=None,
        dagster_event=dagster_event,
    )


def check_verdict(entry: EventLogEntry, event_id: int, serialized: str) -> dict[str, Any]:
    """The columns a check evaluation sets on its execution row, as Dagster's storage sets them (also used by the
    UI benchmark's bulk writer, `bench/ui_bulk.py`); `serialized` is the entry as its event-log row holds it."""
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus as Status

    evaluation = entry.get_dagster_event().asset_check_evaluation_data
    target = evaluation.target_materialization_data
    return {
        "execution_status": (Status.SUCCEEDED if evaluation.passed else Status.FAILED).value,
        "evaluation_event": serialized,
        "evaluation_event_storage_id": event_id,
        "materialization_event_storage_id": target.storage_id if target else None,
        "partition": evaluation.partition,
    }


def _check_row(storage: SqlEventLogStorage, entry: EventLogEntry, event_id: int) -> dict[str, Any]:
    """The asset check execution row of a runless evaluation (as `_store_runless_asset_check_evaluation`)."""
    evaluation = entry.get_dagster_event().asset_check_evaluation_data
    return {
        "asset_key": evaluation.asset_key.to_string(),
        "check_name": evaluation.check_name,
        "run_id": entry.run_id,
        "evaluation_event_timestamp": storage._event_insert_timestamp(entry),  # noqa: SLF001
        **check_verdict(entry, event_id, serialize_value(entry)),
    }


def store_runless_events(instance: dg.DagsterInstance, events: Sequence[Event]) -> None:
    """Store the events as runless asset events, in order, in one transaction (per shard on SQLite)."""
    if not events:
        return
    from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

    storage = instance.event_log_storage
    if not isinstance(storage, SqlEventLogStorage) or not storage.supports_asset_checks:
        for event in events:
            instance.report_runless_asset_event(event)
        return
    now = get_current_timestamp()
    entries = [_log_entry(event, now) for event in events]
    if isinstance(storage, SqliteEventLogStorage):  # runless events have their own run shard, like any run
        with storage.run_connection(RUNLESS_RUN_ID) as conn:
            for entry in entries:
                conn.execute(storage.prepare_insert_event(entry))
    with storage.index_transaction() as conn:
        ids = [int(conn.execute(storage.prepare_insert_event(entry)).inserted_primary_key[0]) for entry in entries]
        stored = list(zip(entries, ids, strict=True))
        materializations = [
            (entry, event_id)
            for entry, event_id in stored
            if entry.dagster_event_type == DagsterEventType.ASSET_MATERIALIZATION
        ]
        if materializations:
            storage._store_asset_event_tags(  # noqa: SLF001
                conn, [entry for entry, _ in materializations], [event_id for _, event_id in materializations]
            )
            latest: dict[dg.AssetKey, tuple[EventLogEntry, int]] = {}
            for entry, event_id in materializations:
                latest[entry.get_dagster_event().asset_key] = (entry, event_id)  # type: ignore[index]
            for entry, event_id in latest.values():  # the asset's latest materialization: the last one written
                storage._store_asset_event(conn, entry, event_id)  # noqa: SLF001
        checks = [
            _check_row(storage, entry, event_id)
            for entry, event_id in stored
            if entry.dagster_event_type == DagsterEventType.ASSET_CHECK_EVALUATION
        ]
        _store_check_rows(conn, checks)


def _store_check_rows(conn: Any, rows: list[dict[str, Any]]) -> None:
    """Insert the check executions; a partition's check already evaluated runless gets the new evaluation.

    The executions table keeps one row per check, run and partition, and runless events share the run id "": the
    second runless evaluation of a partition's check (an entry carried over in two sets) is refused by its unique
    index (`report_runless_asset_event` raises). Here it replaces the first, so the check shows its latest result.
    """
    from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable as table

    new = []
    for row in rows:
        replaced = 0
        if row["partition"] is not None:  # NULL partitions are never equal: Dagster inserts a row each time
            where = (
                (table.c.asset_key == row["asset_key"])
                & (table.c.check_name == row["check_name"])
                & (table.c.run_id == row["run_id"])
                & (table.c.partition == row["partition"])
            )
            keep = ("asset_key", "check_name", "run_id", "partition")
            replaced = conn.execute(
                table.update().where(where).values(**{k: v for k, v in row.items() if k not in keep})
            ).rowcount
        if not replaced:
            new.append(row)
    if new:
        conn.execute(table.insert(), new)
