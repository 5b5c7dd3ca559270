"""Sets: batch planning, the weekly schedule, and the sensor that launches and follows a set."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import dagster as dg
import pytest

from oa_dagster.assets.layers import LAYER_PARTITIONS
from oa_dagster.assets.sets import SET_PROGRESS
from oa_dagster.jobs.layers import LAYER_JOBS
from oa_dagster.platform.set_planning import ChainsState, RunState, chains_state, plan_batches
from oa_dagster.resources.processing import ProcessingSettings
from oa_dagster.sensors.sets import build_set_schedule, refresh_partition_status, set_launcher, set_run_requests
from tests.platform_helpers import csv_entry, local, materialize_catalog, materialize_range, write_csv, write_source


def test_batches_are_contiguous_respect_selection_and_time_budget() -> None:
    keys = [f"k{i}" for i in range(10)]
    batches = plan_batches(keys, expected_seconds={"k3": 500}, target_seconds=20, max_entries=3, guess_seconds=5)
    assert [b.keys for b in batches] == [("k0", "k1", "k2"), ("k3",), ("k4", "k5", "k6"), ("k7", "k8", "k9")]
    selected = plan_batches(keys, ["k1", "k2", "k5"], max_entries=10)
    assert [(b.start, b.end) for b in selected] == [("k1", "k2"), ("k5", "k5")]


def test_batches_for_several_slots_come_in_whole_rounds_and_long_entries_still_run_alone() -> None:
    keys = [f"k{i:04d}" for i in range(1000)]
    small = dict.fromkeys(keys, 0.04)  # the weekly case: every entry's previous seconds are known
    batches = plan_batches(keys, expected_seconds=small, slots=2, entry_overhead_seconds=0.1)
    sizes = [len(b.keys) for b in batches]
    assert len(batches) % 2 == 0 and sum(sizes) == 1000 and max(sizes) - min(sizes) <= 10
    assert len(batches) < 20  # ~140 s of small work: a few runs of 100+ entries, not one per 24 entries
    assert [b.keys[0] for b in batches] == sorted(b.keys[0] for b in batches)  # contiguous, in order
    few = plan_batches(keys[:10], expected_seconds=small, slots=2, entry_overhead_seconds=0.1)
    assert len(few) == 2  # both slots work even on a tiny set
    with_long = plan_batches(keys[:100], expected_seconds={**small, "k0050": 900}, slots=4, entry_overhead_seconds=0.1)
    assert ("k0050",) in [b.keys for b in with_long]
    assert max(len(b.keys) for b in plan_batches(keys, slots=2)) <= 200  # max_entries still caps a batch
    unknown = plan_batches(keys, slots=2)  # no history: 5 s guessed per entry, 120 s per run
    assert all(len(b.keys) <= 24 for b in unknown) and len(unknown) % 2 == 0


def test_entries_that_all_ran_before_come_in_one_round_and_estimated_ones_in_two() -> None:
    """Each round costs every slot a run start: an incremental set's changed entries (all with previous seconds)
    take one run per slot; a set with an entry never run before keeps a second round to even out its estimate."""
    keys = [f"us/xx/s{i:02d}/city" for i in range(10)]
    processing = ProcessingSettings(batch_target_seconds=300.0, set_slots=2)

    def runs(entries: dict[str, dict[str, object]]) -> list[int]:
        catalog = {"id": "c1", "entries": {"addresses": entries}}
        with dg.instance_for_test() as instance:
            instance.add_dynamic_partitions(LAYER_PARTITIONS["addresses"].name, keys)
            requests = set_run_requests(instance, catalog, "set-x", "all", processing)
        return [int(r.tags["oa/entries"]) for r in requests]

    known = {key: {"skip": False, "seconds": 20.0} for key in keys}
    assert runs(known) == [5, 5]  # 200 s of known work on 2 slots: one round
    one_new = {**known, keys[3]: {"skip": False}}  # never ran: its seconds are a guess
    assert len(runs(one_new)) == 4 and sum(runs(one_new)) == 10  # two rounds
    twenty = dict.fromkeys(keys, 20.0)
    assert len(plan_batches(keys, expected_seconds=twenty, slots=2)) == 4  # as if estimates: two rounds
    assert len(plan_batches(keys, expected_seconds=twenty, slots=2, known_seconds=True)) == 2


def test_schedule_starts_a_tagged_catalog_run() -> None:
    schedule = build_set_schedule("0 3 * * 6", running=False)
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=datetime(2026, 11, 28, 3, tzinfo=UTC)
        )
        request = schedule.evaluate_tick(context).run_requests[0]
    assert schedule.cron_schedule == "0 3 * * 6"
    assert request.run_key == "set-20261128T0300"
    assert request.tags["oa/set"] == "set-20261128T0300" and request.tags["oa/launch"] == "all"
    assert int(request.tags["dagster/priority"]) < 0


def _sources(tmp_path: Path, count: int) -> Path:
    sources = tmp_path / "sources"
    write_csv(tmp_path / "a.csv", 3)
    for i in range(count):
        write_source(
            sources,
            f"us/xx/s{i:02d}",
            {"addresses": [csv_entry("city", "../../../a.csv"), csv_entry("county", "../../../a.csv")]},
        )
    return sources


def test_sensor_launches_batched_runs_for_a_set_and_reports_its_progress(tmp_path: Path) -> None:
    sources = _sources(tmp_path, 5)
    write_source(sources, "us/xx/zz", {"addresses": [csv_entry("city", "../../../a.csv", skip=True)]})
    resources = local(tmp_path, sources, batch_max_entries=4)
    with dg.instance_for_test() as instance:
        materialize_catalog(instance, resources, tags={"oa/set": "set-x", "oa/launch": "all"})
        context = dg.build_sensor_context(instance=instance, resources=resources)
        result = set_launcher(context)
        requests = result.run_requests
        # 10 entries in batches of at most 4, in whole rounds of set_slots (2) runs so no slot idles
        assert len(requests) == 4
        assert [int(r.tags["oa/entries"]) for r in requests] == [3, 3, 3, 1]
        first = requests[0]
        assert first.job_name == LAYER_JOBS["addresses"].name
        assert (first.tags["dagster/asset_partition_range_start"], first.tags["dagster/asset_partition_range_end"]) == (
            "us/xx/s00/city",
            "us/xx/s01/city",
        )
        assert first.tags["oa/set"] == "set-x" and first.tags["dagster/max_runtime"]
        progress = instance.fetch_materializations(SET_PROGRESS, limit=1).records[0].asset_materialization
        assert progress.metadata["pending"].value == 10 and progress.metadata["finished"].value is False
        # the entry marked `skip: true` is not launched: counted apart, not pending
        assert progress.metadata["entries"].value == 10 and progress.metadata["skipped"].value == 1

        for request in requests:  # what the daemon would launch, in process
            materialize_range(
                instance,
                resources,
                request.job_name.removesuffix("_job"),
                request.tags["dagster/asset_partition_range_start"],
                request.tags["dagster/asset_partition_range_end"],
                tags={"oa/set": "set-x"},
            )
        cursor = json.loads(result.cursor)
        assert "set-x" in cursor["sets"]
        again = set_launcher(dg.build_sensor_context(instance=instance, resources=resources, cursor=result.cursor))
        assert again.run_requests == []
        progress = instance.fetch_materializations(SET_PROGRESS, limit=1).records[0].asset_materialization
        assert progress.metadata["done"].value == 10 and progress.metadata["features"].value == 30
        # the in-process runs are not tagged runs of the layer jobs, so the set is still open; its counts are right
        assert progress.metadata["pending"].value == 0


def test_launch_changed_only_requests_changed_entries(tmp_path: Path) -> None:
    sources = _sources(tmp_path, 3)
    resources = local(tmp_path, sources)
    with dg.instance_for_test() as instance:
        materialize_catalog(instance, resources)
        for i in range(3):
            materialize_range(instance, resources, "addresses", f"us/xx/s{i:02d}/city", f"us/xx/s{i:02d}/city")
        materialize_catalog(instance, resources, tags={"oa/launch": "changed"})
        requests = set_launcher(dg.build_sensor_context(instance=instance, resources=resources)).run_requests
        # the city entries are up to date; the county ones never ran, and they are not adjacent
        ranges = [
            (r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
            for r in requests
        ]
        assert ranges == [(f"us/xx/s{i:02d}/county", f"us/xx/s{i:02d}/county") for i in range(3)]


def test_a_set_run_has_ended_only_when_no_retry_is_to_come() -> None:
    def run(
        run_id: str,
        status: str,
        *,
        root: str | None = None,
        created: float = 0.0,
        ended: float | None = 10.0,
        will_retry: bool | None = None,
        launched: bool = False,
    ) -> RunState:
        return RunState(run_id, root or run_id, status, created, ended, will_retry, launched)

    now = 100.0
    assert chains_state([run("a", "SUCCESS"), run("b", "STARTED", ended=None)], now=now) == ChainsState(2, 1, 0)
    # the instance will retry b; the daemon has not created the retry yet: b's chain is open
    assert chains_state([run("b", "FAILURE", will_retry=True)], now=now).ended == 0
    # the retry exists and runs, then ends: the chain ends with it, and counts once
    failed = run("b", "FAILURE", will_retry=True, launched=True)
    assert chains_state([failed, run("b2", "STARTED", root="b", created=1, ended=None)], now=now).ended == 0
    assert chains_state([failed, run("b2", "SUCCESS", root="b", created=1)], now=now) == ChainsState(1, 1, 1)
    # a source problem (will_retry=false), a cancel, retries switched off: nothing more will come
    assert chains_state([run("c", "FAILURE", will_retry=False), run("d", "CANCELED")], now=now).ended == 2
    assert chains_state([run("e", "FAILURE")], now=now, retries_enabled=False).ended == 1
    # no verdict yet: wait for it a while after the failure, not forever
    assert chains_state([run("f", "FAILURE", ended=now - 5)], now=now).ended == 0
    assert chains_state([run("f", "FAILURE", ended=now - 5)], now=now, grace_seconds=1).ended == 1


def test_refreshing_the_partition_status_brings_the_cache_up_to_date(tmp_path: Path) -> None:
    """What the set sensor does once a set ends: without it the cache stays as the last page read left it."""
    sources = _sources(tmp_path, 2)
    resources = local(tmp_path, sources)
    with dg.instance_for_test() as instance:
        materialize_catalog(instance, resources)
        materialize_range(instance, resources, "addresses", "us/xx/s00/city", "us/xx/s01/county")
        key = dg.AssetKey("addresses")
        assert instance.get_asset_records([key])[0].asset_entry.cached_status is None  # nothing read it yet
        messages: list[str] = []
        refresh_partition_status(instance, mock.Mock(warning=messages.append))
        entry = instance.get_asset_records([key])[0].asset_entry
        assert entry.cached_status is not None and not messages
        assert entry.cached_status.latest_storage_id >= (entry.last_materialization_storage_id or 0)
        materialized = entry.cached_status.deserialize_materialized_partition_subsets(LAYER_PARTITIONS["addresses"])
        assert len(materialized) == 4


def test_a_batch_runs_from_its_first_to_its_last_entry_in_the_partitions_order() -> None:
    from oa_dagster.assets.planned_events import batch_partitions

    keys = [f"us/xx/s{i:02d}/city" for i in (3, 1, 2, 0)]  # insertion order, not sorted: a range's order
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("addresses", keys)
        assert batch_partitions(instance, "addresses", keys[1], keys[3]) == keys[1:]
        with pytest.raises(dg.Failure, match="before its first entry"):
            batch_partitions(instance, "addresses", keys[2], keys[0])
        with pytest.raises(dg.Failure, match="us/xx/s09/city is no longer a partition"):
            batch_partitions(instance, "addresses", keys[0], "us/xx/s09/city")
