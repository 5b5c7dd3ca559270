"""Benchmark `oa-dagster process` against the floor of merely reading its file, per input format.

Run: `python bench/bench_process.py [--rows 1000000] [--memory-rows 1000000 5000000] [--rounds 3] [--data DIR]
[--baseline DIR]`.

For each format (CSV, zipped shapefile, GeoJSON, GeoPackage, zipped File Geodatabase) of synthetic county address
points, in the same run and alternating round by round:
- floor: a fresh Python process that unpacks the download (zipped formats) and reads every batch into Arrow with
  the reader the engine uses (`conform.readers.open_source_file`), no functions, no hashing, no writing;
- process: the whole `oa-dagster process` command (`--no-preview`), start-up included.
Both are wall seconds, minimum and median over the rounds; the ratio is min process / min floor (the goal is
<= 1.5); `cpu` is the process child's user+system seconds (all threads), which load on the machine hardly moves.
Peak memory is the max RSS of a `process` child at each of `--memory-rows` (flat means within 20%). With
`--baseline DIR` (a copy of another version's source tree, e.g. `git archive main | tar -x -C DIR`) the same
children run that version too, round by round in turn with this one, so both see the same machine.
The load average is printed before and after: other work on the machine inflates medians more than minima.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic import (  # noqa: E402
    CONFORM,
    STATE_PLANE,
    write_csv,
    write_gdb_zip,
    write_geojson,
    write_gpkg,
    write_shapefile_zip,
    write_source,
)

FORMATS: dict[str, tuple[str, Callable[[Path, int], None], dict, str | None]] = {
    "csv": ("csv", write_csv, {**CONFORM, "format": "csv", "lon": "X", "lat": "Y", "srs": STATE_PLANE}, None),
    "shapefile-zip": ("zip", write_shapefile_zip, {**CONFORM, "format": "shapefile"}, "zip"),
    "geojson": ("geojson", write_geojson, {**CONFORM, "format": "geojson"}, None),
    "gpkg": ("gpkg", write_gpkg, {**CONFORM, "format": "gpkg"}, None),
    "gdb-zip": ("gdb.zip", write_gdb_zip, {**CONFORM, "format": "gdb", "id": "ADDRESSID"}, "zip"),
}

# The floor child: unpack like the engine's fetch step, then drain the engine's reader; prints its seconds.
FLOOR = """
import sys, tempfile, time
from pathlib import Path
from oa_dagster.conform.readers import open_source_file
from oa_dagster.conform.select import select_input
from oa_dagster.fetch import unpack
path, fmt, compression = Path(sys.argv[1]), sys.argv[2], sys.argv[3] or None
conform = {"format": fmt}
with tempfile.TemporaryDirectory() as work:
    files = unpack(path, Path(work), compression=compression, conform_file=None) if compression else [path]
    started = time.perf_counter()
    opened = open_source_file(select_input(files, fmt, None), fmt, conform)
    rows = sum(batch.columns.num_rows for batch in opened.batches)
    print(rows, time.perf_counter() - started)
"""


def prepare(data_dir: Path, rows: int, formats: list[str]) -> dict[str, tuple[Path, Path]]:
    """Write (once) each format's input and its source; returns (source file, data file) by format."""
    prepared = {}
    for kind in formats:
        suffix, writer, conform, compression = FORMATS[kind]
        data = data_dir / f"points-{rows}.{suffix}"
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
        prepared[kind] = (source, data)
    return prepared


@dataclass
class Child:
    wall: float
    cpu: float
    peak: int
    output: str


def _wait(command: list[str], code: Path | None) -> Child:
    """Run a child on this tree's code, or on the tree at `code`; its wall and CPU seconds, peak RSS, stdout.

    The child of another tree also runs in that tree: `python -c`/`-m` put the working directory first on the
    import path, so from this tree's root it would import this tree's package whatever PYTHONPATH says.
    """
    env = {**os.environ, "PYTHONPATH": str(code)} if code else None
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, env=env, cwd=code)
    output = child.stdout.read().decode() if child.stdout else ""
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(command)}")
    return Child(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024, output)


