"""`coverage_after_collections`: one coverage_job run once every collections run of a batch has ended."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from oa_dagster.definitions import build_definitions
from oa_dagster.resources.deployments import local_resources
from oa_dagster.run_tags import AFTER_COLLECTIONS_TAG, AFTER_SET_TAG, DOWNLOADS_PRIORITY, PRIORITY_TAG
from oa_dagster.sensors.coverage import coverage_after_collections


def test_coverage_follows_the_end_of_each_batch_of_collection_runs(tmp_path: Path) -> None:
    defs = build_definitions(local_resources(tmp_path))
    job = defs.resolve_job_def("collections_job")
    with dg.instance_for_test() as instance:

        def tick(cursor: str | None) -> dg.SensorResult | dg.SkipReason:
            return coverage_after_collections(dg.build_sensor_context(instance=instance, cursor=cursor))

        assert "no collections run yet" in str(tick(None).skip_message)
        done = instance.create_run_for_job(job_def=job, tags={AFTER_SET_TAG: "set-1"})
        running = instance.create_run_for_job(job_def=job, tags={AFTER_SET_TAG: "set-1"})
        instance.report_run_failed(done)  # ended, whatever its outcome
        instance.handle_run_event(
            running.run_id,
            dg.DagsterEvent(dg.DagsterEventType.RUN_START.value, job_name=job.name),
        )
        waiting = tick(None)
        assert "1 of 2 collections runs still to end" in str(waiting.skip_message)

        instance.report_run_canceled(instance.get_run_by_id(running.run_id))
        result = tick(None)
        assert isinstance(result, dg.SensorResult) and result.cursor == "after_set:set-1"
        [request] = result.run_requests
        assert request.run_key == "after-after_set:set-1" and request.tags[AFTER_COLLECTIONS_TAG] == "after_set:set-1"
        assert request.tags[PRIORITY_TAG] == DOWNLOADS_PRIORITY  # behind the next set's runs
        assert "already handled" in str(tick(result.cursor).skip_message)

        by_hand = instance.create_run_for_job(job_def=job)  # one area rebuilt from the UI: a batch of its own
        assert "still to end" in str(tick(result.cursor).skip_message)
        instance.report_run_failed(by_hand)
        again = tick(result.cursor)
        assert isinstance(again, dg.SensorResult) and again.cursor == f"run:{by_hand.run_id}"


def test_a_batch_a_coverage_run_already_covered_is_not_covered_again(tmp_path: Path) -> None:
    """The quickstart's sequence: collections runs launched by hand, then a coverage_job run of its own. The sensor
    of a later `oa-dagster ui` marks that batch handled; a coverage run that failed does not count."""
    defs = build_definitions(local_resources(tmp_path))
    collections, coverage = defs.resolve_job_def("collections_job"), defs.resolve_job_def("coverage_job")
    with dg.instance_for_test() as instance:

        def tick(cursor: str | None = None) -> dg.SensorResult | dg.SkipReason:
            return coverage_after_collections(dg.build_sensor_context(instance=instance, cursor=cursor))

        for _ in range(2):
            instance.report_run_failed(instance.create_run_for_job(job_def=collections))
        last = instance.get_runs(limit=1)[0]
        covering = instance.create_run_for_job(job_def=coverage)
        result = tick()
        assert isinstance(result, dg.SensorResult) and not result.run_requests
        assert result.cursor == f"run:{last.run_id}"
        assert f"already covered by coverage_job run {covering.run_id}" in str(result.skip_reason)

        instance.report_run_failed(covering)  # a failed coverage run covered nothing: the sensor asks for one
        again = tick()
        assert isinstance(again, dg.SensorResult) and [r.run_key for r in again.run_requests] == [
            f"after-run:{last.run_id}"
        ]

        newer = instance.create_run_for_job(job_def=collections)  # a coverage run older than the batch's end
        later = instance.create_run_for_job(job_def=coverage)
        instance.report_run_failed(newer)
        assert instance.get_run_record_by_id(later.run_id).create_timestamp.timestamp() < (
            instance.get_run_record_by_id(newer.run_id).end_time or 0
        )
        assert [r.run_key for r in tick(again.cursor).run_requests] == [f"after-run:{newer.run_id}"]
