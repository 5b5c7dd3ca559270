"""Collections: build one area from synthetic entry outputs and compare with `zip -r` of the same files.

    python bench/bench_collections.py [--mb 2048] [--entries 40] [--work DIR]

Writes `--mb` MB of address outputs (GeoJSON lines shaped like the conform writer's) as latest good outputs of
`--entries` entries in a local store, then in this run:
- baseline: `zip -r` of the same files (deflate level 6, one core), its input MB/s;
- the collection build of `global` (zip with GeoJSON lines + classic CSV + 0.1° summaries, and GeoParquet), in a
  child process so its peak memory (ru_maxrss) is its own; input MB/s and the ratio to `zip -r`;
- the GeoParquet write rate alone (parse + write; and the writer's own share);
- the nightly run over unchanged data: every area × layer partition, and `global`/addresses alone, in seconds.
Run it at two sizes (e.g. `--mb 200` and `--mb 800`) to see the peak memory stay flat.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from oa_dagster.collections.areas import AREA_IDS  # noqa: E402
from oa_dagster.collections.build import build_area  # noqa: E402
from oa_dagster.collections.features import read_blocks  # noqa: E402
from oa_dagster.collections.geoparquet import GeoParquetWriter  # noqa: E402
from oa_dagster.platform import store_layout as layout  # noqa: E402
from oa_dagster.platform.store import LocalStore, put_json  # noqa: E402
from oa_dagster.sources.model import LAYERS  # noqa: E402

STREETS = np.array(["MAIN ST", "OAK AVE", "PINE RD", "MAPLE DR", "CEDAR LN", "ELM CT", "WASHINGTON BLVD", "LAKE WAY"])
CITIES = np.array(["OAKLAND", "BERKELEY", "ALAMEDA", "FREMONT", "HAYWARD"])
BATCH = 20_000


def _lines(rng: np.random.Generator, rows: int, lon0: float, lat0: float) -> bytes:
    """`rows` features as the conform writer lays them out, built column-wise."""
    lon = pc.cast(pa.array(np.round(lon0 + rng.random(rows) * 0.5, 7)), pa.string())
    lat = pc.cast(pa.array(np.round(lat0 + rng.random(rows) * 0.5, 7)), pa.string())
    number = pc.cast(pa.array(rng.integers(1, 9999, rows)), pa.string())
    street = pa.array(STREETS[rng.integers(0, len(STREETS), rows)])
    city = pa.array(CITIES[rng.integers(0, len(CITIES), rows)])
    unit = pa.array(np.where(rng.random(rows) < 0.2, "APT 2", ""))
    hashes = pa.array([f"{v:016x}" for v in rng.integers(0, 2**62, rows).tolist()])
    ident = pc.cast(pa.array(np.arange(rows)), pa.string())
    parts = [
        '{"type":"Feature","properties":{"hash":"', hashes, '","number":"', number, '","street":"', street,
        '","unit":"', unit, '","city":"', city, '","district":"","region":"CA","postcode":"94',
        pc.utf8_slice_codeunits(number, 0, 3), '","id":"', ident,
        '","accuracy":1},"geometry":{"type":"Point","coordinates":[', lon, ",", lat, "]}}\n",
    ]  # fmt: skip
    joined = pc.binary_join_element_wise(*[pa.scalar(p) if isinstance(p, str) else p for p in parts], "")
    offsets = np.frombuffer(joined.buffers()[1], dtype=np.int32, count=len(joined) + 1, offset=joined.offset * 4)
    return memoryview(joined.buffers()[2])[offsets[0] : offsets[-1]].tobytes()


def make_store(root: Path, total_mb: int, entries: int) -> tuple[LocalStore, dict[str, Any], list[Path]]:
    store = LocalStore(root / "store")
    rng = np.random.default_rng(7)
    per_entry = total_mb * 1_000_000 // entries
    catalog: dict[str, Any] = {"id": "bench", "commit": "bench", "origin": "bench", "sources": {}, "entries": {}}
    catalog["entries"] = {layer: {} for layer in LAYERS}
    files = []
    for number in range(entries):
        source = f"xx/synthetic_{number:03d}"  # in no regional list: only `global` has entries
        key, run_id = f"{source}/city", f"run{number:04d}"
        prefix = layout.run_prefix("addresses", key, run_id)
        path = store.path(f"{prefix}/out.geojson")
        path.parent.mkdir(parents=True, exist_ok=True)
        written = features = 0
        with path.open("wb") as out:
            while written < per_entry:
                chunk = _lines(rng, BATCH, -122.5 + number * 0.01, 37.5)
                out.write(chunk)
                written += len(chunk)
                features += BATCH
        files.append(path)
        put_json(store, f"{prefix}/manifest.json", {"run_id": run_id})
        put_json(
            store,
            layout.latest_key("addresses", key),
            {
                "run_id": run_id,
                "prefix": prefix,
                "feature_count": features,
                "files": {"output": f"{prefix}/out.geojson"},
                "sizes": {"output": written},
            },
        )
        catalog["sources"][source] = {"data": {"layers": {"addresses": [{"name": "city", "license": "PD"}]}}}
        catalog["entries"]["addresses"][key] = {"source": source, "name": "city", "index": 0, "skip": False}
    put_json(store, layout.CURRENT_CATALOG, catalog)
    return store, catalog, files


def _child_build(root: str, catalog: dict[str, Any], queue: Any) -> None:
    store = LocalStore(root)
    started = time.perf_counter()
    _, results = build_area(store, catalog, "addresses", "global", work_dir=Path(root).parent / "work")
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    queue.put({"seconds": seconds, "maxrss_mb": usage.ru_maxrss / 1024, "record": results[0].record})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=2048, help="MB of entry outputs (default 2048)")
    parser.add_argument("--entries", type=int, default=40)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: system temp)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="oa-bench-collections-", dir=args.work))
    (root / "work").mkdir()
    try:
        started = time.perf_counter()
        store, catalog, files = make_store(root, args.mb, args.entries)
        size = sum(f.stat().st_size for f in files)
        print(
            f"synthetic outputs: {size / 1e6:,.0f} MB in {len(files)} entries ({time.perf_counter() - started:.0f} s)"
        )

        zip_mbs = None
        if shutil.which("zip"):
            started = time.perf_counter()
            subprocess.run(["zip", "-r", "-q", str(root / "baseline.zip"), "runs"], cwd=store.root, check=True)
            zip_seconds = time.perf_counter() - started
            zip_mbs = size / 1e6 / zip_seconds
            zipped = (root / "baseline.zip").stat().st_size / 1e6
            print(f"zip -r (baseline): {zip_seconds:.1f} s, {zip_mbs:.1f} MB/s of input, {zipped:,.0f} MB")
            (root / "baseline.zip").unlink()
        else:
            print("zip -r (baseline): `zip` is not installed here; no baseline")

        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        child = ctx.Process(target=_child_build, args=(str(store.root), catalog, queue))
        child.start()
        built = queue.get()
        child.join()
        record = built["record"]
        mbs = size / 1e6 / built["seconds"]
        ratio = f", {mbs / zip_mbs:.2f}x zip -r" if zip_mbs else ""
        print(
            f"collection build (global, free): {built['seconds']:.1f} s, {mbs:.1f} MB/s of input{ratio}; "
            f"{record['features']:,} features; zip {record['zip']['size'] / 1e6:,.0f} MB, "
            f"GeoParquet {record['parquet']['size'] / 1e6:,.0f} MB; "
            f"peak memory (child maxrss) {built['maxrss_mb']:.0f} MiB"
        )

        parse_write = writer_only = 0.0
        features = 0
        started = time.perf_counter()
        writer = GeoParquetWriter(root / "work" / "rate.parquet", "addresses")
        for path in files:
            with path.open("rb") as source:
                for block in read_blocks(source, "addresses"):
                    t0 = time.perf_counter()
                    writer.write("us/ca/x", "city", block)
                    writer_only += time.perf_counter() - t0
                    features += block.rows
        writer.close()
        parse_write = time.perf_counter() - started
        print(
            f"GeoParquet: {features / parse_write / 1e6:.2f} M features/s, {size / 1e6 / parse_write:.1f} MB/s of "
            f"input (parse + write); the writer alone {features / writer_only / 1e6:.2f} M features/s"
        )

        started = time.perf_counter()
        _, results = build_area(store, catalog, "addresses", "global")
        one = time.perf_counter() - started
        assert all(r.status in ("unchanged", "empty") for r in results), [r.status for r in results]
        started = time.perf_counter()
        for layer in LAYERS:
            for area in AREA_IDS:
                build_area(store, catalog, layer, area)
        every = time.perf_counter() - started
        partitions = len(LAYERS) * len(AREA_IDS)
        print(f"nightly run, nothing changed: global/addresses {one:.2f} s; all {partitions} partitions {every:.2f} s")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
