"""Benchmark `oa-dagster process` on synthetic county address layers (CSV, zipped shapefile, GeoJSON).

Run: `python bench/bench_process.py [--rows 100000 1000000] [--data DIR]`. Prints wall time of the whole
command (start-up included, `--no-preview`), features/second and peak memory (max RSS of the child). No ratio
against the reference processor: it is not on this machine, and a ratio counts only when both ran side by side.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic import CONFORM, STATE_PLANE, write_csv, write_geojson, write_shapefile_zip, write_source  # noqa: E402


def prepare(data_dir: Path, rows: int) -> dict[str, Path]:
    """Write (once) the three inputs and their sources; returns source paths by kind."""
    sources = {}
    csv_conform = {**CONFORM, "format": "csv", "lon": "X", "lat": "Y", "srs": STATE_PLANE}
    kinds = {
        "csv": (f"points-{rows}.csv", write_csv, csv_conform, None),
        "shapefile-zip": (f"points-{rows}.zip", write_shapefile_zip, {**CONFORM, "format": "shapefile"}, "zip"),
        "geojson": (f"points-{rows}.geojson", write_geojson, {**CONFORM, "format": "geojson"}, None),
    }
    for kind, (name, writer, conform, compression) in kinds.items():
        data = data_dir / name
        if not data.exists():
            print(f"writing {data.name} ...", flush=True)
            # in a child process: a parent grown by the data would inflate the measured children's peak RSS
            child = multiprocessing.get_context("spawn").Process(target=writer, args=(data, rows))
            child.start()
            child.join()
            if child.exitcode:
                raise SystemExit(f"writing {data} failed")
        source = data_dir / f"{kind}-{rows}.json"
        write_source(source, data.name, conform, compression)
        sources[kind] = source
    return sources


def run(source: Path, out_dir: Path) -> tuple[float, int, dict]:
    """Wall seconds, peak RSS bytes, and state.json of one `oa-dagster process` run."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "oa_dagster.cli",
            "process",
            str(source),
            "--layer",
            "addresses",
            "--output",
            str(out_dir),
            "--no-preview",
            "-q",
        ],
        stdout=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"process failed for {source}")
    state = json.loads((out_dir / "addresses" / source.stem / "county" / "state.json").read_text())
    return wall, usage.ru_maxrss * 1024, state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "oa-dagster-bench")
    args = parser.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    print(f"{'input':<15}{'rows':>10}{'wall s':>9}{'features/s':>13}{'peak MB':>9}")
    for rows in args.rows:
        for kind, source in prepare(args.data, rows).items():
            with tempfile.TemporaryDirectory() as out:
                wall, peak, state = run(source, Path(out))
            count = state["feature_count"]
            print(f"{kind:<15}{rows:>10,}{wall:>9.2f}{count / wall:>13,.0f}{peak / 2**20:>9.0f}", flush=True)


if __name__ == "__main__":
    main()
