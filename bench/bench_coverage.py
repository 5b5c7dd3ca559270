"""Coverage at scale: the streaming hull, the whole coverage of a synthetic catalog, and the three maps.

    python bench/bench_coverage.py [--features 2000000] [--sources 2000]

1. Hull of one output of `--features` address points (GeoJSON lines as the writer makes them): MB/s and features/s
   of `output_hull`, against a baseline in the same process that parses every line with `json.loads` and takes
   the hull of all the points at once (measured on a tenth of the lines and scaled). Peak RSS after a file a tenth
   the size and after the full one (before the baseline runs): flat memory shows as the same peak.
2. `compute_coverage` + `write_coverage` on a local store holding a catalog of `--sources` sources (a third by
   county GEOID, some by state GEOID, ISO country, ISO subdivision with an output to outline, coverage polygon;
   each with one entry, most good, some failing with history): seconds in total and per source.
3. `render_map` for the world, the USA and Europe from the resulting render-world.geojson: seconds and PNG size.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import shapely  # noqa: E402

from oa_dagster.coverage.boundaries import load_boundaries  # noqa: E402
from oa_dagster.coverage.hull import output_hull  # noqa: E402
from oa_dagster.coverage.maps import MAPS, render_map  # noqa: E402
from oa_dagster.coverage.report import RENDER_GEOJSON_KEY, compute_coverage, write_coverage  # noqa: E402
from oa_dagster.platform import store_layout as layout  # noqa: E402
from oa_dagster.platform.publishing import publish_run  # noqa: E402
from oa_dagster.platform.store import LocalStore, get_json, put_json  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_points(path: Path, features: int, seed: int = 3) -> None:
    rng = np.random.default_rng(seed)
    with path.open("w") as out:
        for start in range(0, features, 100_000):
            n = min(100_000, features - start)
            lon = rng.uniform(-122.5, -121.5, n).round(7)
            lat = rng.uniform(37.2, 38.2, n).round(7)
            out.writelines(
                f'{{"type":"Feature","properties":{{"number":"{i}","street":"MAIN ST","hash":"{i:016x}"}},'
                f'"geometry":{{"type":"Point","coordinates":[{x},{y}]}}}}\n'
                for i, x, y in zip(range(start, start + n), lon, lat, strict=True)
            )


def baseline_hull(path: Path, lines: int) -> tuple[float, int]:
    """json.loads per line, every point kept, one hull: what a direct implementation does."""
    started = time.perf_counter()
    points = []
    with path.open("rb") as source:
        for n, line in enumerate(source):
            if n >= lines:
                break
            points.append(json.loads(line)["geometry"]["coordinates"])
    hull = shapely.multipoints(np.asarray(points)).convex_hull
    assert not hull.is_empty
    return time.perf_counter() - started, len(points)


def bench_hull(work: Path, features: int) -> None:
    print(f"== hull of {features:,} address points")
    small, large = work / "small.geojson", work / "large.geojson"
    write_points(small, features // 10)
    write_points(large, features)
    output_hull(small)
    small_peak = peak_rss_mb()
    started = time.perf_counter()
    result = output_hull(large)
    seconds = time.perf_counter() - started
    large_peak = peak_rss_mb()
    size_mb = large.stat().st_size / 1e6
    base_seconds, base_lines = baseline_hull(large, features // 10)
    base_rate = base_lines / base_seconds
    rate = result.features_read / seconds
    print(f"output_hull: {size_mb:,.0f} MB in {seconds:.2f} s = {size_mb / seconds:,.0f} MB/s, {rate:,.0f} features/s")
    print(
        f"baseline json.loads + one hull: {base_rate:,.0f} features/s (on {base_lines:,} lines); "
        f"ratio {rate / base_rate:.1f}x"
    )
    print(
        f"peak RSS after the {size_mb / 10:,.0f} MB output: {small_peak:,.0f} MB; "
        f"after the {size_mb:,.0f} MB one: {large_peak:,.0f} MB"
    )


def _publish(store: LocalStore, folder: Path, key: str, points: list[tuple[float, float]] | None, n: int) -> None:
    out = folder / f"{n}"
    out.mkdir(parents=True)
    if points:
        lines = [
            json.dumps(
                {
                    "type": "Feature",
                    "properties": {"number": "1"},
                    "geometry": {"type": "Point", "coordinates": list(p)},
                },
                separators=(",", ":"),
            )
            for p in points
        ]
        (out / "out.geojson").write_text("\n".join(lines) + "\n")
        state: dict[str, Any] = {"layer": "addresses", "feature_count": len(lines), "files": {"output": "out.geojson"}}
    else:
        state = {"layer": "addresses", "feature_count": None, "files": {}, "source_problem": "Could not download"}
    publish_run(store, state, out, f"run{n}", entry_key=key, entry_version="v1", max_drop=1.0)


def synthetic_store(root: Path, sources: int, seed: int = 5) -> LocalStore:
    """A catalog of `sources` sources with one addresses entry each, and their runs."""
    rng = random.Random(seed)
    boundaries = load_boundaries()
    counties, states = sorted(boundaries.counties), sorted(boundaries.states)
    countries = sorted(boundaries.countries)
    store = LocalStore(root / "store")
    catalog: dict[str, Any] = {"id": "bench", "sources": {}, "entries": {"addresses": {}}}
    runs = 0
    for i in range(sources):
        kind = i % 6
        if kind in (0, 1):
            coverage: dict[str, Any] = {"US Census": {"geoid": rng.choice(counties)}, "country": "us"}
        elif kind == 2:
            coverage = {"US Census": {"geoid": rng.choice(states)}}
        elif kind == 3:
            coverage = {"ISO 3166": {"alpha2": rng.choice(countries)}}
        elif kind == 4:
            coverage = {"ISO 3166": {"alpha2": "DE-BY"}}  # outlined from its output
        else:
            lon, lat = rng.uniform(-120, -75), rng.uniform(30, 45)
            ring = [[lon, lat], [lon + 0.3, lat], [lon + 0.3, lat + 0.2], [lon, lat]]
            coverage = {"country": "us", "county": "x", "geometry": {"type": "Polygon", "coordinates": [ring]}}
        key = f"xx/s{i:05d}"
        catalog["sources"][key] = {"data": {"coverage": coverage}}
        catalog["entries"]["addresses"][f"{key}/city"] = {"source": key, "name": "city", "skip": False}
        centre = (rng.uniform(10.5, 13), rng.uniform(47.5, 50))
        points = [(centre[0] + rng.uniform(0, 0.2), centre[1] + rng.uniform(0, 0.2)) for _ in range(20)]
        if i % 10 == 9:  # failing now, good before
            _publish(store, root / "runs" / key, f"{key}/city", points, runs)
            _publish(store, root / "runs2" / key, f"{key}/city", None, runs + 1)
            runs += 2
        else:
            _publish(store, root / "runs" / key, f"{key}/city", points, runs)
            runs += 1
    put_json(store, layout.CURRENT_CATALOG, catalog)
    return store


def bench_coverage(work: Path, sources: int) -> dict[str, Any]:
    print(f"== coverage of {sources:,} sources")
    started = time.perf_counter()
    store = synthetic_store(work / "catalog", sources)
    print(f"(store prepared in {time.perf_counter() - started:.1f} s)")
    load_boundaries()
    started = time.perf_counter()
    report = compute_coverage(store)
    computed = time.perf_counter() - started
    write_coverage(store, report)
    total = time.perf_counter() - started
    print(
        f"compute_coverage: {computed:.2f} s ({computed / sources * 1000:.1f} ms per source); with the files "
        f"{total:.2f} s; {len(report.countries)} countries, {len(report.states)} states, "
        f"{len(report.counties)} counties, {len(report.lost)} lost entries; placements {report.placements()}"
    )
    return get_json(store, RENDER_GEOJSON_KEY)


def bench_maps(geojson: dict[str, Any]) -> None:
    print(f"== maps of {len(geojson['features']):,} areas")
    boundaries = load_boundaries()
    for name, view in MAPS.items():
        started = time.perf_counter()
        png = render_map(view, geojson, boundaries)
        print(f"{name}: {view.width}x{view.height} in {time.perf_counter() - started:.2f} s, {len(png):,} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=2_000_000)
    parser.add_argument("--sources", type=int, default=2000)
    args = parser.parse_args()
    started = time.perf_counter()
    load_boundaries()
    print(f"boundaries loaded in {time.perf_counter() - started:.2f} s")
    with tempfile.TemporaryDirectory(prefix="oa-bench-coverage-") as tmp:
        bench_hull(Path(tmp), args.features)
        geojson = bench_coverage(Path(tmp), args.sources)
        bench_maps(geojson)
    print(f"peak RSS {peak_rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()
