"""A layer run on Postgres keeps its database connections (`assets/held_connections.py`) instead of opening one
per statement, and a held connection cut from outside is replaced before a statement is sent on it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from bench.bench_event_writes import Counter
from tests.fault_helpers import terminate_connections
from tests.platform_helpers import (
    city_sources,
    local,
    materialize_catalog,
    materialize_range,
    partition_status,
    postgres_or_skip,
    write_csv,
)

ENTRIES = 12


@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgres_or_skip("oa_held") as url:
        yield url


def _twelve_cities(tmp: Path, **settings: Any) -> tuple[dict, list[str]]:
    files = {}
    for i in range(ENTRIES):
        write_csv(tmp / f"d{i:02d}.csv", 5)
        files[f"xx/s{i:02d}"] = f"d{i:02d}.csv"
    return local(tmp, city_sources(tmp, files), **settings), sorted(f"{key}/city" for key in files)


def _connections_of_a_run(pg_url: str, tmp: Path, **settings: Any) -> int:
    """The database connections a 12-entry `addresses` run opens."""
    tmp.mkdir()
    resources, keys = _twelve_cities(tmp, **settings)
    with dg.instance_for_test(overrides={"storage": {"postgres": {"postgres_url": pg_url}}}) as instance:
        materialize_catalog(instance, resources)
        with Counter().listening() as counter:
            assert materialize_range(instance, resources, "addresses", keys[0], keys[-1]).success
        statuses = partition_status(instance, "addresses", keys)
    assert set(statuses.values()) == {dg.AssetPartitionStatus.MATERIALIZED}
    return counter.connections


def test_a_layer_run_holds_its_connections(pg_url: str, tmp_path: Path) -> None:
    per_statement = _connections_of_a_run(pg_url, tmp_path / "off", hold_db_connections=False)
    held = _connections_of_a_run(pg_url, tmp_path / "held")
    # per statement: about 17 per entry (~250 here); held: the run's start (its planned events, one per entry, are
    # written before the asset runs) and the pools' first connections
    assert per_statement > 12 * ENTRIES, per_statement
    assert held * 2 < per_statement, (held, per_statement)


def test_held_connections_cut_from_outside_are_replaced(pg_url: str, tmp_path: Path) -> None:
    resources, keys = _twelve_cities(tmp_path)
    with dg.instance_for_test(overrides={"storage": {"postgres": {"postgres_url": pg_url}}}) as instance:
        materialize_catalog(instance, resources)
        assert materialize_range(instance, resources, "addresses", keys[0], keys[5]).success
        assert terminate_connections(pg_url.rsplit("/", 1)[1]) >= 1  # the held connection, idle in its pool
        # the next run's first statements go to the pool: the dead connection is replaced, not used
        assert materialize_range(instance, resources, "addresses", keys[6], keys[-1]).success
        statuses = partition_status(instance, "addresses", keys)
    assert set(statuses.values()) == {dg.AssetPartitionStatus.MATERIALIZED}


def test_on_sqlite_nothing_is_held_and_dagster_postgres_is_not_imported() -> None:
    """Every layer run asks: on SQLite (the local deployment) the answer costs no import of dagster_postgres."""
    code = (
        "import sys, dagster as dg\n"
        "from oa_dagster.assets.held_connections import hold_connections\n"
        "with dg.instance_for_test() as instance:\n"
        "    print(hold_connections(instance), 'dagster_postgres' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == ["False", "False"], done.stdout + done.stderr
