"""A set of N small synthetic entries through the real daemon / queued coordinator / run launcher path.

Serves N small CSV sources from a local HTTP server, starts `dagster-daemon run` on a temporary
DAGSTER_HOME (deploy/local/dagster.yaml: 2 concurrent runs), materializes the catalog tagged as a set, and
waits for the set_launcher sensor to finish the set. Reports the set's wall time, per-run and per-entry
overhead, and Dagster's share: (wall x concurrency - sum of per-entry processing) / (wall x concurrency).

    python bench/bench_set.py --entries 1000 [--sets 2] [--rows 50] [--latency S] [--storage sqlite|postgres]

Set 1 has no history (entries are packed by the sizes the set's planning asks of their upstreams, HEAD's
`Content-Length`); set 2 is the weekly case, packed by the previous run's seconds. Reported per set; the "set
wall" is set_progress's own (catalog materialization to the sensor tick that saw the last run end),
`catalog_to_last_run_end` leaves out that reporting delay.

Per-entry processing is counted two ways: as the runs measured it (download + conform seconds in each
materialization: inflated when the machine is saturated, since an entry then waits for the CPU) and as a
baseline measured first in this process without Dagster (`run_entry` + publishing to a scratch store, one
entry after another). The baseline share is the honest one: every second beyond the work itself is Dagster's.
`--storage postgres` runs the instance on a throwaway database on 127.0.0.1:5432 (the production storage); each
set's report then adds what it wrote there (`pg_stats.py`). `--pgbouncer pgbouncer` puts PgBouncer (transaction
pooling, `pgbouncer.py`) in front of it; `--pgbouncer both` runs the sets directly and then through PgBouncer, each
on a fresh database and output store, and prints them side by side. `--layers real` spreads the entries over the
four layers like the sources repository (`layer_mix.py`); `--baseline-sample K` times ~K entries for the baseline.

    python bench/bench_set.py --entries 5000 --sets 1 --storage postgres --layers real --latency 0.2 \
        --baseline-sample 500 --pgbouncer both

    python bench/bench_set.py --weekly --entries 1000 [--change 0.1] [--change-kind edit|grow] [--rows 1500]
        [--latency 0.2]

The weekly mode measures change detection: half the entries are CSVs from HTTP servers (Last-Modified), half
ArcGIS layers on fake ArcGIS servers (editingInfo; pages of rows/3 features), all with `--latency`, four servers of
each kind in a process of their own (`upstreams.py`: real upstreams are many hosts, and their answers cost this
process nothing). Set 1
processes everything; then `--change` of the upstreams change (as many CSVs as layers; `--change-kind edit`, the
default: every row edited, the same size; `grow`: one row more, which adds a page to every changed ArcGIS layer, so
the changed entries cost a third more than the others, as a week's edits rarely do; the changed layers' pages are
cached before set 2, as the others' are); set 2 runs incrementally
(the weekly schedule's `oa/launch=all`: unchanged entries carried over) and then again in full (`oa/launch=full`)
on the same upstreams. Reported: each set's wall time (from its catalog's materialization, and from the start of
its catalog run: the set's planning, probes and carried entries, counted in), the catalog run's and its probing's
seconds, the bytes the servers sent, and the ratios full / incremental.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.upstreams import UpstreamsProcess, serve_files  # noqa: E402


def make_sources(base: Path, entries: int, rows: int, url: str, layers: list[str] | None = None) -> Path:
    """One source per entry, each a file on the server: entry i in `layers[i]` (default: all addresses), an
    address CSV or another layer's GeoJSON (`layer_mix.write_shapes`)."""
    from bench.layer_mix import write_shapes

    sources, data = base / "sources", base / "www"
    data.mkdir(parents=True)
    for i in range(entries):
        layer = layers[i] if layers else "addresses"
        if layer == "addresses":
            lines = ["lon,lat,num,street"] + [
                f"-122.{(i * rows + r) % 9999:04d},37.{r:04d},{r + 1},MAIN ST" for r in range(rows)
            ]
            (data / f"s{i:04d}.csv").write_text("\n".join(lines) + "\n")
            name = f"s{i:04d}.csv"
            conform = {"format": "csv", "lon": "lon", "lat": "lat", "number": "num", "street": "street"}
        else:
            name, conform = write_shapes(data, f"s{i:04d}", layer, rows, i)
        path = sources / "xx" / f"s{i:04d}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        coverage = {"ISO 3166": {"alpha2": "US-CA"}, "country": "us"}
        path.write_text(
            json.dumps(
                {
                    "schema": 2,
                    "coverage": coverage,
                    "layers": {
                        layer: [{"name": "main", "protocol": "http", "data": f"{url}/{name}", "conform": conform}]
                    },
                }
            )
        )
    return sources


