"""Benchmark building the results index over a synthetic store the size of OpenAddresses' catalog.

    python bench/bench_results_index.py [--entries 20000] [--s3-entries 2000] [--workers 16]

Writes, per entry, what publishing leaves (a manifest, a state.json, a latest pointer; every 10th entry a newer
failed run, every 50th a held run) and a catalog naming them all, on a local store and (with `--s3-entries` > 0)
on moto's S3 server over HTTP (in a process of its own). Prints the build's wall time, entries per second, the sizes of
index.html and state.txt, and the peak resident memory growth during the build. As a baseline for the S3 figure,
it times the build's pointer and state GETs one after another in one thread (what a naive index would do).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.peak_rss import PeakRSS  # noqa: E402
from oa_dagster.platform import store_layout as layout  # noqa: E402
from oa_dagster.platform.store import LocalStore, OutputStore, S3Store, put_json  # noqa: E402
from oa_dagster.results_index import build_results_index  # noqa: E402

LICENCES = [
    {"text": "Public Domain", "attribution": False},
    {"text": "CC-BY 4.0", "url": "https://creativecommons.org/licenses/by/4.0/", "attribution name": "A City"},
    {"text": "ODbL", "share-alike": True},
]


def _put(store: OutputStore, key: str, value: dict[str, Any]) -> None:
    store.put_bytes(key, json.dumps(value).encode())


def synthetic_store(store: OutputStore, entries: int) -> None:
    sources: dict[str, Any] = {}
    catalog_entries: dict[str, dict[str, Any]] = {"addresses": {}, "parcels": {}, "buildings": {}, "centerlines": {}}
    for i in range(entries):
        layer = "addresses" if i % 4 else "parcels"
        source = f"us/s{i % 50:02d}/place{i:06d}"
        key = f"{source}/city"
        sources[source] = {"data": {"layers": {layer: [{"name": "city", "license": LICENCES[i % 3]}]}}}
        catalog_entries[layer][key] = {"source": source, "name": "city", "skip": False, "version": "v1"}
        prefix = layout.run_prefix(layer, key, "run-1")
        files = {role: f"{prefix}/{name}" for role, name in (("output", "out.geojson"), ("state", "state.json"))}
        state = {"fingerprint": f"{i:032x}", "cache_seconds": 1.5, "process_seconds": 2.5, "source_problem": None}
        manifest = {"run_id": "run-1", "created": "2026-11-01T00:00:00+00:00", "files": files, "feature_count": i}
        _put(store, files["state"], state)
        _put(store, f"{prefix}/{layout.MANIFEST}", manifest)
        _put(store, layout.latest_key(layer, key), {**manifest, "prefix": prefix})
        if i % 10 == 0 or i % 50 == 1:
            newer = layout.run_prefix(layer, key, "run-2")
            failed = {"run_id": "run-2", "created": "2026-11-02T00:00:00+00:00", "source_problem": "Timed out"}
            _put(store, f"{newer}/state.json", {**state, "source_problem": "Timed out"})
            _put(store, f"{newer}/{layout.MANIFEST}", {**failed, "files": {"log": f"{newer}/log.txt"}})
            if i % 50 == 1:
                held = {**manifest, "run_id": "run-2", "files": {"state": f"{newer}/state.json"}, "reasons": ["drop"]}
                _put(store, layout.held_key(layer, key), held)
    put_json(
        store,
        layout.CURRENT_CATALOG,
        {"id": "bench", "commit": "bench", "sources": sources, "entries": catalog_entries},
    )


def measure(label: str, store: OutputStore, entries: int, workers: int) -> None:
    started = time.perf_counter()
    synthetic_store(store, entries)
    written = time.perf_counter() - started
    with PeakRSS() as memory:
        started = time.perf_counter()
        result = build_results_index(store, workers=workers)
        seconds = time.perf_counter() - started
    counts = ", ".join(f"{n} {status}" for status, n in result.status_counts().items() if n)
    print(
        f"{label}: {entries:,} entries ({counts}) written in {written:.1f} s; index built in {seconds:.2f} s = "
        f"{entries / seconds:,.0f} entries/s; index.html {result.sizes['index.html'] / 1e6:.1f} MB, state.txt "
        f"{result.sizes['state.txt'] / 1e6:.1f} MB; peak RSS growth {(memory.peak - memory.base) / 1e6:.0f} MB"
    )
    if isinstance(store, S3Store):  # the same pointer and state GETs, one after another
        catalog = json.loads(store.get_bytes(layout.CURRENT_CATALOG) or b"{}")
        keys = [
            key
            for layer, entries in catalog["entries"].items()
            for partition_key in entries
            for key in (layout.latest_key(layer, partition_key), f"runs/{layer}/{partition_key}/run-1/state.json")
        ]
        started = time.perf_counter()
        for key in keys:
            store.get_bytes(key)
        serial = time.perf_counter() - started
        print(f"{label}: baseline, the {len(keys):,} pointer and state GETs in one thread: {serial:.2f} s")


def _serve_moto(ready: multiprocessing.Queue) -> None:
    """moto's S3 server in its own process, so its work does not share this process's interpreter lock."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # it logs every request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    ready.put(f"http://{host}:{port}")
    threading.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--s3-entries", type=int, default=2_000)
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        measure("local", LocalStore(Path(tmp) / "store"), args.entries, args.workers)
    if args.s3_entries:
        import boto3

        ready: multiprocessing.Queue = multiprocessing.Queue()
        server = multiprocessing.Process(target=_serve_moto, args=(ready,), daemon=True)
        server.start()
        try:
            client = boto3.client(
                "s3",
                endpoint_url=ready.get(timeout=60),
                region_name="us-east-1",
                aws_access_key_id="bench",
                aws_secret_access_key="bench",
            )
            client.create_bucket(Bucket="bench")
            measure("s3 (moto server process)", S3Store(client, "bench", "oa"), args.s3_entries, args.workers)
        finally:
            server.terminate()
            server.join()


if __name__ == "__main__":
    main()
