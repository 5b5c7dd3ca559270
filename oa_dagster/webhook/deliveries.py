"""GitHub webhook deliveries, stored durably: what the receiver (`hooks.py`) writes and the CI sensor reads.

No Dagster here: the receiver keeps accepting deliveries while Dagster is down or being upgraded, and the sensor
(in the code server) reads them later with an id cursor. One database holds the deliveries and the maintenance
switch, so every app process and the sensor see the same state: a SQLite file beside the local instance, or the
production instance's Postgres (`default_database_url`).

Ids are the sensor's cursor, so a row with a smaller id must never become visible after one with a larger id
(the sensor would skip it for good). SQLite has one writer at a time, which gives that order; on Postgres a
sequence hands out ids before commit, so inserts take a table lock that plain reads do not wait for.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from .database import SqlDatabase, StoreUnavailable, safe_reason, utc

__all__ = ["Delivery", "DeliveryFields", "DeliveryStore", "Recorded", "StoreUnavailable"]

PG_LOCK_TIMEOUT = "5s"  # GitHub gives up on a delivery after 10 s: a 503 comes before
MAINTENANCE_CACHE_SECONDS = 1.0
MAX_PAGE = 1000

metadata = sa.MetaData()

deliveries_table = sa.Table(
    "oa_webhook_deliveries",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("delivery_id", sa.String(100), nullable=False, unique=True),  # X-GitHub-Delivery
    sa.Column("event", sa.String(64), nullable=False),  # X-GitHub-Event
    sa.Column("action", sa.String(64)),
    sa.Column("repository", sa.String(255)),  # owner/name of the repository the hook belongs to
    sa.Column("pr_number", sa.Integer()),
    sa.Column("head_sha", sa.String(64)),  # PR head, or the pushed `after`; unknown for a comment
    sa.Column("ref", sa.Text()),  # push: the ref pushed; PR: the head branch
    sa.Column("before_sha", sa.String(64)),  # push only
    sa.Column("deleted", sa.Boolean()),  # push only: a branch deletion
    sa.Column("head_repository", sa.String(255)),  # PR: where the head lives (a fork), None once deleted
    sa.Column("base_sha", sa.String(64)),  # PR only
    sa.Column("merged", sa.Boolean()),  # PR only
    sa.Column("sender", sa.String(255)),  # who caused the event
    sa.Column("comment_author", sa.String(255)),  # issue_comment only
    sa.Column("author_association", sa.String(64)),  # issue_comment only: OWNER, MEMBER, CONTRIBUTOR, NONE...
    sa.Column("comment_body", sa.Text()),  # issue_comment only
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("payload", sa.Text(), nullable=False),  # the raw body, exactly as signed (UTF-8 JSON)
    sqlite_autoincrement=True,  # never reuse an id, even the last one after a delete: ids are the cursor
)

settings_table = sa.Table(
    "oa_webhook_settings",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text(), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

MAINTENANCE = "maintenance"


@dataclass(frozen=True, kw_only=True)
class DeliveryFields:
    """What a delivery says, taken from its headers and payload (`payloads.extract`)."""

    delivery_id: str
    event: str
    action: str | None = None
    repository: str | None = None
    pr_number: int | None = None
    head_sha: str | None = None
    ref: str | None = None
    before_sha: str | None = None
    deleted: bool | None = None
    head_repository: str | None = None
    base_sha: str | None = None
    merged: bool | None = None
    sender: str | None = None
    comment_author: str | None = None
    author_association: str | None = None
    comment_body: str | None = None


@dataclass(frozen=True, kw_only=True)
class Delivery(DeliveryFields):
    """A stored delivery; `payload` is None when the caller did not ask for it."""

    id: int
    received_at: datetime
    payload: str | None = None


@dataclass(frozen=True)
class Recorded:
    """The outcome of `record`: the delivery's row id, and whether it was there already (a redelivery)."""

    id: int
    duplicate: bool


@dataclass(frozen=True)
class MaintenanceState:
    on: bool
    updated_at: datetime | None  # None: never set


FIELD_NAMES = tuple(f.name for f in fields(DeliveryFields))


