"""GitHub reports (commit statuses, results comments) written down before they are sent, so none is lost.

Each report is first recorded here, then sent. One GitHub could not take (down, or still rate limited after the
client's own retries) stays unsent with its error and attempt count, and `ci_reports_sensor` sends it again
with a growing backoff once GitHub is back. One row per target (a commit's status in our context, a pull
request's results comment) holds only the newest wanted state, with a version: a late re-send can never leave
an older state (`pending`) over a newer one (`success`), because a send that finds its row changed meanwhile
marks the row unsent again and the newest state goes out next.

Sending is compare-and-set too: a sender first claims the row's version (`claim`, a lease of `CLAIM_SECONDS`),
and a claimed row is not due. So the run posting its results comment and `ci_reports_sensor` re-sending it can
never both find no comment and both post one: whoever claims sends, the other leaves it. A newer state wanted
while the row is claimed is sent by the claim's holder right after (`sent` hands it back); a holder that dies
loses its claim when the lease ends, and the report is due again.

The rows live in the webhook deliveries database (a SQLite file beside the local instance, or its Postgres).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from oa_dagster.webhook.database import SqlDatabase, StoreUnavailable, utc

BACKOFF_SECONDS = 30.0  # the first re-send waits this long, doubling each time
MAX_BACKOFF_SECONDS = 3600.0
MAX_ERROR = 500
# how long a claim holds, by kind: a comment's is longer than a send with every retry of the client (two senders
# would both post it); a status's is short, since two sends of a status do no harm and a sender killed mid-send
# would otherwise hold back the job's next status that long
CLAIM_SECONDS = {"status": 60.0, "comment": 600.0}

metadata = sa.MetaData()

reports_table = sa.Table(
    "oa_ci_reports",
    metadata,
    sa.Column("target", sa.String(400), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # status | comment
    sa.Column("repo", sa.String(255), nullable=False),
    sa.Column("sha", sa.String(64)),  # status: the commit
    sa.Column("number", sa.Integer()),  # comment: the pull request
    sa.Column("job_key", sa.String(100), nullable=False),
    sa.Column("body", sa.Text(), nullable=False),  # JSON: state/description/context/target_url, or the comment
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("sent_version", sa.Integer()),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("last_error", sa.Text()),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("claimed_until", sa.DateTime(timezone=True)),  # a sender is sending the row's version until then
)

# a row whose newest version has not reached GitHub (never sent, or an older version sent)
NOT_SENT = sa.or_(reports_table.c.sent_version.is_(None), reports_table.c.sent_version != reports_table.c.version)


def _unclaimed(now: datetime) -> sa.ColumnElement[bool]:
    return sa.or_(reports_table.c.claimed_until.is_(None), reports_table.c.claimed_until <= now)


@dataclass(frozen=True)
class Report:
    """One thing to tell GitHub. `body`: the status's fields, or `{"body": markdown}` for the comment."""

    kind: str  # "status" or "comment"
    repo: str
    job_key: str
    body: dict[str, Any]
    sha: str | None = None
    number: int | None = None

    @property
    def target(self) -> str:
        """What a newer report replaces: the status of one commit in one context, or one pull request's comment."""
        if self.kind == "status":
            return f"status {self.repo}@{self.sha} {self.body.get('context', '')}"
        if self.kind == "comment":
            return f"comment {self.repo}#{self.number}"
        raise ValueError(f"report kind {self.kind!r} is not status or comment")


@dataclass(frozen=True)
class PendingReport:
    """A report not sent yet (or sent in an older version), as stored."""

    report: Report
    version: int
    attempts: int
    last_error: str | None
    updated_at: datetime


def backoff(attempts: int, first: float = BACKOFF_SECONDS) -> float:
    """Seconds before the next try after `attempts` failed ones (30 s, 1 min, 2 min, ... at most an hour)."""
    return min(MAX_BACKOFF_SECONDS, first * 2 ** max(0, attempts - 1))