def floor(kind: str, data: Path, code: Path | None) -> Child:
    """The floor child; its output is the rows it read and the seconds it spent reading them."""
    _, _, conform, compression = FORMATS[kind]
    return _wait([sys.executable, "-c", FLOOR, str(data), conform["format"], compression or ""], code)


def process(source: Path, out_dir: Path, code: Path | None) -> tuple[Child, dict]:
    """One `oa-dagster process` child and its state.json."""
    command = [sys.executable, "-m", "oa_dagster.cli", "process", str(source), "--layer", "addresses"]
    child = _wait([*command, "--output", str(out_dir), "--no-preview", "-q"], code)
    state = json.loads((out_dir / "addresses" / source.stem / "county" / "state.json").read_text())
    return child, state


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def compare(args: argparse.Namespace, inputs: dict[int, dict[str, tuple[Path, Path]]], versions: dict) -> dict:
    """The floor/process table at `--rows`; returns the peak RSS by (format, version, rows)."""
    peaks: dict[tuple[str, str, int], int] = {}
    print(
        f"{'input':<15}{'version':<9}{'rows':>10}{'floor min':>10}{'median':>8}{'(read)':>8}"
        f"{'process min':>12}{'median':>8}{'ratio':>7}{'cpu s':>7}{'features/s':>12}{'peak MB':>9}"
    )
    for kind in args.formats:
        source, data = inputs[args.rows][kind]
        floors: dict[str, list[Child]] = {v: [] for v in versions}
        runs: dict[str, list[Child]] = {v: [] for v in versions}
        for _ in range(args.rounds):
            for version, code in versions.items():
                floors[version].append(floor(kind, data, code))
                with tempfile.TemporaryDirectory() as out:
                    child, state = process(source, Path(out), code)
                runs[version].append(child)
        for version in versions:
            walls, floor_walls = [c.wall for c in runs[version]], [c.wall for c in floors[version]]
            read = min(float(c.output.split()[1]) for c in floors[version])
            peak = peaks[(kind, version, args.rows)] = max(c.peak for c in runs[version])
            print(
                f"{kind:<15}{version:<9}{args.rows:>10,}{min(floor_walls):>10.2f}{statistics.median(floor_walls):>8.2f}"
                f"{read:>8.2f}{min(walls):>12.2f}{statistics.median(walls):>8.2f}"
                f"{min(walls) / min(floor_walls):>7.2f}{min(c.cpu for c in runs[version]):>7.2f}"
                f"{state['feature_count'] / min(walls):>12,.0f}{peak / 2**20:>9.0f}",
                flush=True,
            )
    return peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the floor/process comparison")
    parser.add_argument("--memory-rows", type=int, nargs="*", default=[1_000_000, 5_000_000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=list(FORMATS))
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "oa-dagster-bench")
    parser.add_argument("--baseline", type=Path, help="another version's source tree, run in turn with this one")
    args = parser.parse_args()
    args.data = args.data.resolve()  # children of another tree run in that tree
    args.data.mkdir(parents=True, exist_ok=True)
    versions = {"this": None, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    sizes = sorted({args.rows, *args.memory_rows} if args.rounds else set(args.memory_rows))
    inputs = {rows: prepare(args.data, rows, args.formats) for rows in sizes}
    print(f"load average before: {_load()} ({os.cpu_count()} cores)", flush=True)
    peaks = compare(args, inputs, versions) if args.rounds else {}
    for rows in args.memory_rows:
        for kind in args.formats:
            for version, code in versions.items():
                if (kind, version, rows) not in peaks:
                    with tempfile.TemporaryDirectory() as out:
                        peaks[(kind, version, rows)] = process(inputs[rows][kind][0], Path(out), code)[0].peak
    if args.memory_rows:
        print("peak MB of process by rows: " + "  ".join(f"{rows:,}" for rows in args.memory_rows))
        for kind in args.formats:
            for version in versions:
                figures = "  ".join(f"{peaks[(kind, version, rows)] / 2**20:>9.0f}" for rows in args.memory_rows)
                print(f"  {kind:<15}{version:<9}{figures}")
    print(f"load average after: {_load()}")


if __name__ == "__main__":
    main()
