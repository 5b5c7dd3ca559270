"""The Postgres-at-scale benchmark's parts (bench/bench_set.py): PgBouncer in front of the instance's database,
what a set adds to the database, and the synthetic entries in the real workload's mix of layers."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import dagster as dg
import pytest

from bench.bench_set import baseline_seconds, make_sources
from bench.layer_mix import SNAPSHOT_COUNTS, layer_sequence, real_counts, scaled, snapshot_counts
from bench.pg_stats import added, database_stats
from bench.pgbouncer import PGBOUNCER, running_pgbouncer
from bench.upstreams import serve_files
from oa_dagster.sources.load import load_catalog
from tests.platform_helpers import postgres_or_skip, write_source
from tests.sources_snapshot import require_snapshot

WRITES = 30


def _require_pgbouncer() -> None:
    if not Path(PGBOUNCER).exists() and not os.environ.get("CI"):  # CI installs it (.ci/run)
        pytest.skip(f"no {PGBOUNCER} (Debian's pgbouncer package)")


def _write_events(home: Path, url: str, count: int) -> None:
    """`count` runless materializations through a Dagster instance whose storage is at `url`."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(f"storage:\n  postgres:\n    postgres_url: {url}\n")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for i in range(count):
            instance.report_runless_asset_event(dg.AssetMaterialization("bench_probe", metadata={"i": i}))


def _listening(url: str) -> bool:
    from sqlalchemy.engine import make_url

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", make_url(url).port or 5432)) == 0


def test_pgbouncer_pools_the_connections_dagster_opens_per_statement(tmp_path: Path) -> None:
    _require_pgbouncer()
    with postgres_or_skip("oa_pgbouncer") as url:
        with running_pgbouncer(url) as pooled:
            assert pooled != url and _listening(pooled)
            _write_events(tmp_path / "create", pooled, 1)  # the instance's tables, created through the pooler
            before = database_stats(url)
            _write_events(tmp_path / "pooled", pooled, WRITES)
            through_pool = added(before, database_stats(url), WRITES)
        assert not _listening(pooled)  # the benchmark's own process, stopped with its context
        before = database_stats(url)
        _write_events(tmp_path / "direct", url, WRITES)
        direct = added(before, database_stats(url), WRITES)
    for report in (through_pool, direct):
        assert report["pg_event_log_rows_by_type"] == {"ASSET_MATERIALIZATION": WRITES}
        assert report["pg_event_log_rows_added"] == WRITES
        assert report["pg_database_bytes_added"] >= 0
    # directly, every write opens at least one server connection; through PgBouncer, a few pooled ones serve all
    assert direct["pg_sessions_added"] >= WRITES
    assert through_pool["pg_sessions_added"] <= 12  # the pool (10) and the two reads of the counters


def test_scaled_keeps_the_proportions_and_the_total() -> None:
    mix = scaled(SNAPSHOT_COUNTS, 5000)
    assert mix == {"addresses": 2774, "parcels": 1445, "buildings": 609, "centerlines": 172}
    assert sum(scaled(SNAPSHOT_COUNTS, 7).values()) == 7
    assert layer_sequence({"addresses": 2, "centerlines": 1}) == ["addresses", "addresses", "centerlines"]


def test_snapshot_counts_leave_out_skipped_entries_and_unreadable_files(tmp_path: Path, monkeypatch) -> None:
    sources = tmp_path / "snapshot" / "sources"
    entry = {"name": "city", "protocol": "http", "data": "http://example.invalid/a.csv"}
    write_source(sources, "us/ca/a", {"addresses": [entry, {**entry, "skip": True}], "parcels": [entry]})
    write_source(sources, "us/ca/b", {"buildings": [entry], "centerlines": [entry, entry]})
    (sources / "us" / "broken.json").write_text("{not json")
    expected = {"addresses": 1, "parcels": 1, "buildings": 1, "centerlines": 2}
    assert snapshot_counts(sources) == expected
    monkeypatch.setenv("OA_SOURCES_SNAPSHOT", str(tmp_path / "snapshot"))
    assert real_counts() == (expected, str(sources))
    monkeypatch.setenv("OA_SOURCES_SNAPSHOT", str(tmp_path / "none"))
    assert real_counts()[0] == SNAPSHOT_COUNTS


def test_pinned_counts_are_the_snapshots() -> None:
    assert snapshot_counts(require_snapshot()) == SNAPSHOT_COUNTS


def test_synthetic_entries_of_every_layer_process(tmp_path: Path) -> None:
    """The bench's sources in the real mix load as valid entries of their layers, and each processes
    (the baseline raises on an entry without output)."""
    www = tmp_path / "www"
    www.mkdir()
    server, url = serve_files(www)
    www.rmdir()
    try:
        mix = scaled(SNAPSHOT_COUNTS, 30)
        sources = make_sources(tmp_path, 30, 5, url, layer_sequence(mix))
        loaded, invalid = load_catalog(sources)
        assert not invalid
        by_layer = {layer: sum(1 for s in loaded for e in s.entries if e.layer == layer) for layer in mix}
        assert by_layer == mix and all(mix.values())
        assert baseline_seconds(sources, tmp_path / "baseline", sample=4) > 0
        conforms = {e.layer: e.conform for s in loaded for e in s.entries}
        assert json.dumps(conforms["parcels"]) == json.dumps({"format": "geojson", "pid": "num"})
    finally:
        server.shutdown()


def test_one_more_entry_writes_four_event_rows(capsys, monkeypatch) -> None:
    """bench_event_writes by its command line: one more entry with output costs one planned materialization, its
    materialization and its two check evaluations, each an insert into event_logs (what docs/operations.md says);
    with connections per statement, at least four new connections, held by the layer run, none."""
    from bench import bench_event_writes

    with postgres_or_skip("oa_probe"):  # skips where no server answers; the bench makes its own database
        pass
    monkeypatch.setattr("sys.argv", ["bench_event_writes.py", "--small", "1", "--large", "3", "--rows", "5"])
    assert bench_event_writes.main() == 0
    out = capsys.readouterr().out
    report = json.loads(out[out.rfind("\n{") + 1 :])  # the last JSON object printed
    for connections in ("per_statement", "held"):
        assert report[connections]["event_log_rows_per_entry_by_type"] == {
            "ASSET_CHECK_EVALUATION": 2.0,
            "ASSET_MATERIALIZATION": 1.0,
            "ASSET_MATERIALIZATION_PLANNED": 1.0,
        }, connections
        assert report[connections]["statements_per_entry_by_kind"]["INSERT event_logs"] == 4.0, connections
    assert report["per_statement"]["connections_per_entry"] >= 4  # NullPool: at least one per event write
    assert report["held"]["connections_per_entry"] < 1  # held by the layer run: none more per entry
