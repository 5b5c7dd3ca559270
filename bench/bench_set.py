"""A set of N small synthetic entries through the real daemon / queued coordinator / run launcher path.

Serves N small CSV sources from a local HTTP server, starts `dagster-daemon run` on a temporary
DAGSTER_HOME (deploy/local/dagster.yaml: 2 concurrent runs), materializes the catalog tagged as a set, and
waits for the set_launcher sensor to finish the set. Reports the set's wall time, per-run and per-entry
overhead, and Dagster's share: (wall x concurrency - sum of per-entry processing) / (wall x concurrency).

    python bench/bench_set.py --entries 1000 [--batch-max-entries 50]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_sources(base: Path, entries: int, rows: int, url: str) -> Path:
    sources, data = base / "sources", base / "www"
    data.mkdir(parents=True)
    for i in range(entries):
        lines = ["lon,lat,num,street"] + [f"-122.{(i * rows + r) % 9999:04d},37.{r:04d},{r + 1},MAIN ST"
                                          for r in range(rows)]
        (data / f"s{i:04d}.csv").write_text("\n".join(lines) + "\n")
        path = sources / "xx" / f"s{i:04d}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        coverage = {"ISO 3166": {"alpha2": "US-CA"}, "country": "us"}
        path.write_text(json.dumps({"schema": 2, "coverage": coverage, "layers": {
            "addresses": [{"name": "main", "protocol": "http", "data": f"{url}/s{i:04d}.csv",
                           "conform": {"format": "csv", "lon": "lon", "lat": "lat", "number": "num",
                                       "street": "street"}}]}}))
    return sources


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=50)
    parser.add_argument("--batch-max-entries", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()

    import dagster as dg

    from oa_dagster.resources.deployments import local_resources
    from tests.platform_helpers import materialize_catalog

    base = Path(tempfile.mkdtemp(prefix="oa-bench-set-"))
    www = base / "www"
    www.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(SimpleHTTPRequestHandler, directory=str(www)))
    SimpleHTTPRequestHandler.log_message = lambda *a: None  # type: ignore[method-assign]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    shutil.rmtree(www)
    sources = make_sources(base, args.entries, args.rows, f"http://127.0.0.1:{server.server_port}")
    home = base / "home"
    home.mkdir()
    config = (ROOT / "deploy" / "local" / "dagster.yaml").read_text()
    config = config.replace("max_concurrent_runs: 2", f"max_concurrent_runs: {args.concurrency}")
    config = config.replace("poll_interval_seconds: 30", "poll_interval_seconds: 5")
    (home / "dagster.yaml").write_text(config)
    env = {**os.environ, "DAGSTER_HOME": str(home), "OA_ENV": "local", "OA_DATA_DIR": str(base / "data"),
           "OA_SOURCES_DIR": str(sources), "OA_BATCH_MAX_ENTRIES": str(args.batch_max_entries)}
    daemon = subprocess.Popen([str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w",
                               str(ROOT / "workspace.yaml")], cwd=ROOT, env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        resources = local_resources(base / "data", sources, batch_max_entries=args.batch_max_entries)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            catalog = materialize_catalog(instance, resources, tags={"oa/set": "bench", "oa/launch": "all"})
            meta = catalog.asset_materializations_for_node("source_catalog")[0].metadata
            assert meta["invalid_sources"].value == 0, meta["invalid"].value
            started = time.time()
            print(f"catalog ready; {args.entries} entries, batches of {args.batch_max_entries}", flush=True)
            finished = None
            while time.time() - started < args.timeout:
                records = instance.fetch_materializations(dg.AssetKey("set_progress"), limit=1).records
                meta = records[0].asset_materialization.metadata if records else {}
                if meta:
                    print(f"  {time.time() - started:6.0f} s: {meta['summary'].value}", flush=True)
                if meta and meta["finished"].value:
                    finished = time.time()
                    break
                time.sleep(10)
            runs = instance.get_run_records(dg.RunsFilter(tags={"oa/set": "bench"}))
            layer_runs = [r for r in runs if r.dagster_run.job_name == "addresses_job"]
            work, materialized, cursor = 0.0, 0, None
            while True:
                result = instance.fetch_materializations(dg.AssetKey("addresses"), limit=5000, cursor=cursor)
                for record in result.records:
                    m = record.asset_materialization.metadata
                    work += m["download_seconds"].value + m["conform_seconds"].value
                    materialized += 1
                cursor = result.cursor
                if not result.has_more:
                    break
            first = min(r.start_time for r in layer_runs if r.start_time)
            last = max(r.end_time for r in layer_runs if r.end_time)
            run_wall = sum(r.end_time - r.start_time for r in layer_runs if r.end_time and r.start_time)
        wall = (finished or time.time()) - started
        report = {
            "entries": args.entries, "materialized": materialized, "runs": len(layer_runs),
            "batch_max_entries": args.batch_max_entries, "concurrency": args.concurrency,
            "set_wall_seconds": round(wall, 1), "runs_wall_seconds": round(last - first, 1),
            "sum_entry_processing_seconds": round(work, 1),
            "overhead_share_set": round((wall * args.concurrency - work) / (wall * args.concurrency), 3),
            "overhead_share_runs_window": round(((last - first) * args.concurrency - work)
                                                / ((last - first) * args.concurrency), 3),
            "per_run_overhead_seconds": round((run_wall - work) / max(1, len(layer_runs)), 2),
            "per_entry_overhead_seconds": round((wall * args.concurrency - work) / max(1, args.entries), 3),
        }
        print(json.dumps(report, indent=1))
        return 0 if finished else 1
    finally:
        os.killpg(daemon.pid, signal.SIGKILL)
        daemon.wait()
        server.shutdown()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
