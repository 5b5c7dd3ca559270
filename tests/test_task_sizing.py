"""ECS task sizes: the Fargate table, and the `ecs/cpu` / `ecs/memory` tags the set sensor puts on each run from
what its entries needed last time (peak memory and seconds, kept in their output pointers)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from oa_dagster.definitions import defs
from oa_dagster.platform import store_layout as layout
from oa_dagster.platform.store import get_json, put_json
from oa_dagster.platform.task_sizing import (
    CI_TASK,
    CPU_TAG,
    DEFAULT_TASK,
    MEMORY_TAG,
    TaskSize,
    fargate_size,
    size_for_entries,
)
from oa_dagster.sensors.sets import set_launcher
from tests.platform_helpers import csv_entry, local, materialize_catalog, materialize_range, write_csv, write_source


@pytest.mark.parametrize(
    ("cpu", "memory", "size"),
    [
        (1024, 100, TaskSize(1024, 2048)),  # the smallest memory of that CPU
        (1024, 5000, TaskSize(1024, 5120)),  # rounded up to the 1 GiB step
        (1024, 10000, TaskSize(2048, 10240)),  # past 1 vCPU's 8 GiB: 2 vCPU
        (2048, 100, TaskSize(2048, 4096)),
        (1024, 40000, TaskSize(8192, 40960)),  # 4 GiB steps there
        (1024, 500000, TaskSize(16384, 122880)),  # beyond Fargate: the largest
    ],
)
def test_sizes_are_valid_fargate_combinations(cpu: int, memory: float, size: TaskSize) -> None:
    assert fargate_size(cpu, memory) == size


def test_entries_without_figures_or_within_the_default_get_the_default_task() -> None:
    assert size_for_entries([]) == DEFAULT_TASK
    assert size_for_entries([{"seconds": None, "peak_memory_mb": None}, {}]) == DEFAULT_TASK
    assert size_for_entries([{"seconds": 600, "peak_memory_mb": 3000}]) == DEFAULT_TASK  # 3000 * 1.25 fits 4096


def test_ci_job_runs_ask_for_the_small_task() -> None:
    tags = defs.resolve_job_def("ci_job_job").tags
    assert (tags[CPU_TAG], tags[MEMORY_TAG]) == (str(CI_TASK.cpu), str(CI_TASK.memory))


def test_the_set_sensor_sizes_each_run_from_its_entries_last_peak_memory_and_seconds(tmp_path: Path) -> None:
    write_csv(tmp_path / "a.csv", 3)
    sources = tmp_path / "sources"
    for name in ("big", "long", "small"):
        write_source(sources, f"us/xx/{name}", {"addresses": [csv_entry("city", "../../../a.csv")]})
    resources = local(tmp_path, sources, batch_max_entries=1)
    store = resources["store"].get_store()
    with dg.instance_for_test() as instance:
        materialize_catalog(instance, resources)
        keys = [f"us/xx/{name}/city" for name in ("big", "long", "small")]
        for key in keys:
            assert materialize_range(instance, resources, "addresses", key, key).success
        pointers = {key: get_json(store, layout.latest_key("addresses", key)) for key in keys}
        # every processed entry records its own peak: a Python process converting a CSV holds tens of MiB
        assert all(10 < pointer["peak_memory_mb"] < DEFAULT_TASK.memory for pointer in pointers.values())
        # what the big and the long entry needed last time on a real upstream (a crafted history: the CSV is tiny)
        put_json(store, layout.latest_key("addresses", keys[0]), {**pointers[keys[0]], "peak_memory_mb": 6000.0})
        put_json(store, layout.latest_key("addresses", keys[1]), {**pointers[keys[1]], "seconds": 5400.0})

        materialize_catalog(instance, resources, tags={"oa/set": "set-sized", "oa/launch": "all"})
        requests = set_launcher(dg.build_sensor_context(instance=instance, resources=resources)).run_requests
        sizes = {r.tags["dagster/asset_partition_range_start"]: (r.tags[CPU_TAG], r.tags[MEMORY_TAG]) for r in requests}
        assert sizes == {
            keys[0]: ("1024", "8192"),  # 6000 MiB + a quarter: the largest 1-vCPU task
            keys[1]: ("2048", "4096"),  # an hour and a half: a second vCPU
            keys[2]: ("1024", "4096"),  # the default task
        }
