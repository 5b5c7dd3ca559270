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