class DeliveryStore:
    """Deliveries and the maintenance switch in one SQL database (SQLite or Postgres), safe across threads and
    processes. Tables are created on first use; every database failure is raised as `StoreUnavailable`."""

    def __init__(
        self,
        url: str,
        *,
        maintenance_cache_seconds: float = MAINTENANCE_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = SqlDatabase(url, metadata, "deliveries database")
        self._cache_seconds = maintenance_cache_seconds
        self._clock = clock
        self._cached: tuple[float, bool] | None = None  # (read at, on)

    def describe(self) -> str:
        """The URL without its password, for logs and messages."""
        return self._db.describe()

    def close(self) -> None:
        self._db.close()

    def _connect(self, *, write: bool) -> AbstractContextManager[sa.Connection]:
        return self._db.connect(write=write)

    # -- deliveries -------------------------------------------------------------------------------------------

    def record(self, delivery: DeliveryFields, *, payload: str, received_at: datetime | None = None) -> Recorded:
        """Insert the delivery once: a redelivery (same delivery id, also when both arrive at the same moment)
        returns the first one's id with `duplicate=True`."""
        row = {name: getattr(delivery, name) for name in FIELD_NAMES}
        row.update(payload=payload, received_at=received_at or datetime.now(UTC))
        try:
            with self._connect(write=True) as conn:
                if conn.dialect.name == "postgresql":
                    # ids must become visible in id order (see the module docstring); plain reads go on
                    conn.exec_driver_sql(
                        f"SET LOCAL lock_timeout = '{PG_LOCK_TIMEOUT}'; "
                        f"LOCK TABLE {deliveries_table.name} IN EXCLUSIVE MODE"
                    )
                new_id = conn.execute(deliveries_table.insert().values(**row)).inserted_primary_key[0]
            return Recorded(int(new_id), duplicate=False)
        except sa_exc.IntegrityError as exc:
            existing = self._id_of(delivery.delivery_id)
            if existing is None:  # not the delivery id's uniqueness: a real bug, say so
                raise StoreUnavailable(f"deliveries database refused a row: {safe_reason(exc)}") from exc
            return Recorded(existing, duplicate=True)

    def _id_of(self, delivery_id: str) -> int | None:
        with self._connect(write=False) as conn:
            found = conn.execute(
                sa.select(deliveries_table.c.id).where(deliveries_table.c.delivery_id == delivery_id)
            ).scalar()
        return None if found is None else int(found)

    def deliveries_after(self, cursor: int, limit: int, *, with_payload: bool = True) -> list[Delivery]:
        """The deliveries with an id above `cursor`, oldest first, at most `limit` (1..1000): the sensor keeps the
        last id it handled as its cursor. Payloads can be large (a push lists its commits): leave them out with
        `with_payload=False` and fetch one with `payload(id)`."""
        if cursor < 0 or not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"cursor must be >= 0 and limit 1..{MAX_PAGE}, not {cursor} and {limit}")
        query = (
            self._select(with_payload)
            .where(deliveries_table.c.id > cursor)
            .order_by(deliveries_table.c.id)
            .limit(limit)
        )
        with self._connect(write=False) as conn:
            return [_delivery(row) for row in conn.execute(query).mappings()]

    def recent(self, limit: int) -> list[Delivery]:
        """The last `limit` deliveries, newest first, without payloads (for `oa-dagster hooks list`)."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be 1..{MAX_PAGE}, not {limit}")
        query = self._select(False).order_by(deliveries_table.c.id.desc()).limit(limit)
        with self._connect(write=False) as conn:
            return [_delivery(row) for row in conn.execute(query).mappings()]

    def payload(self, id: int) -> str | None:
        with self._connect(write=False) as conn:
            return conn.execute(sa.select(deliveries_table.c.payload).where(deliveries_table.c.id == id)).scalar()

    def count(self) -> int:
        with self._connect(write=False) as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(deliveries_table)).scalar_one())

    def closed_pull_requests(self, repository: str) -> dict[int, datetime]:
        """The pull requests of `repository` whose last opening or closing delivery closed them, with when:
        what the daily cleanup needs to tell a closed pull request's CI jobs (prunable) from an open one's."""
        columns = deliveries_table.c
        query = (
            sa.select(columns.pr_number, columns.action, columns.received_at)
            .where(
                columns.event == "pull_request",
                columns.repository == repository,
                columns.action.in_(("opened", "reopened", "closed")),
            )
            .order_by(columns.id)
        )
        last: dict[int, tuple[str, datetime]] = {}
        with self._connect(write=False) as conn:
            for number, action, received in conn.execute(query):
                if number is not None:
                    last[int(number)] = (action, utc(received))
        return {number: at for number, (action, at) in last.items() if action == "closed"}

    def prune(self, older_than: datetime) -> int:
        """Forget deliveries received before `older_than`; returns how many. Ids are never reused (the sensor's
        cursor stays valid): SQLite's AUTOINCREMENT, Postgres's sequence."""
        with self._connect(write=True) as conn:
            return conn.execute(deliveries_table.delete().where(deliveries_table.c.received_at < older_than)).rowcount

    @staticmethod
    def _select(with_payload: bool) -> sa.Select[Any]:
        columns = [c for c in deliveries_table.c if with_payload or c.name != "payload"]
        return sa.select(*columns)

    # -- the maintenance switch -------------------------------------------------------------------------------

    def maintenance_state(self) -> MaintenanceState:
        """The switch as stored now (no cache)."""
        with self._connect(write=False) as conn:
            row = conn.execute(
                sa.select(settings_table.c.value, settings_table.c.updated_at).where(
                    settings_table.c.name == MAINTENANCE
                )
            ).first()
        state = (
            MaintenanceState(False, None) if row is None else MaintenanceState(row.value == "on", utc(row.updated_at))
        )
        self._cached = (self._clock(), state.on)
        return state

    def cached_maintenance(self) -> bool | None:
        """The switch as read less than `maintenance_cache_seconds` ago, or None: lets the receiver skip both the
        query and the thread hop on most requests."""
        cached = self._cached
        if cached is None or self._clock() - cached[0] >= self._cache_seconds:
            return None
        return cached[1]

    def maintenance(self) -> bool:
        """Whether new deliveries are refused; another process's change is seen within the cache period."""
        cached = self.cached_maintenance()
        return self.maintenance_state().on if cached is None else cached

    def set_maintenance(self, on: bool) -> None:
        values = {"value": "on" if on else "off", "updated_at": datetime.now(UTC)}
        where = settings_table.c.name == MAINTENANCE
        try:
            with self._connect(write=True) as conn:
                if conn.execute(settings_table.update().where(where).values(**values)).rowcount == 0:
                    conn.execute(settings_table.insert().values(name=MAINTENANCE, **values))
        except sa_exc.IntegrityError:  # another process inserted it first: update that row
            with self._connect(write=True) as conn:
                conn.execute(settings_table.update().where(where).values(**values))
        self._cached = (self._clock(), on)


def _delivery(row: Mapping[str, Any]) -> Delivery:
    values = dict(row)
    values["received_at"] = utc(values["received_at"])
    return Delivery(**values)
