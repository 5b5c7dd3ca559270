"""The code location: assets, checks, jobs, the set and cleanup schedules, the set sensor, resources.

`build_definitions(resources, ...)` assembles; the module-level `defs` picks resources by `OA_ENV`
(see `resources/deployments.py`, the only place reading the environment).
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from oa_dagster.assets.catalog import source_catalog
from oa_dagster.assets.cleanup import DEFAULT_CLEANUP_CRON, build_cleanup_schedule, cleanup_job
from oa_dagster.assets.layers import LAYER_ASSETS
from oa_dagster.assets.quality_gate import accept_held_run
from oa_dagster.resources.deployments import DEFAULT_SET_CRON, deployment
from oa_dagster.sensors.sets import (
    LAYER_JOBS,
    build_set_schedule,
    catalog_job,
    launch_changed_job,
    set_launcher,
    set_progress_spec,
)


def build_definitions(resources: dict[str, Any], *, set_cron: str = DEFAULT_SET_CRON,
                      schedule_running: bool = False) -> dg.Definitions:
    """`schedule_running`: the weekly set and the daily cleanup start RUNNING (production) or STOPPED (local)."""
    return dg.Definitions(
        assets=[source_catalog, *LAYER_ASSETS, set_progress_spec],
        jobs=[catalog_job, launch_changed_job, *LAYER_JOBS.values(), accept_held_run, cleanup_job],
        schedules=[build_set_schedule(set_cron, schedule_running),
                   build_cleanup_schedule(DEFAULT_CLEANUP_CRON, schedule_running)],
        sensors=[set_launcher],
        resources=resources,
    )


def _defs() -> dg.Definitions:
    chosen = deployment()
    return build_definitions(chosen.resources, set_cron=chosen.set_cron,
                             schedule_running=chosen.name == "production")


defs = _defs()
