"""Held Postgres connections for a layer run, instead of a new connection for every statement.

dagster-postgres builds its storages' engines without a pool (`NullPool`), so a run worker opens a new database
connection, and Postgres forks a new backend, for every statement it sends: measured at about 17 connections per
entry of a set run (`bench/bench_event_writes.py`), most of what recording an entry costs. A layer run writes
events for hundreds of entries, one after another, so it keeps its connections instead: each storage gets a small
pool, sized for the nested checkouts of one event write (`store_event` holds a connection while it looks up a
table on another: two at once), with a liveness check (`pool_pre_ping`) each time a connection is
taken from it. That check keeps a connection cut from outside (a failover, a pooler, `pg_terminate_backend`) from
failing the next write: a dead connection is replaced before a statement is sent on it, as NullPool would have.

The webserver does the same through `optimize_for_webserver`, but with one pooled connection (the nested
checkouts would still connect) and a statement timeout meant for interactive reads; so the engines are built here,
the way that method builds them, on the storages' `_engine` attribute. That attribute is private to the
dagster-postgres version the project pins; `tests/test_held_connections.py` fails if it moves.

`ProcessingSettings.hold_db_connections=False` (`OA_PG_HELD_CONNECTIONS=off` in a deployment) keeps Dagster's
behaviour: a benchmark's baseline, or a database that limits connections so tightly that two per run are too many.
"""

from __future__ import annotations

import weakref
from typing import Any

import dagster as dg

POOL_SIZE = 2  # one event write nests two checkouts (measured: 1 reconnects, 3 or 6 save nothing more)
MAX_OVERFLOW = 8
POOL_RECYCLE_SECONDS = 3600  # reconnect hourly, as the webserver does: a long set run outlives idle timeouts

_held: weakref.WeakSet[dg.DagsterInstance] = weakref.WeakSet()


def hold_connections(instance: dg.DagsterInstance) -> bool:
    """Pool this process's connections to the instance's Postgres storages from now on; once per instance.

    Returns whether they are held: False on other storage (SQLite needs none).
    """
    if instance in _held:
        return True
    storages = [s for s in (instance.run_storage, instance.event_log_storage, instance.schedule_storage) if _on_pg(s)]
    if not storages:
        return False
    for storage in storages:
        storage._engine = _pooled_engine(storage)  # noqa: SLF001 (see the module's docstring)
    _held.add(instance)
    return True


def _on_pg(storage: Any) -> bool:
    if not type(storage).__module__.startswith("dagster_postgres."):
        return False  # without importing dagster_postgres: a third of a second of every run on SQLite
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    return isinstance(storage, PostgresRunStorage | PostgresEventLogStorage | PostgresScheduleStorage)


def _pooled_engine(storage: Any) -> Any:
    from dagster_postgres.utils import create_pg_engine

    kwargs: dict[str, Any] = {
        "isolation_level": "AUTOCOMMIT",  # as dagster-postgres: every statement commits on its own
        "pool_size": POOL_SIZE,
        "max_overflow": MAX_OVERFLOW,
        "pool_recycle": POOL_RECYCLE_SECONDS,
        "pool_pre_ping": True,
    }
    options = storage._engine.url.query.get("options")  # noqa: SLF001 (libpq options of the URL, kept as they are)
    if options:
        kwargs["connect_args"] = {"options": options}
    return create_pg_engine(storage.postgres_url, storage._token_provider, **kwargs)  # noqa: SLF001