def baseline_seconds(sources: Path, scratch: Path, sample: int = 0) -> float:
    """Seconds to process and publish every entry one after another in this process, without Dagster.

    With `sample`, only every k-th entry (about `sample` of them, all layers alike) is processed and the time is
    scaled to all entries: the synthetic entries are alike, and a 5,000-entry baseline would take longer than
    the set it measures."""
    from oa_dagster.platform.publishing import publish_run
    from oa_dagster.platform.store import LocalStore
    from oa_dagster.process import run_entry
    from oa_dagster.resources.processing import ProcessingSettings
    from oa_dagster.sources.load import load_catalog

    loaded, invalid = load_catalog(sources)
    assert not invalid, invalid
    settings = ProcessingSettings()
    store = LocalStore(scratch / "store")
    entries = [entry for source in loaded for entry in source.entries]
    step = max(1, len(entries) // sample) if sample else 1
    started = time.perf_counter()
    for entry in entries[::step]:
        out = scratch / "out"
        state = run_entry(entry, out, preview=settings.preview, fetch_options=settings.fetch_options())
        if not state.files.get("output"):  # a failed entry would make the baseline cheaper than the work
            raise RuntimeError(
                f"baseline: {entry.source_key}/{entry.name}: {state.source_problem}: {state.problem_detail}"
            )
        publish_run(
            store,
            state.to_dict(),
            out,
            "baseline",
            entry_key=f"{entry.source_key}/{entry.name}",
            entry_version="baseline",
        )
        shutil.rmtree(out)
    return (time.perf_counter() - started) * len(entries) / len(entries[::step])


def run_set(
    instance: Any,
    resources: dict[str, Any],
    set_id: str,
    args: argparse.Namespace,
    daemon: subprocess.Popen[bytes],
    launch: str = "all",
) -> dict[str, Any]:
    """Start a set (the catalog tagged like the weekly schedule does), wait for set_progress to finish it."""
    import dagster as dg

    from oa_dagster.run_tags import LAUNCH_TAG, SET_TAG
    from oa_dagster.sources.model import LAYERS
    from tests.platform_helpers import materialize_catalog

    waited = wait_for_idle_queue(instance, args.quiet)
    if waited > 1:
        print(f"{set_id}: waited {waited:.0f} s for the runs before it to end (the previous set's collections)")
    catalog_started = time.time()
    catalog = materialize_catalog(instance, resources, tags={SET_TAG: set_id, LAUNCH_TAG: launch})
    meta = catalog.asset_materializations_for_node("source_catalog")[0].metadata
    assert meta["invalid_sources"].value == 0, meta["invalid"].value
    catalog_time = instance.fetch_materializations(dg.AssetKey("source_catalog"), limit=1).records[0].timestamp
    started = time.time()
    probing = float(meta["plan_probe_seconds"].value) if "plan_probe_seconds" in meta else 0.0
    carrying = float(meta["plan_carry_seconds"].value) if "plan_carry_seconds" in meta else 0.0
    print(
        f"{set_id}: catalog ready; {args.entries} entries; catalog run {started - catalog_started:.1f} s "
        f"(probing {probing:.1f} s, carried entries stored {carrying:.1f} s)",
        flush=True,
    )
    finished, progress, shown = None, {}, ""
    while time.time() - started < args.timeout and daemon.poll() is None:
        records = instance.fetch_materializations(dg.AssetKey("set_progress"), limit=1).records
        progress = records[0].asset_materialization.metadata if records else {}
        if progress and progress["set"].value == set_id:
            if progress["summary"].value != shown:
                shown = progress["summary"].value
                print(f"  {time.time() - started:6.1f} s: {shown}", flush=True)
            if progress["finished"].value:
                finished = time.time()
                break
        time.sleep(1)
    runs = instance.get_run_records(dg.RunsFilter(tags={SET_TAG: set_id}))
    layer_runs = [r for r in runs if r.dagster_run.job_name in {f"{layer}_job" for layer in LAYERS}]
    work, publish, materialized = 0.0, 0.0, 0
    by_run: list[float] = []  # materialization times after the catalog's, written by runs / in bulk
    carried_times: list[float] = []
    for layer in LAYERS:
        cursor = None
        while True:
            result = instance.fetch_materializations(dg.AssetKey(layer), limit=5000, cursor=cursor)
            for record in result.records:
                m = record.asset_materialization.metadata
                if m["set"].value == set_id:
                    (by_run if record.run_id else carried_times).append(record.timestamp - catalog_time)
                    work += m["download_seconds"].value + m["conform_seconds"].value
                    publish += m["publish_seconds"].value if "publish_seconds" in m else 0.0
                    materialized += 1
            cursor = result.cursor
            if not result.has_more:
                break
    first = min(r.start_time for r in layer_runs if r.start_time)
    last = max(r.end_time for r in layer_runs if r.end_time)
    run_wall = sum(r.end_time - r.start_time for r in layer_runs if r.end_time and r.start_time)
    # the set's own wall time as set_progress reports it: catalog materialization to "finished" (sensor tick)
    wall = float(progress["wall_seconds"].value) if finished else time.time() - started
    to_last_run = last - catalog_time
    print_timeline(layer_runs, catalog_time, by_run, carried_times, wall)
    slots = args.concurrency

    def share(seconds: float) -> float:
        return round((seconds * slots - work) / (seconds * slots), 3)

    return {
        "entries": args.entries,
        "materialized": materialized,
        "unchanged": int(progress["unchanged"].value) if "unchanged" in progress else 0,
        "runs": len(layer_runs),
        "concurrency": slots,
        "finished": bool(finished),
        "set_wall_seconds": round(wall, 1),
        # the set from the start of its catalog run: its planning (probes, carried entries) counted in
        "set_wall_with_catalog_seconds": round(wall + catalog_time - catalog_started, 1),
        "catalog_run_seconds": round(started - catalog_started, 1),
        "catalog_probing_seconds": probing,
        "catalog_to_last_run_end_seconds": round(to_last_run, 1),
        "runs_window_seconds": round(last - first, 1),
        "latency": args.latency,
        "sum_entry_processing_seconds": round(work, 1),
        "sum_publish_seconds": round(publish, 1),  # our store writes: neither Dagster's nor in the processing sum
        "dagster_share_set": share(wall),
        "dagster_share_to_last_run_end": share(to_last_run),
        "dagster_share_runs_window": share(last - first),
        "per_run_overhead_seconds": round((run_wall - work) / max(1, len(layer_runs)), 2),
        "per_entry_overhead_seconds": round((wall * slots - work) / max(1, args.entries), 3),
        "baseline_processing_seconds": round(args.baseline, 1),
        "dagster_share_set_vs_baseline": round((wall * slots - args.baseline) / (wall * slots), 3),
        "dagster_share_to_last_run_end_vs_baseline": round(
            (to_last_run * slots - args.baseline) / (to_last_run * slots), 3
        ),
        "per_entry_overhead_vs_baseline_seconds": round((wall * slots - args.baseline) / max(1, args.entries), 3),
        "storage": args.storage,
    }


def wait_for_idle_queue(instance: Any, quiet_seconds: float = 75.0, timeout: float = 1800.0) -> float:
    """Wait until no run is queued or running for `quiet_seconds`, so each set is measured on an idle instance, as a
    weekly set starts; returns the seconds waited. A set's end starts its collections run up to 35 s later
    (`collections_after_set` ticks every 30 s), and that run's end a coverage run up to 65 s later (every 60 s)."""
    import dagster as dg
    from dagster._core.storage.dagster_run import FINISHED_STATUSES

    active = dg.RunsFilter(statuses=[status for status in dg.DagsterRunStatus if status not in FINISHED_STATUSES])
    started = quiet_since = time.time()
    while time.time() - started < timeout:
        if instance.get_runs_count(active):
            quiet_since = time.time()
        elif time.time() - quiet_since >= quiet_seconds:
            break
        time.sleep(1)
    return time.time() - started - quiet_seconds


def print_timeline(runs: list[Any], origin: float, by_run: list[float], carried: list[float], wall: float) -> None:
    """Where a set's wall time went, in seconds after its catalog's materialization: each run's creation, start and
    end, the entries its runs recorded (first, last) and the carried-over ones (first, last)."""

    def span(times: list[float]) -> str:
        return f"{min(times):6.1f} .. {max(times):6.1f} s ({len(times)})" if times else "none"

    from oa_dagster.run_tags import ENTRIES_TAG

    for record in sorted(runs, key=lambda r: r.create_timestamp.timestamp()):
        run = record.dagster_run
        created = record.create_timestamp.timestamp() - origin
        start = f"{record.start_time - origin:6.1f}" if record.start_time else "     -"
        end = f"{record.end_time - origin:6.1f}" if record.end_time else "     -"
        print(
            f"  run {run.run_id[:8]} {run.tags.get(ENTRIES_TAG, '?'):>4} entries: created {created:6.1f}, "
            f"started {start}, ended {end} ({run.status.value})",
            flush=True,
        )
    print(f"  entries recorded by runs {span(by_run)}; carried over {span(carried)}; set finished {wall:6.1f} s")


def instance_config(args: argparse.Namespace) -> str:
    """deploy/local/dagster.yaml with `--concurrency` runs at once and the run queue polled every 5 s."""
    config = (ROOT / "deploy" / "local" / "dagster.yaml").read_text()
    config = config.replace("max_concurrent_runs: 2", f"max_concurrent_runs: {args.concurrency}")
    return config.replace("poll_interval_seconds: 30", "poll_interval_seconds: 5")


def exit_code(finished: bool, base: Path) -> int:
    """0 when every set finished; else 1, after the end of the daemon's log."""
    if not finished:
        print((base / "daemon.log").read_text()[-3000:], file=sys.stderr)
        return 1
    return 0


def weekly(args: argparse.Namespace) -> int:
    """Set 1, then `--change` of the upstreams change, then set 2 incremental (`oa/launch=all`) and the same set 2
    in full (`oa/launch=full`): wall time and bytes downloaded of each, and the ratios."""
    import dagster as dg

    from oa_dagster.resources.deployments import local_resources
    from tests.platform_helpers import running_daemon

    base = Path(tempfile.mkdtemp(prefix="oa-bench-weekly-"))
    # in a process of their own, as remote servers are: the catalog run (in this process) asks every one of them
    upstreams = UpstreamsProcess(base, args.entries, args.rows, args.latency)
    cleanup = contextlib.ExitStack()
    try:
        home = base / "home"
        home.mkdir()
        (home / "dagster.yaml").write_text(instance_config(args))
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "OA_ENV": "local",
            "OA_DATA_DIR": str(base / "data"),
            "OA_SOURCES_DIR": str(upstreams.sources),
        }
        # the instance's tables first: a daemon creating them at the same moment races this process
        instance = cleanup.enter_context(dg.DagsterInstance.from_config(str(home)))
        daemon = cleanup.enter_context(running_daemon(home, env, base / "daemon.log"))
        resources = local_resources(base / "data", upstreams.sources)
        args.baseline = 0.0  # no baseline in this mode: the full set 2 is the reference
        results: dict[str, dict[str, Any]] = {}
        for name, launch in (("set1", "all"), ("set2_incremental", "all"), ("set2_full", "full")):
            if name == "set2_incremental":
                changed = upstreams.change(args.change, grow=args.change_kind == "grow")
                print(f"changed {len(changed)} of {args.entries} upstreams", flush=True)
            sent = upstreams.bytes_sent()
            report = run_set(instance, resources, f"weekly-{name}", args, daemon, launch)
            keep = (
                "finished",
                "set_wall_seconds",
                "set_wall_with_catalog_seconds",
                "catalog_run_seconds",
                "catalog_probing_seconds",
                "runs",
                "materialized",
                "unchanged",
            )
            results[name] = {k: report[k] for k in keep} | {"bytes_downloaded": upstreams.bytes_sent() - sent}
            print(name, json.dumps(results[name]), flush=True)
        full, incremental = results["set2_full"], results["set2_incremental"]
        summary = {
            "entries": args.entries,
            "changed_share": args.change,
            "change_kind": args.change_kind,
            "latency": args.latency,
            "rows": args.rows,
            **{
                f"{k}_{m}": results[k][m]
                for k in results
                for m in ("set_wall_seconds", "set_wall_with_catalog_seconds", "bytes_downloaded")
            },
            "wall_ratio_full_over_incremental": round(full["set_wall_seconds"] / incremental["set_wall_seconds"], 2),
            "wall_with_catalog_ratio_full_over_incremental": round(
                full["set_wall_with_catalog_seconds"] / incremental["set_wall_with_catalog_seconds"], 2
            ),
            "bytes_ratio_full_over_incremental": round(
                full["bytes_downloaded"] / max(1, incremental["bytes_downloaded"]), 2
            ),
        }
        print(json.dumps(summary, indent=1), flush=True)
        return exit_code(all(r["finished"] for r in results.values()), base)
    finally:
        cleanup.close()
        upstreams.stop()
        shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=50)
    parser.add_argument("--batch-max-entries", type=int, default=0, help="0: the settings' default")
    parser.add_argument("--sets", type=int, default=2, help="the first without history, the next with it")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--storage", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        help="seconds the HTTP server waits before answering (a remote server; 0 = worst case)",
    )
    parser.add_argument(
        "--layers", choices=("addresses", "real"), default="addresses", help="real: the snapshot's mix of layers"
    )
    parser.add_argument(
        "--pgbouncer",
        choices=("direct", "pgbouncer", "both"),
        default="direct",
        help="--storage postgres: directly, through PgBouncer (transaction pooling), or both, one after the other",
    )
    parser.add_argument("--baseline-sample", type=int, default=0, help="time ~N entries for the baseline; 0: all")
    parser.add_argument(
        "--quiet", type=float, default=75.0, help="seconds with no run queued or running before each set starts"
    )
    parser.add_argument("--weekly", action="store_true", help="set 1, then set 2 incremental and in full (see weekly)")
    parser.add_argument("--change", type=float, default=0.1, help="--weekly: share of upstreams changed before set 2")
    parser.add_argument(
        "--change-kind",
        choices=["edit", "grow"],
        default="edit",
        help="--weekly: a changed upstream has its rows edited (the same size, as most weeks' edits) or one more row "
        "(an ArcGIS layer then needs one more page: the changed entries cost more than the others)",
    )
    args = parser.parse_args()
    # a shell's background job ignores SIGINT, and Dagster maps SIGTERM to the SIGINT handler: restore it, so that
    # stopping a long run (kill -INT or -TERM) still stops its daemon and drops its database
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.weekly:
        return weekly(args)

    from bench.layer_mix import layer_sequence, real_counts, scaled

    base = Path(tempfile.mkdtemp(prefix="oa-bench-set-"))
    www = base / "www"
    www.mkdir()
    server, url = serve_files(www, args.latency)
    shutil.rmtree(www)
    try:
        layers = None
        if args.layers == "real":
            counts, origin = real_counts()
            mix = scaled(counts, args.entries)
            layers = layer_sequence(mix)
            print(f"layers: {mix} (the proportions of {counts} from {origin})", flush=True)
        sources = make_sources(base, args.entries, args.rows, url, layers)
        args.baseline = baseline_seconds(sources, base / "baseline", args.baseline_sample)
        print(
            f"baseline: {args.entries} entries processed and published in {args.baseline:.1f} s without Dagster"
            + (f" (measured on ~{args.baseline_sample} of them)" if args.baseline_sample else ""),
            flush=True,
        )
        modes = ("direct", "pgbouncer") if args.pgbouncer == "both" else (args.pgbouncer,)
        reports, failed = [], None
        for mode in modes:
            mode_reports = storage_pass(args, mode, sources, base / mode)
            reports += mode_reports
            if not all(r["finished"] for r in mode_reports):
                failed = base / mode
        if len(modes) > 1:
            print(json.dumps(side_by_side(reports), indent=1), flush=True)
        return exit_code(False, failed) if failed else 0
    finally:
        server.shutdown()
        shutil.rmtree(base, ignore_errors=True)


