"""Event-log writes that outlive a dropped database connection.

A layer run writes a few events per entry. The instance's database can drop one of them: a Postgres restart or
failover, a pooler or `pg_terminate_backend` closing the backend, SQLite locked for a moment. Dagster retries
opening a connection, not a statement whose connection died, so one lost write used to abort the whole batch
(the entries after it were never processed) with no retry, since set runs retry crashes only.

Each write is therefore retried with exponential backoff for a bounded time; if the instance stays unreachable
the write raises `InstanceUnreachable`, and the layer asset fails the run in a way its retry policy retries.
A write whose connection died after the row was stored may be written twice when retried: a duplicate event of
the same entry, which the set's count (by each entry's last event) and the UI (latest materialization) absorb.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

LOG = logging.getLogger(__name__)  # the run worker's stderr (compute logs): the event log is what is failing
Write = Callable[[str, Callable[[], None]], None]  # (what, write): one event-log write, retried
FIRST_DELAY_SECONDS = 0.5
MAX_DELAY_SECONDS = 30.0


class InstanceUnreachable(Exception):
    """The Dagster instance refused a write for longer than the retry budget."""

    def __init__(self, what: str, seconds: float, error: BaseException) -> None:
        super().__init__(
            f"the Dagster instance was unreachable for {seconds:.0f} s while recording {what}: {_first_line(error)}"
        )


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _connection_errors() -> tuple[type[BaseException], ...]:
    import sqlalchemy.exc as sa

    errors: list[type[BaseException]] = [sa.OperationalError, sa.InterfaceError, sa.DisconnectionError, sa.TimeoutError]
    try:
        import psycopg2

        errors += [psycopg2.OperationalError, psycopg2.InterfaceError]
    except ImportError:  # a deployment without Postgres
        pass
    return tuple(errors)


def connection_lost(error: BaseException) -> bool:
    """True when `error` (or what caused it) says the database connection failed, not that the write was wrong.

    Covers SQLAlchemy's and psycopg2's operational and interface errors ("server closed the connection
    unexpectedly", "terminating connection due to administrator command", SQLite "database is locked") and
    dagster-postgres giving up reconnecting, which chains the operational error.
    """
    errors = _connection_errors()
    return any(isinstance(link, errors) for link in _chain(error))


def write_retrying(
    write: Callable[[], None],
    what: str,
    budget_seconds: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Run `write`, retrying on a lost connection for up to `budget_seconds`; returns the retries it took.

    Other errors are raised at once. Backoff doubles from 0.5 s to at most 30 s between attempts.
    """
    started = clock()
    delay = FIRST_DELAY_SECONDS
    retries = 0
    while True:
        try:
            write()
            if retries:
                LOG.warning("%s: recorded after %d retries (%.1f s)", what, retries, clock() - started)
            return retries
        except Exception as exc:
            if not connection_lost(exc):
                raise
            waited = clock() - started
            if waited + delay > budget_seconds:
                LOG.error(
                    "%s: the Dagster instance is still unreachable after %.1f s (%s); giving up",
                    what,
                    waited,
                    _first_line(exc),
                )
                raise InstanceUnreachable(what, waited, exc) from exc
            retries += 1
            LOG.warning(
                "%s: lost the Dagster instance (%s); retry %d in %.1f s", what, _first_line(exc), retries, delay
            )
            sleep(delay)
            delay = min(delay * 2, MAX_DELAY_SECONDS)
