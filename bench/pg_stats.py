"""What a set adds to the instance's Postgres database: event-log rows, bytes, connections and transactions.

Read straight from the database (never through PgBouncer), before and after a set; `added` is the difference.
`sessions` (Postgres 14+) counts the server connections opened: Dagster's storage opens one per statement, a
pooler reuses a few. The statistics views are flushed about every second, so read them after a set's last
run has ended (the set's report comes a sensor tick later). The two reads themselves add 2 sessions.
"""

from __future__ import annotations

from typing import Any

COUNTERS = ("event_log_rows", "database_bytes", "sessions", "xact_commit", "tup_inserted")
TYPE_PREFIX = "events:"  # event-log rows by Dagster event type ("log line" for plain log messages)


def database_stats(postgres_url: str) -> dict[str, int]:
    """The database's event-log rows (in all and by type), size in bytes, and its pg_stat_database counters."""
    import psycopg2
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    conn = psycopg2.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password, dbname=url.database
    )
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT pg_stat_clear_snapshot()")  # this transaction sees the latest flushed counters
            cur.execute("SELECT coalesce(dagster_event_type, 'log line'), count(*) FROM event_logs GROUP BY 1")
            types = {str(kind): int(count) for kind, count in cur.fetchall()}
            cur.execute(
                "SELECT pg_database_size(current_database()), sessions, xact_commit, tup_inserted"
                " FROM pg_stat_database WHERE datname = current_database()"
            )
            size, sessions, commits, inserted = cur.fetchone()
    finally:
        conn.close()
    return {
        "event_log_rows": sum(types.values()),
        "database_bytes": int(size),
        "sessions": int(sessions),
        "xact_commit": int(commits),
        "tup_inserted": int(inserted),
        **{f"{TYPE_PREFIX}{kind}": count for kind, count in types.items()},
    }


def added(before: dict[str, int], after: dict[str, int], entries: int) -> dict[str, Any]:
    """The set's share of each counter, in total and per entry."""
    report: dict[str, Any] = {}
    for name in COUNTERS:
        delta = after[name] - before[name]
        report[f"pg_{name}_added"] = delta
        report[f"pg_{name}_per_entry"] = round(delta / max(1, entries), 2)
    kinds = sorted({k for k in after if k.startswith(TYPE_PREFIX)})
    by_type = {k[len(TYPE_PREFIX) :]: after[k] - before.get(k, 0) for k in kinds}
    report["pg_event_log_rows_by_type"] = {kind: n for kind, n in by_type.items() if n}
    return report
