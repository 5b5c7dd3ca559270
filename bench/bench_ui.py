"""The Dagster UI at the real workload's scale: an asset page's GraphQL and the page itself in headless Chromium.

A throwaway database on 127.0.0.1:5432 gets the project's layer assets with `--partitions` dynamic partitions per
layer and `--sets` sets of history (bench/ui_history.py: every entry's materialization with the metadata the real
runs write, both check evaluations, failure observations, the set's runs tagged `oa/set`; stored in bulk, as the
rows Dagster's `store_event` writes, by `--workers` processes; after each set, each layer's partition status cache
is brought up to date as the set sensor does). Then `dagster-webserver` runs on it with the production instance
settings (deploy/production/dagster.yaml less its ECS launcher and S3 compute logs), and the bench times, `--calls`
times each, what the `addresses` page asks for:

- the partitions tab's keys and status of each (`assetPartitionStatuses`, the health bar),
- the latest materialization with its metadata entries,
- the runs list filtered by the latest set's tag;

and opens `/assets/addresses?view=partitions` in Chromium (Debian's, driven by playwright): seconds until the
partitions bar shows the materialized count, and a screenshot under `--out`. Last, the partitions tab's query once
more after its status cache is wiped: the cache built from the whole history (a wipe, a migration).

    python bench/bench_ui.py [--partitions 5000] [--sets 20] [--layers addresses,...] [--workers 2] [--calls 20]
    python bench/bench_ui.py --postgres-url URL [--skip-seed]   # seed an existing database, or only measure it

Prints the seeding time and rate, p50 / p95 / max (and the first call) of each query, the page's time and the
load average while measuring.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ui_queries import (  # noqa: E402
    LATEST_MATERIALIZATION,
    PARTITION_HEALTH,
    RUNS_OF_SET,
    partition_counts,
    post,
    timed,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
LAYER = "addresses"


def local_home(base: Path, postgres_url: str) -> tuple[Path, dict[str, str]]:
    """The instance folder under `base` on that database, and the environment the local code location reads."""
    home = base / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(instance_yaml(postgres_url))
    return home, {
        "DAGSTER_HOME": str(home),
        "OA_ENV": "local",
        "OA_DATA_DIR": str(base / "data"),
        "OA_SOURCES_DIR": str(base / "sources"),
    }


def instance_yaml(url: str) -> str:
    """The production instance settings on this database: everything but the ECS launcher and S3 compute logs
    (runs are not launched here; the UI never reads compute logs on these pages)."""
    import yaml

    config = yaml.safe_load((ROOT / "deploy" / "production" / "dagster.yaml").read_text())
    for key in ("run_launcher", "compute_logs"):
        config.pop(key, None)
    config["storage"] = {"postgres": {"postgres_url": url}}
    return yaml.safe_dump(config, sort_keys=False)


def seed(home: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    import dagster as dg

    from bench.ui_history import HistoryShape, HistoryWriter, template_results
    from oa_dagster.sensors.sets import refresh_partition_status

    shape = HistoryShape(
        partitions=args.partitions,
        sets=args.sets,
        entries_per_run=args.entries_per_run,
        workers=args.workers,
        layers=tuple(args.layers),
    )
    started = time.perf_counter()
    writer = HistoryWriter(home, template_results(work), shape)
    writer.add_partitions()
    refreshes = []
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for number, seconds in writer.write():
            # what the set sensor does once a set has ended: each layer's partition status cache brought up to date
            began = time.perf_counter()
            refresh_partition_status(instance, logging.getLogger("bench_ui"))
            refreshes.append(time.perf_counter() - began)
            print(
                f"set {number}: {seconds:.0f} s, {writer.events:,} events so far, status refresh"
                f" {refreshes[-1]:.1f} s, load {load()}",
                flush=True,
            )
    seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 1),
        "events": writer.events,
        "events_per_second": round(writer.events / seconds),
        "status_refresh_seconds_max": round(max(refreshes), 1),
    }


def cold_partition_status(home: Path, base: str) -> dict[str, Any]:
    """The partitions tab's query after the asset's status cache is wiped (`dagster asset
    wipe-partitions-status-cache`, a migration): the cache is built from the whole history by this one call."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.wipe_asset_cached_status([dg.AssetKey(LAYER)])
    before = load()
    figures, _ = timed(lambda: post(base, PARTITION_HEALTH, {"key": {"path": [LAYER]}}), 1)
    again, _ = timed(lambda: post(base, PARTITION_HEALTH, {"key": {"path": [LAYER]}}), 1)
    return {"seconds": figures["first"], "then": again["first"], "load_before": before, "load_after": load()}


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def measure_queries(base: str, args: argparse.Namespace) -> dict[str, Any]:
    key = {"path": [LAYER]}
    set_id = f"set-{args.sets:02d}"
    results: dict[str, Any] = {}
    checks: dict[str, Any] = {}
    for name, query, variables in (
        ("partition_health", PARTITION_HEALTH, {"key": key}),
        ("latest_materialization", LATEST_MATERIALIZATION, {"key": key}),
        ("runs_of_set", RUNS_OF_SET, {"set": set_id}),
    ):
        before = load()
        figures, answer = timed(lambda query=query, variables=variables: post(base, query, variables), args.calls)
        size = len(json.dumps(answer))
        results[name] = {**figures, "answer_bytes": size, "load_before": before, "load_after": load()}
        print(name, json.dumps(results[name]), flush=True)
        if name == "partition_health":
            checks["partitions"] = partition_counts(answer)
        elif name == "latest_materialization":
            latest = answer["assetOrError"]["assetMaterializations"][0]
            checks["latest_metadata_entries"] = len(latest["metadataEntries"])
            checks["latest_set"] = next(e["text"] for e in latest["metadataEntries"] if e["label"] == "set")
        else:
            checks["runs_of_set"] = answer["runsOrError"]["count"]
    results["answers"] = checks
    return results


