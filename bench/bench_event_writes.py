"""What recording one entry costs the instance's Postgres database: connections and statements, by kind.

    python bench/bench_event_writes.py [--small 10] [--large 40] [--pgbouncer]

Runs two ranged `addresses` runs in this process (`--small` and `--large` tiny local CSV entries) on a throwaway
Postgres database, directly or through PgBouncer (`bench/pgbouncer.py`), counting every connection SQLAlchemy
opens and every statement it sends. The difference of the two runs divided by the difference of their entries
is the cost of one more entry, without the run's own (start, resources, step events). Reported per entry:
connections, statements by kind (verb and table), event-log rows by type, and seconds; twice, side by side:
with Dagster's connection per statement (`hold_db_connections=False`) and with the layer run's held connections
(`assets/held_connections.py`, the default).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TABLE = re.compile(r"\b(?:INTO|UPDATE|FROM)\s+(\w+)", re.IGNORECASE)


def statement_kind(sql: str) -> str:
    """`INSERT event_logs`, `SELECT asset_keys`, `NOTIFY`...: the verb and the first table named."""
    words = sql.split(None, 1)
    verb = words[0].upper() if words else "?"
    table = TABLE.search(sql)
    return f"{verb} {table.group(1)}" if table else verb


class Counter:
    """SQLAlchemy connect and statement events of every engine in this process."""

    def __init__(self) -> None:
        self.connections = 0
        self.statements: collections.Counter[str] = collections.Counter()

    def snapshot(self) -> tuple[int, collections.Counter[str]]:
        return self.connections, collections.Counter(self.statements)

    @contextlib.contextmanager
    def listening(self) -> Iterator[Counter]:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        def on_connect(*_: Any) -> None:
            self.connections += 1

        def on_statement(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            self.statements[statement_kind(statement)] += 1

        event.listen(Engine, "connect", on_connect)
        event.listen(Engine, "before_cursor_execute", on_statement)
        try:
            yield self
        finally:
            event.remove(Engine, "connect", on_connect)
            event.remove(Engine, "before_cursor_execute", on_statement)


def run_entries(instance: Any, resources: dict[str, Any], keys: list[str], counter: Counter) -> dict[str, Any]:
    """One ranged run over `keys`: its connections, statements by kind, event-log rows by type, seconds."""
    from tests.platform_helpers import materialize_range

    connections, statements = counter.snapshot()
    started = time.perf_counter()
    result = materialize_range(instance, resources, "addresses", keys[0], keys[-1])
    seconds = time.perf_counter() - started
    assert result.success, "the run failed"
    events = collections.Counter(
        e.dagster_event.event_type_value if e.dagster_event else "log line" for e in instance.all_logs(result.run_id)
    )
    return {
        "connections": counter.connections - connections,
        "statements": dict(counter.statements - statements),
        "events": dict(events),
        "seconds": seconds,
    }


def per_entry(small: dict[str, Any], large: dict[str, Any], small_entries: int, entries: int) -> dict[str, Any]:
    """(large - small) / entries for every figure: the cost of one more entry in a run; and the run's own
    connections (the small run's, less its entries')."""

    def diff(a: dict[str, int], b: dict[str, int]) -> dict[str, float]:
        kinds = sorted(set(a) | set(b), key=lambda k: -(b.get(k, 0) - a.get(k, 0)))
        return {k: round((b.get(k, 0) - a.get(k, 0)) / entries, 2) for k in kinds if b.get(k, 0) != a.get(k, 0)}

    statements = diff(small["statements"], large["statements"])
    connections = (large["connections"] - small["connections"]) / entries
    return {
        "connections_per_entry": round(connections, 2),
        "connections_per_run": round(small["connections"] - connections * small_entries, 1),
        "statements_per_entry": round(sum(statements.values()), 2),
        "statements_per_entry_by_kind": statements,
        "event_log_rows_per_entry_by_type": diff(small["events"], large["events"]),
        "seconds_per_entry": round((large["seconds"] - small["seconds"]) / entries, 4),
    }


def measure(args: argparse.Namespace, held: bool) -> dict[str, Any]:
    """One pass on its own throwaway database and instance: connections per statement (Dagster's NullPool) or held
    by the layer run (`assets/held_connections.py`)."""
    import dagster as dg

    from bench.pgbouncer import running_pgbouncer
    from tests.platform_helpers import city_sources, local, materialize_catalog, throwaway_postgres, write_csv

    with tempfile.TemporaryDirectory(prefix="oa-bench-writes-") as folder, contextlib.ExitStack() as stack:
        tmp = Path(folder)
        count = args.small + args.large
        files = {}
        for i in range(count):
            write_csv(tmp / f"d{i:04d}.csv", args.rows)
            files[f"xx/s{i:04d}"] = f"d{i:04d}.csv"
        sources = city_sources(tmp, files)
        url = stack.enter_context(throwaway_postgres("oa_bench_writes"))
        if args.pgbouncer:
            url = stack.enter_context(running_pgbouncer(url))
        home = tmp / "home"
        home.mkdir()
        (home / "dagster.yaml").write_text(
            f"storage:\n  postgres:\n    postgres_url: {url}\ntelemetry:\n  enabled: false\n"
        )
        instance = stack.enter_context(dg.DagsterInstance.from_config(str(home)))
        resources = local(tmp, sources, hold_db_connections=held)
        materialize_catalog(instance, resources)
        keys = sorted(f"{key}/city" for key in files)
        counter = stack.enter_context(Counter().listening())
        small = run_entries(instance, resources, keys[: args.small], counter)
        large = run_entries(instance, resources, keys[args.small :], counter)
        return per_entry(small, large, args.small, args.large - args.small)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=10)
    parser.add_argument("--large", type=int, default=40)
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--pgbouncer", action="store_true", help="the instance's storage through PgBouncer")
    args = parser.parse_args()
    # the same runs with Dagster's connection per statement, then with the layer run's held connections
    report: dict[str, Any] = {"per_statement": measure(args, held=False), "held": measure(args, held=True)}
    seconds = (report["per_statement"]["seconds_per_entry"], report["held"]["seconds_per_entry"])
    report |= {
        "seconds_per_entry_ratio": round(seconds[0] / seconds[1], 2) if seconds[1] > 0 else None,
        "runs": {"small": args.small, "large": args.large},
        "pgbouncer": args.pgbouncer,
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
