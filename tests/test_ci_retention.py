"""`daily_cleanup` after `OA_CI_RETENTION_DAYS`: closed and superseded CI jobs go (their folders, runs, compute
logs and partitions), with old deliveries and sent reports; an open pull request's job, set history and
production outputs stay. Driven as the daemon does: the schedule's tick, then its run request's job."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import sqlalchemy as sa

from oa_dagster.definitions import build_definitions
from oa_dagster.platform import store_layout as layout
from oa_dagster.platform.store import put_json
from tests.ci_deliveries import BASE, REPO, pr_payload
from tests.platform_helpers import materialize_catalog, materialize_range
from tests.servers.github import file_entry
from tests.test_ci_scenarios import BERKELEY, NUMBER, CiWorld, source_json, supersede_running_job
from tests.test_ci_scenarios import world as world  # noqa: F401 - the fixture

OTHER = NUMBER + 1  # a second pull request, closed
THIRD = NUMBER + 2  # a third, still open
DAY = 86400.0


def _age(world: CiWorld, job_key: str, days: float) -> None:
    """Make a job's files `days` old, as if written then."""
    moment = time.time() - days * DAY
    for path in (world.tmp / "data" / "jobs" / job_key).rglob("*"):
        if path.is_file():
            os.utime(path, (moment, moment))


def _age_rows(world: CiWorld, days: float) -> None:
    """Make every delivery and report row `days` old."""
    engine = sa.create_engine(world.resources["ci"].deliveries_url)
    moment = datetime.now(UTC) - timedelta(days=days)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE oa_webhook_deliveries SET received_at = :t"), {"t": moment})
        conn.execute(sa.text("UPDATE oa_ci_reports SET updated_at = :t"), {"t": moment})
    engine.dispose()


def _job(world: CiWorld, number: int, head: str, csv: str) -> str:
    """A pull request opened at `head`, its job run to success: its key."""
    world.github.add_file(REPO, BERKELEY, head, source_json(world.serve_csv(csv)))
    world.github.add_pull(REPO, number, [file_entry(BERKELEY, "added")], head_sha=head, base_sha=BASE)
    world.deliver("pull_request", pr_payload("opened", number, head, BASE))
    [request] = world.tick().run_requests
    assert world.run(request).success
    assert request.partition_key is not None
    return request.partition_key


def _daily_cleanup(world: CiWorld) -> dict[str, object]:
    """The `daily_cleanup` schedule's tick, then its run request's job on the instance: the run's metadata."""
    defs = build_definitions(world.resources)
    schedule = defs.resolve_schedule_def("daily_cleanup")
    with dg.build_schedule_context(instance=world.instance) as context:
        [request] = schedule.evaluate_tick(context).run_requests or []
    job = defs.resolve_job_def("cleanup_job")
    result = job.execute_in_process(instance=world.instance, run_config=request.run_config, tags=request.tags)
    assert result.success
    [event] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = event.event_specific_data.metadata  # type: ignore[union-attr]
    return {key: getattr(value, "value", value) for key, value in metadata.items()}


def _runs_of(world: CiWorld, job_key: str) -> int:
    return len(world.instance.get_runs(dg.RunsFilter(tags={"dagster/partition": job_key})))


def test_daily_cleanup_prunes_closed_and_superseded_jobs_and_keeps_open_ones_and_production(world: CiWorld) -> None:
    superseded, current = (str(request.partition_key) for request in supersede_running_job(world))
    closed = _job(world, OTHER, "e" * 40, "/other.csv")
    world.deliver("pull_request", pr_payload("closed", OTHER, "e" * 40, BASE))
    open_job = _job(world, THIRD, "f" * 40, "/third.csv")
    assert world.tick().run_requests == []  # the closing is read, nothing to run
    # production: a set's history and an entry's output, through their own paths
    key = "us/ca/berkeley_example/county"
    materialize_catalog(world.instance, world.resources)
    assert materialize_range(world.instance, world.resources, "parcels", key, key).success
    put_json(world.store, layout.set_summary_key("set-1"), {"id": "set-1"})
    production = sorted(k for k in world.store.list("") if not k.startswith("jobs/"))
    ci_runs = {r.run_id for r in world.instance.get_runs() if r.tags.get("dagster/partition", "").startswith("pr-")}
    other_runs = {r.run_id for r in world.instance.get_runs()} - ci_runs
    assert len(other_runs) >= 2  # the catalog's and the entry's
    for job_key in (superseded, current, closed, open_job):
        assert _runs_of(world, job_key) >= 1
    assert world.resources["ci"].retention_days == 14

    # day 0: nothing is old enough
    assert _daily_cleanup(world)["ci_jobs"] == 0
    # 20 days on (files, deliveries and reports aged): the superseded job and the closed pull request's go
    for job_key in (superseded, current, closed, open_job):
        _age(world, job_key, 20)
    _age_rows(world, 20)
    report = _daily_cleanup(world)
    assert report["ci_jobs"] == 2 and report["deliveries"] >= 5 and report["sent_reports"] >= 3, report
    for gone in (superseded, closed):
        assert not (world.tmp / "data" / "jobs" / gone).exists()
        assert _runs_of(world, gone) == 0
        assert gone not in world.instance.get_dynamic_partitions("ci_jobs")
    for kept in (current, open_job):  # open pull requests: their comment links here
        assert world.store.exists(f"jobs/{kept}/result.json") and _runs_of(world, kept) >= 1
        assert kept in world.instance.get_dynamic_partitions("ci_jobs")
    assert sorted(k for k in world.store.list("") if not k.startswith("jobs/")) == production
    assert other_runs <= {r.run_id for r in world.instance.get_runs()}  # production runs stay
    assert world.receiver.store is not None and world.receiver.store.count() == 0
    assert world.resources["ci"].outbox().unsent() == []
