"""Benchmark the ArcGIS REST dumper: concurrent pool against the same code with one worker.

Run: `python bench/bench_arcgis.py [--features 200000] [--latency 0.2] [--page 1000] [--workers 6 8]`
(6 is the default pool size).
The fake server (tests/servers/arcgis.py) runs in its own process, adds `--latency` seconds per request
and serves pages pre-rendered by an untimed warm-up dump, so the figures measure the dumper. Prints wall
time, features/s and peak RSS growth of this process during each dump (flat memory: it should not grow
with the layer size).
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.peak_rss import PeakRSS  # noqa: E402
from oa_dagster.fetch import FetchOptions, fetch_entry  # noqa: E402
from tests.servers.arcgis import FakeArcGISServer, FakeLayer, point_features  # noqa: E402
from tests.servers.helpers import make_entry  # noqa: E402

CONFORM = {"format": "geojson", "number": "NUMBER", "street": "STREET"}


def _serve(n: int, latency: float, page: int, ready: multiprocessing.Queue) -> None:
    server = FakeArcGISServer()
    server.request_queue_size = 128
    url = server.add_layer(
        "bench", FakeLayer(point_features(n), max_record_count=page, latency=latency, cache_responses=True)
    )
    ready.put(url)
    server.serve_forever(poll_interval=0.05)


def dump(url: str, workers: int, workdir: Path) -> tuple[float, int, int]:
    options = FetchOptions(esri_workers=workers, timeout=60, backoff=0.2)
    entry = make_entry(url, protocol="ESRI", conform=dict(CONFORM))
    with PeakRSS() as memory:
        started = time.perf_counter()
        download = fetch_entry(entry, workdir, options, logging.getLogger("bench"))
        seconds = time.perf_counter() - started
    download.path.unlink()
    return seconds, download.feature_count or 0, memory.peak - memory.base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=200_000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--page", type=int, default=1000)
    parser.add_argument("--workers", type=int, nargs="+", default=[FetchOptions().esri_workers, 8])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    ready: multiprocessing.Queue = multiprocessing.Queue()
    server = multiprocessing.Process(target=_serve, args=(args.features, args.latency, args.page, ready), daemon=True)
    server.start()
    url = ready.get(timeout=120)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            print(f"{args.features:,} features, {args.page} per page, {args.latency * 1000:.0f} ms per request")
            warm, count, _ = dump(url, 32, work)  # renders and caches every page on the server
            print(f"warm-up (pre-rendering pages, 32 workers): {warm:.1f} s, {count:,} features")
            results = {}
            for workers in [1, *args.workers]:
                seconds, count, grown = dump(url, workers, work)
                results[workers] = seconds
                label = "sequential (1 worker)" if workers == 1 else f"concurrent ({workers} workers)"
                print(
                    f"{label:24s} {seconds:7.2f} s  {count / seconds:9,.0f} features/s  "
                    f"peak RSS +{grown / 2**20:.0f} MiB"
                )
            for workers in args.workers:
                print(f"speed-up with {workers} workers: {results[1] / results[workers]:.1f}x")
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
