"""bench/bench_ui.py at a tiny scale: the history it writes is what the UI's GraphQL then shows (not timed), and
its bulk writer leaves the database as Dagster's own `handle_new_event` does."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any
from unittest import mock

import sqlalchemy as sa

from bench.bench_ui import local_home, measure_queries, seed
from bench.ui_history import HistoryShape, HistoryWriter, template_results
from tests.platform_helpers import create_instance_storage, postgres_or_skip, running_webserver_url

# Columns whose values are the wall clock or random, never the events': creation times (the database's
# CURRENT_TIMESTAMP default), the instance's own id; and the asset's surrogate key, which Dagster's upsert of the
# asset row draws from its sequence once per event, conflicting or not (the bulk writer upserts once per kind).
NOT_COMPARED = {"create_timestamp", "update_timestamp", "migration_completed", "run_storage_id", "asset_keys.id"}


def test_the_seeded_sets_are_what_the_asset_page_reads(tmp_path: Path) -> None:
    args = argparse.Namespace(
        partitions=20, sets=2, entries_per_run=10, workers=2, layers=["addresses", "parcels"], calls=1
    )
    with postgres_or_skip("oa_bench_ui_test") as url:
        home, env = local_home(tmp_path, url)
        with mock.patch.dict(os.environ, env):
            seeded = seed(home, tmp_path / "seed", args)
            # per set and layer: 2 run events + 19 materializations with 2 check evaluations each + 1 failure
            assert seeded["events"] == 2 * 2 * (2 * 2 + 19 * 3 + 1)
            with running_webserver_url(home, env, tmp_path / "webserver.log") as base:
                answers = measure_queries(base, args)["answers"]
    # set 1 failed entry 1, set 2 materialized it again and failed entry 2: only the latest attempt counts
    assert answers["partitions"] == {
        "materializedPartitions": 19,
        "failedPartitions": 1,
        "unmaterializedPartitions": 0,
        "materializingPartitions": 0,
        "keys": 20,
    }
    assert answers["latest_set"] == "set-02"
    assert answers["latest_metadata_entries"] >= 25  # the real builder's entries: urls, sample, preview, ...
    assert answers["runs_of_set"] == 4  # 20 entries in runs of 10, for each of the two layers


def table_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows, less the columns in NOT_COMPARED, in a stable order."""
    engine = sa.create_engine(url)
    try:
        tables: dict[str, list[tuple[Any, ...]]] = {}
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            for table in inspector.get_table_names():
                columns = [
                    c["name"]
                    for c in inspector.get_columns(table)
                    if c["name"] not in NOT_COMPARED and f"{table}.{c['name']}" not in NOT_COMPARED
                ]
                names = ", ".join(f'"{c}"' for c in columns)
                order = ", ".join(str(n) for n in range(1, len(columns) + 1))
                query = sa.text(f'SELECT {names} FROM "{table}" ORDER BY {order}')
                tables[table] = [tuple(row) for row in conn.execute(query)]
        return tables
    finally:
        engine.dispose()


def test_the_bulk_writer_leaves_the_rows_dagster_writes(tmp_path: Path) -> None:
    """The same small history written by the bulk writer and by `handle_new_event` one event at a time: every
    table the same, row by row (event ids, serialized events, check executions, tags, runs)."""
    templates = template_results(tmp_path / "work")
    seeded = {}
    for bulk in (True, False):
        shape = HistoryShape(
            partitions=10,
            sets=2,
            entries_per_run=5,
            failed_every=5,
            workers=1,
            layers=("addresses",),
            bulk=bulk,
            start=1.7e9,
        )
        base = tmp_path / ("bulk" if bulk else "dagster")
        base.mkdir()
        with postgres_or_skip("oa_bench_ui_rows") as url:
            home, env = local_home(base, url)
            with mock.patch.dict(os.environ, env):
                create_instance_storage(home, env)
                writer = HistoryWriter(home, templates, shape)
                writer.add_partitions()
                list(writer.write())
            seeded[bulk] = (writer.events, table_rows(url))
    (bulk_events, bulk_rows), (events, rows) = seeded[True], seeded[False]
    assert bulk_events == events
    assert rows["event_logs"], "the reference wrote events"
    assert sorted(bulk_rows) == sorted(rows)
    for table in rows:
        assert bulk_rows[table] == rows[table], table