class ReportOutbox:
    """The reports table; every database failure is raised as `StoreUnavailable`."""

    def __init__(
        self, url: str, *, backoff_seconds: float = BACKOFF_SECONDS, clock: Callable[[], float] = time.time
    ) -> None:
        self._db = SqlDatabase(url, metadata, "CI reports database")
        self._backoff = backoff_seconds
        self._clock = clock
        self._columns_checked = False

    def close(self) -> None:
        self._db.close()

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def _connect(self, *, write: bool) -> AbstractContextManager[sa.Connection]:
        if not self._columns_checked:
            self._add_missing_columns()
        return self._db.connect(write=write)

    def _add_missing_columns(self) -> None:
        """A table made by an older version lacks `claimed_until`: add it (nullable, so old rows stay valid)."""
        with self._db.connect(write=True) as conn:
            present = {column["name"] for column in sa.inspect(conn).get_columns(reports_table.name)}
            for column in reports_table.columns:
                if column.name not in present and column.nullable:
                    kind = column.type.compile(dialect=conn.dialect)
                    conn.exec_driver_sql(f"ALTER TABLE {reports_table.name} ADD COLUMN {column.name} {kind}")
        self._columns_checked = True

    def want(self, report: Report) -> int:
        """Record `report` as the newest wanted state of its target; returns its version (send it with that)."""
        now = self._now()
        values = {
            "kind": report.kind,
            "repo": report.repo,
            "sha": report.sha,
            "number": report.number,
            "job_key": report.job_key,
            "body": json.dumps(report.body),  # ASCII: a lone surrogate in a file name stays storable
            "attempts": 0,
            "last_error": None,
            "next_attempt_at": now,
            "updated_at": now,
        }
        where = reports_table.c.target == report.target
        for attempt in range(2):
            try:
                with self._connect(write=True) as conn:
                    current = conn.execute(sa.select(reports_table.c.version).where(where)).scalar()
                    if current is None:
                        conn.execute(reports_table.insert().values(target=report.target, version=1, **values))
                        return 1
                    # compare-and-set: another writer's version in between makes this update miss, and we retry
                    done = conn.execute(
                        reports_table.update()
                        .where(where, reports_table.c.version == current)
                        .values(version=current + 1, **values)
                    ).rowcount
                    if done:
                        return int(current) + 1
            except sa_exc.IntegrityError:  # another writer inserted the target first: update it instead
                if attempt:
                    raise
        raise StoreUnavailable(f"CI reports database: {report.target} kept changing while being written")

    def claim(self, report: Report, version: int, seconds: float | None = None) -> bool:
        """Take the right to send `version` for `seconds` (`CLAIM_SECONDS` of its kind): False when the row moved
        on, was sent, or another sender holds it (that sender sends the newest version when done)."""
        seconds = CLAIM_SECONDS[report.kind] if seconds is None else seconds
        now = self._now()
        where = (reports_table.c.target == report.target) & (reports_table.c.version == version)
        with self._connect(write=True) as conn:
            claimed = conn.execute(
                reports_table.update()
                .where(where, NOT_SENT, _unclaimed(now))
                .values(claimed_until=now + timedelta(seconds=seconds))
            ).rowcount
        return bool(claimed)

    def sent(self, report: Report, version: int) -> PendingReport | None:
        """`version` reached GitHub; the claim ends. If the row moved on meanwhile, the newer state still has to go
        (and the one just sent may be older than what GitHub showed before): the row stays unsent and is returned,
        for the caller to claim and send now."""
        where = reports_table.c.target == report.target
        with self._connect(write=True) as conn:
            done = conn.execute(
                reports_table.update()
                .where(where, reports_table.c.version == version)
                .values(sent_version=version, last_error=None, claimed_until=None)
            ).rowcount
            if done:
                return None
            conn.execute(reports_table.update().where(where).values(sent_version=None, claimed_until=None))
            row = conn.execute(sa.select(reports_table).where(where)).mappings().first()
        return None if row is None else _pending(row)

    def give_up(self, report: Report, version: int, error: str) -> None:
        """GitHub refused `version` for good (a 4xx that is no rate limit): keep the error, never send it again."""
        where = (reports_table.c.target == report.target) & (reports_table.c.version == version)
        with self._connect(write=True) as conn:
            conn.execute(
                reports_table.update()
                .where(where)
                .values(sent_version=version, last_error=f"gave up: {error}"[:MAX_ERROR])
            )
            conn.execute(
                reports_table.update().where(reports_table.c.target == report.target).values(claimed_until=None)
            )

    def failed(self, report: Report, version: int, error: str) -> None:
        """`version` could not be sent: count the attempt, keep the error, wait before the next one."""
        where = (reports_table.c.target == report.target) & (reports_table.c.version == version)
        with self._connect(write=True) as conn:
            conn.execute(
                reports_table.update().where(reports_table.c.target == report.target).values(claimed_until=None)
            )
            attempts = conn.execute(sa.select(reports_table.c.attempts).where(where)).scalar()
            if attempts is None:  # replaced meanwhile: the newer version has its own tries (due now)
                return
            conn.execute(
                reports_table.update()
                .where(where)
                .values(
                    attempts=attempts + 1,
                    last_error=error[:MAX_ERROR],
                    next_attempt_at=self._now() + timedelta(seconds=backoff(attempts + 1, self._backoff)),
                )
            )

    def due(self, limit: int = 100) -> list[PendingReport]:
        """Unsent reports whose backoff has passed and that no sender is sending, oldest first."""
        columns = reports_table.c
        now = self._now()
        query = (
            sa.select(reports_table)
            .where(NOT_SENT, columns.next_attempt_at <= now, _unclaimed(now))
            .order_by(columns.updated_at)
            .limit(limit)
        )
        with self._connect(write=False) as conn:
            return [_pending(row) for row in conn.execute(query).mappings()]

    def pending_statuses(self, older_than: datetime, limit: int = 100) -> list[PendingReport]:
        """Statuses whose newest wanted state is `pending`, last changed before `older_than`, oldest first: what
        the CI sensor's sweep checks for a run behind them. (`want` writes the body with `json.dumps`' default
        separators and escapes, so no text inside a field can look like the state.)"""
        columns = reports_table.c
        query = (
            sa.select(reports_table)
            .where(
                columns.kind == "status",
                columns.body.contains('"state": "pending"', autoescape=True),
                columns.updated_at < older_than,
            )
            .order_by(columns.updated_at)
            .limit(limit)
        )
        with self._connect(write=False) as conn:
            rows = [_pending(row) for row in conn.execute(query).mappings()]
        return [row for row in rows if row.report.body.get("state") == "pending"]

    def unsent(self, job_key: str | None = None) -> list[PendingReport]:
        """Every unsent report (of one job), whatever its backoff: for metadata and tests."""
        columns = reports_table.c
        query = sa.select(reports_table).where(NOT_SENT)
        if job_key is not None:
            query = query.where(columns.job_key == job_key)
        with self._connect(write=False) as conn:
            return [_pending(row) for row in conn.execute(query.order_by(columns.updated_at)).mappings()]

    def prune(self, older_than: datetime) -> int:
        """Forget sent reports last changed before `older_than`; returns how many."""
        columns = reports_table.c
        with self._connect(write=True) as conn:
            return conn.execute(
                reports_table.delete().where(columns.sent_version == columns.version, columns.updated_at < older_than)
            ).rowcount


def _pending(row: Any) -> PendingReport:
    report = Report(
        kind=row["kind"],
        repo=row["repo"],
        job_key=row["job_key"],
        body=json.loads(row["body"]),
        sha=row["sha"],
        number=row["number"],
    )
    return PendingReport(report, int(row["version"]), int(row["attempts"]), row["last_error"], utc(row["updated_at"]))
