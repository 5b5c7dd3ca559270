"""A collections trigger: runs launched and wall time, one run per partition (before) against one planned run.

    python bench/bench_collections_trigger.py [--mb 20] [--entries 40] [--work DIR]

Builds a store of `--entries` synthetic address entries (`bench_collections.make_store`), two copies of it, and on
one Dagster instance, in this process:
- before (the old triggers): one `collections_job` run per area × layer partition (36), for the first build and
  for the nightly no-change case;
- after: `collections_schedule` evaluated (the plan) and the one run it requests, or none when nothing changed.
Runs execute in process, so the 36 run-process start-ups of "before" are not in its wall time; the start-up of one
run process is shown apart (a fresh interpreter loading the code location), to multiply by the runs launched.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import dagster as dg  # noqa: E402
from bench_collections import make_store  # noqa: E402

from oa_dagster.assets.collections import COLLECTION_PARTITIONS  # noqa: E402
from oa_dagster.definitions import build_definitions  # noqa: E402
from oa_dagster.resources.deployments import local_resources  # noqa: E402


def per_partition(defs: dg.Definitions, instance: dg.DagsterInstance) -> tuple[int, float]:
    job = defs.resolve_job_def("collections_job")
    started = time.perf_counter()
    keys = COLLECTION_PARTITIONS.get_partition_keys()
    for key in keys:
        assert job.execute_in_process(instance=instance, partition_key=key).success
    return len(keys), time.perf_counter() - started


def planned(defs: dg.Definitions, instance: dg.DagsterInstance, resources: dict, night: int) -> tuple[int, float]:
    schedule = defs.resolve_schedule_def("collections_schedule")
    started = time.perf_counter()
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=datetime(2026, 3, night, 3, tzinfo=UTC),
        repository_def=defs.get_repository_def(),
        resources=resources,
    ) as context:
        requests = list(schedule.evaluate_tick(context).run_requests or [])
    job = defs.resolve_job_def("collections_job")
    for request in requests:
        assert job.execute_in_process(instance=instance, tags=request.tags, run_config=request.run_config).success
    return len(requests), time.perf_counter() - started


def run_start_seconds() -> float:
    """One run process's fixed cost, roughly: a fresh interpreter importing dagster and loading the definitions."""
    started = time.perf_counter()
    code = "import oa_dagster.definitions"  # builds the code location's definitions at import
    subprocess.run([sys.executable, "-W", "ignore", "-c", code], check=True, cwd=ROOT)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=20, help="MB of entry outputs (default 20)")
    parser.add_argument("--entries", type=int, default=40)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: system temp)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    root = Path(tempfile.mkdtemp(prefix="bench-trigger-", dir=args.work))
    try:
        make_store(root / "before", args.mb, args.entries)
        shutil.copytree(root / "before", root / "after")
        rows = []
        with dg.instance_for_test() as instance:
            for name in ("before", "after"):
                resources = local_resources(root / name / "store", work_dir=str(root / name / "work"))
                defs = build_definitions(resources)
                for case, night in (("first build", 3), ("nothing changed", 5)):
                    if name == "before":
                        runs, seconds = per_partition(defs, instance)
                    else:
                        runs, seconds = planned(defs, instance, resources, night)
                    rows.append((case, name, runs, seconds))
        start = run_start_seconds()
        print(f"{args.entries} entries, {args.mb} MB; one run process start-up: {start:.1f} s")
        print(f"{'case':<16} {'trigger':<7} {'runs':>4} {'in-process s':>12} {'+ start-ups s':>13}")
        for case, name, runs, seconds in rows:
            print(f"{case:<16} {name:<7} {runs:>4} {seconds:>12.1f} {seconds + runs * start:>13.1f}")
        for case in ("first build", "nothing changed"):
            old, new = (next(r for r in rows if r[0] == case and r[1] == n) for n in ("before", "after"))
            ratio = (old[3] + old[2] * start) / max(new[3] + new[2] * start, 1e-9)
            print(f"{case}: {ratio:.1f}x less wall time with start-ups counted")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
