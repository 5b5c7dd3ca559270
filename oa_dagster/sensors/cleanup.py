"""The `daily_cleanup` schedule: runs `cleanup_job` with its defaults (24 h grace).

RUNNING in production; STOPPED locally, like the weekly set: a laptop's scratch space is its owner's.
"""

import dagster as dg

from oa_dagster.jobs.cleanup import cleanup_job

DEFAULT_CLEANUP_CRON = "0 4 * * *"  # daily, off the weekly set's start (Saturday 03:00 UTC)


def build_cleanup_schedule(cron: str, running: bool) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="daily_cleanup",
        cron_schedule=cron,
        job=cleanup_job,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED,
        description="Run cleanup_job with its defaults (24 h grace).",
    )
