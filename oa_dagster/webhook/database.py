"""One SQL database (SQLite or Postgres) shared by the webhook receiver and the CI sensors, safe across threads
and processes: the deliveries (`deliveries.py`) and the GitHub reports waiting to be sent (`ci/outbox.py`).

Tables are created on first use; every database failure is raised as `StoreUnavailable` with a message that is
safe to log (never SQLAlchemy's text, which carries the statement and its parameters: payloads, comment bodies).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

# GitHub gives up on a delivery after 10 s: every wait below ends well before, so the answer is a 503, not a
# timeout GitHub reports without a status.
SQLITE_BUSY_SECONDS = 5.0
PG_CONNECT_SECONDS = 3
POOL_TIMEOUT_SECONDS = 5.0


class StoreUnavailable(Exception):
    """The database could not be reached or refused the work; the message is safe to log (no SQL, no values)."""


def safe_reason(exc: BaseException) -> str:
    """One line naming the failure: a DBAPI error's own first line, never SQLAlchemy's text with the statement
    and its parameters."""
    cause = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0][:300] if lines else 'no detail'}"


def utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def make_engine(url: str) -> sa.Engine:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = sa.create_engine(
            parsed, connect_args={"timeout": SQLITE_BUSY_SECONDS}, pool_timeout=POOL_TIMEOUT_SECONDS
        )

        @sa.event.listens_for(engine, "connect")
        def _wal(dbapi_connection: Any, _record: Any) -> None:
            # WAL: readers (the sensor, `hooks list`) never block the receiver's writes; concurrent writers wait
            # for each other up to the busy timeout instead of failing with "database is locked".
            # (the busy timeout is sqlite3's `timeout` argument)
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.close()

        return engine
    connect_args = {"connect_timeout": PG_CONNECT_SECONDS} if parsed.get_backend_name() == "postgresql" else {}
    # pre-ping: after a database restart the first delivery gets a fresh connection instead of a 503
    return sa.create_engine(parsed, connect_args=connect_args, pool_pre_ping=True, pool_timeout=POOL_TIMEOUT_SECONDS)


class SqlDatabase:
    """An engine for `url` whose `connect` creates `metadata`'s tables first and maps failures to
    `StoreUnavailable` naming `what`."""

    def __init__(self, url: str, metadata: sa.MetaData, what: str) -> None:
        self.engine = make_engine(url)
        self._metadata = metadata
        self._what = what
        self._ready = False
        self._lock = threading.Lock()
        # SQLite has one writer at a time and its busy handler waits by sleeping (up to 100 ms a try): with 8
        # concurrent clients the 99th percentile was 350-390 ms, 100-130 ms with the threads of one process queued
        # here instead (bench/bench_webhook.py). The busy timeout is left for other processes.
        sqlite = self.engine.url.get_backend_name() == "sqlite"
        self._write_lock: AbstractContextManager[Any] = threading.Lock() if sqlite else nullcontext()

    def describe(self) -> str:
        """The URL without its password, for logs and messages."""
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def connect(self, *, write: bool) -> Iterator[sa.Connection]:
        """A connection in a transaction (committed at the end), tables created first; database failures become
        `StoreUnavailable`."""
        try:
            self._create_tables()
            if not write:
                with self.engine.connect() as conn:
                    yield conn
                return
            with self._write_lock, self.engine.begin() as conn:
                yield conn
        except sa_exc.IntegrityError:
            raise  # a constraint: the caller's to decide (a redelivery, a concurrent insert)
        except (
            sa_exc.DatabaseError,  # also a corrupt file: "file is not a database"
            sa_exc.InterfaceError,
            sa_exc.TimeoutError,
            OSError,
        ) as exc:
            raise StoreUnavailable(f"{self._what} {self.describe()}: {safe_reason(exc)}") from exc

    def _create_tables(self) -> None:
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            if self.engine.url.get_backend_name() == "sqlite" and self.engine.url.database:
                Path(self.engine.url.database).parent.mkdir(parents=True, exist_ok=True)
            try:
                self._metadata.create_all(self.engine)
            except (sa_exc.ProgrammingError, sa_exc.IntegrityError):
                # another process created them between the check and the CREATE (Postgres): look again
                self._metadata.create_all(self.engine)
            self._ready = True