def storage_pass(args: argparse.Namespace, mode: str, sources: Path, folder: Path) -> list[dict[str, Any]]:
    """`--sets` sets on a fresh instance and output store; on Postgres, directly or through PgBouncer (`mode`),
    each set's report with what it added to the database."""
    import dagster as dg

    from bench.pg_stats import added, database_stats
    from bench.pgbouncer import running_pgbouncer
    from oa_dagster.resources.deployments import local_resources
    from tests.platform_helpers import running_daemon, throwaway_postgres

    folder.mkdir(parents=True)
    with contextlib.ExitStack() as cleanup:
        home = folder / "home"
        home.mkdir()
        config = instance_config(args)
        url = None
        if args.storage == "postgres":
            url = cleanup.enter_context(throwaway_postgres("oa_bench"))
            served = cleanup.enter_context(running_pgbouncer(url)) if mode == "pgbouncer" else url
            config += f"storage:\n  postgres:\n    postgres_url: {served}\n"
        (home / "dagster.yaml").write_text(config)
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "OA_ENV": "local",
            "OA_DATA_DIR": str(folder / "data"),
            "OA_SOURCES_DIR": str(sources),
        }
        settings: dict[str, int] = {}
        if args.batch_max_entries:
            env["OA_BATCH_MAX_ENTRIES"] = str(args.batch_max_entries)
            settings["batch_max_entries"] = args.batch_max_entries
        daemon = cleanup.enter_context(running_daemon(home, env, folder / "daemon.log"))  # stopped before postgres
        resources = local_resources(folder / "data", sources, **settings)
        reports = []
        with dg.DagsterInstance.from_config(str(home)) as instance:
            for number in range(1, args.sets + 1):
                before = database_stats(url) if url else None
                report = run_set(instance, resources, f"bench-{number}", args, daemon)
                if url and before:
                    report |= added(before, database_stats(url), args.entries)
                report |= {"set": number, "history": number > 1, "connection": mode, "load": load_average()}
                print(json.dumps(report, indent=1), flush=True)
                reports.append(report)
        return reports


def load_average() -> str:
    """The machine's 1, 5 and 15 minute load averages, as `uptime` shows them."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def side_by_side(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Each set's figures directly and through PgBouncer, and the ratio direct / PgBouncer of its wall time."""
    keys = (
        "set_wall_seconds",
        "dagster_share_set_vs_baseline",
        "per_entry_overhead_vs_baseline_seconds",
        "runs",
        "pg_event_log_rows_per_entry",
        "pg_database_bytes_per_entry",
        "pg_sessions_per_entry",
        "load",
    )
    table: dict[str, Any] = {}
    for number in sorted({r["set"] for r in reports}):
        by_mode = {r["connection"]: r for r in reports if r["set"] == number}
        row = {f"{key}_{mode}": by_mode[mode].get(key) for mode in by_mode for key in keys}
        if {"direct", "pgbouncer"} <= by_mode.keys():
            row["wall_ratio_direct_over_pgbouncer"] = round(
                by_mode["direct"]["set_wall_seconds"] / by_mode["pgbouncer"]["set_wall_seconds"], 2
            )
        table[f"set{number}"] = row
    return table


if __name__ == "__main__":
    sys.exit(main())
