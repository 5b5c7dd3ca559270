"""One set through the ECS path and the same set through the default run launcher, both on Postgres, in one
process: what launching every run as an ECS task costs per run and per entry.

    python bench/bench_ecs.py [--entries 200] [--batch 10] [--rows 50]

Each side starts a fresh production deployment (`tests/ecs_deployment.py`: a throwaway Postgres database,
deploy/production/dagster.yaml with S3 compute logs on moto, the gRPC code server, the daemon and the webserver
as processes), `--entries` entries mixed as in the end-to-end test (`tests/set_entries.py`: CSV over HTTP,
share-alike, an ArcGIS layer, a shapefile zip, one answering 404, parcels and buildings; `--rows` address rows
each) on local HTTP and ArcGIS servers, and starts a set as the schedule does (`dagster job launch
source_catalog_job` tagged `oa/set` + `oa/launch=all`); the set sensor packs runs of `--batch` entries. The clock
runs from that launch to the set's `set_progress` saying finished. The code location is the local deployment
(sources from a folder, outputs on disk) on both sides: what differs is only the launch path.

ECS path: each run is RegisterTaskDefinition/RunTask on moto's ECS over HTTP and the fake ECS agent starts the
task's container command (`dagster api execute_run`, the same command the default launcher starts) as a local
process, polling every 0.2 s; run monitoring asks ECS about every started run each second. So the difference
is the launcher's own work, moto's answers and the agent's poll. What it cannot show: Fargate's provisioning
and image pull (tens of seconds per task on AWS), which the operations guide counts separately.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def run_set(side: str, moto_url: str, work: Path, sources: Path, batch: int) -> dict[str, float]:
    import dagster as dg

    from oa_dagster.assets.sets import SET_PROGRESS
    from tests.ecs_deployment import production_deployment
    from tests.platform_helpers import wait_for

    tmp = work / side
    tmp.mkdir()
    # the default launcher's launch is one gRPC call to the code server, which starts the run's process: on a busy
    # host the 60 s default fails launches (runs marked failed, the set never finishes); both sides get the same
    env = {"OA_BATCH_MAX_ENTRIES": str(batch), "DAGSTER_GRPC_TIMEOUT_SECONDS": "300"}
    with production_deployment(moto_url, tmp, sources, launcher=side, env=env) as deployment:
        set_id = f"set-bench-{side}"
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        deployment.launch("source_catalog_job", {"oa/set": set_id, "oa/launch": "all"})

        def finished() -> dict | None:
            records = deployment.instance.fetch_materializations(SET_PROGRESS, limit=1).records
            if not records:
                return None
            metadata = records[0].asset_materialization.metadata
            if metadata["set"].value != set_id or not metadata["finished"].value:
                return None
            return {k: v.value for k, v in metadata.items() if k in ("entries", "done", "failed", "runs")}

        progress = wait_for(f"set {side} to finish", finished, 7200, deployment.daemon_log)
        seconds = time.perf_counter() - started
        runs = deployment.instance.get_runs(dg.RunsFilter(tags={"oa/set": set_id}))
        tasks = len(deployment.agent.tasks)
    load = (load_before, os.getloadavg()[0])  # the machine's 1-min load around the side: a shared host skews it
    return {"seconds": seconds, "runs": float(len(runs)), "tasks": float(tasks), "load": load, **progress}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=200)
    parser.add_argument("--batch", type=int, default=10, help="entries per run (OA_BATCH_MAX_ENTRIES)")
    parser.add_argument("--rows", type=int, default=50)
    parser.add_argument("--first", choices=("default", "ecs"), default="default", help="which side runs first")
    args = parser.parse_args()

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request

    from tests.platform_helpers import write_source
    from tests.servers.arcgis import FakeArcGISServer
    from tests.servers.downloads import DownloadServer
    from tests.set_entries import SHARE_ALIKE, serve_set_data

    downloads = DownloadServer().start()
    arcgis = FakeArcGISServer().start()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    moto.start()
    host, port = moto.get_host_and_port()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-ecs-") as scratch:
            work = Path(scratch)
            entries = serve_set_data(downloads, arcgis, work, args.rows)
            # the end-to-end test's dozen, repeated: five CSV (one share-alike), one 404, an ArcGIS layer, a
            # shapefile zip, two parcels, two buildings
            mix = [
                ("addresses", entries.csv),
                ("parcels", entries.parcels),
                ("buildings", entries.buildings),
                ("addresses", lambda name: entries.csv(name, license=SHARE_ALIKE)),
                ("addresses", entries.missing),
                ("addresses", entries.esri),
                ("addresses", entries.shapefile),
                ("addresses", entries.csv),
                ("buildings", entries.buildings),
                ("addresses", entries.csv),
                ("parcels", entries.parcels),
                ("addresses", entries.csv),
            ]
            for i in range(args.entries):
                layer, entry = mix[i % len(mix)]
                write_source(work / "sources", f"us/xx/e{i:04d}", {layer: [entry("city")]})
            results = {}
            for side in (args.first, "ecs" if args.first == "default" else "default"):
                results[side] = run_set(side, f"http://{host}:{port}", work, work / "sources", args.batch)
                print(f"  ({side} done: {results[side]})", flush=True)  # a figure even if the other side fails
    finally:
        moto.stop()
        arcgis.stop()
        downloads.stop()

    base, ecs = results["default"], results["ecs"]
    print(f"set of {args.entries} mixed entries, {args.batch} per run, {args.rows} address rows, Postgres, one process")
    for side, r in results.items():
        print(
            f"  {side:8s} {r['seconds']:7.1f} s  set-tagged runs {r['runs']:.0f} (ECS tasks {r['tasks']:.0f})  "
            f"entries done {r['done']} failed {r['failed']}  {args.entries / r['seconds']:.2f} entries/s  "
            f"(load {r['load'][0]:.1f} -> {r['load'][1]:.1f})"
        )
    extra = ecs["seconds"] - base["seconds"]
    print(f"  ECS / default: {ecs['seconds'] / base['seconds']:.2f}x")
    print(f"  ECS launch path overhead: {extra:+.1f} s per set, {extra / max(ecs['tasks'], 1):+.2f} s per run (task), ")
    print(f"                            {extra / args.entries:+.3f} s per entry")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"  peak RSS: this process {peak:.0f} MiB, largest child {children:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