def open_page(base: str, out: Path, materialized: int) -> dict[str, Any]:
    """The asset's partitions tab in Chromium, opened twice after a baseline page: seconds until the health bar's
    legend shows the materialized count, until the network is idle, and a screenshot."""
    from playwright.sync_api import sync_playwright

    legend = re.compile(rf"Materialized \(({materialized:,}|{materialized})\)")
    figures: dict[str, Any] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            # the baseline: an asset page without partitions or history (the catalog, never materialized here),
            # first in the session, so the UI's own code is loaded and compiled once, before the partitions tab
            before = load()
            started = time.perf_counter()
            page.goto(f"{base}/assets/source_catalog", wait_until="networkidle", timeout=180_000)
            figures["baseline_page_network_idle_seconds"] = round(time.perf_counter() - started, 2)
            figures["baseline_load"] = [before, load()]
            for visit in ("first", "again"):
                before = load()
                started = time.perf_counter()
                page.goto(f"{base}/assets/{LAYER}?view=partitions", wait_until="commit")
                page.get_by_text(legend).first.wait_for(timeout=180_000)
                bar = time.perf_counter() - started
                page.wait_for_load_state("networkidle", timeout=180_000)
                figures[visit] = {
                    "partitions_bar_seconds": round(bar, 2),
                    "network_idle_seconds": round(time.perf_counter() - started, 2),
                    "load_before": before,
                    "load_after": load(),
                }
                print(f"page, {visit} visit", json.dumps(figures[visit]), flush=True)
            skip = page.get_by_role("button", name="Skip")  # the UI's newsletter dialog on a first visit
            if skip.count():
                skip.first.click()
            out.mkdir(parents=True, exist_ok=True)
            shot = out / f"{LAYER}_partitions.png"
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    return {**figures, "screenshot": str(shot)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--partitions", type=int, default=5000, help="per layer")
    parser.add_argument("--sets", type=int, default=20)
    parser.add_argument("--layers", type=lambda s: s.split(","), default=None, help="default: all four")
    parser.add_argument("--entries-per-run", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2, help="seeding processes (building events is Python's)")
    parser.add_argument("--calls", type=int, default=20, help="calls of each query")
    parser.add_argument("--postgres-url", help="an existing database (kept) instead of a throwaway one")
    parser.add_argument("--skip-seed", action="store_true", help="the database is seeded already: only measure")
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench_ui")
    args = parser.parse_args()
    from oa_dagster.sources.model import LAYERS

    args.layers = args.layers or list(LAYERS)
    from tests.platform_helpers import running_webserver_url, throwaway_postgres

    base_dir = Path(tempfile.mkdtemp(prefix="oa-bench-ui-"))
    cleanup = contextlib.ExitStack()
    try:
        url = args.postgres_url or cleanup.enter_context(throwaway_postgres("oa_bench_ui"))
        home, env = local_home(base_dir, url)
        os.environ.update(env)
        report: dict[str, Any] = {"partitions": args.partitions, "sets": args.sets, "layers": args.layers}
        if not args.skip_seed:
            report["seeding"] = seed(home, base_dir / "seed", args)
            print("seeding", json.dumps(report["seeding"]), flush=True)
        web = cleanup.enter_context(running_webserver_url(home, env, base_dir / "webserver.log"))
        report["queries"] = measure_queries(web, args)
        if not args.no_browser:
            materialized = report["queries"]["answers"]["partitions"]["materializedPartitions"]
            report["page"] = open_page(web, args.out, materialized)
        report["partition_health_cold"] = cold_partition_status(home, web)
        print("partition_health_cold", json.dumps(report["partition_health_cold"]), flush=True)
        print(json.dumps(report, indent=1), flush=True)
        return 0
    finally:
        cleanup.close()
        shutil.rmtree(base_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
