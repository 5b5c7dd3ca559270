"""The code location, assembled by concern: each concern's assets, jobs and automation come from the module of
the same name in `assets/`, `jobs/` and `sensors/`.

`build_definitions(resources, ...)` assembles; the module-level `defs` picks resources by `OA_ENV`
(see `resources/deployments.py`, the only place reading the environment). `tests/test_definitions.py` keeps a
snapshot of the result, so a change to the graph shows up in review.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence
from typing import Any

import dagster as dg

from oa_dagster.assets.catalog import CATALOG_ASSETS
from oa_dagster.assets.ci_jobs import CI_ASSETS
from oa_dagster.assets.collections import COLLECTION_ASSETS
from oa_dagster.assets.coverage import COVERAGE_ASSETS
from oa_dagster.assets.layers import LAYER_ASSETS
from oa_dagster.assets.results_index import RESULTS_INDEX_ASSETS
from oa_dagster.assets.sets import SET_ASSETS
from oa_dagster.jobs.catalog import CATALOG_JOBS
from oa_dagster.jobs.ci_jobs import CI_JOBS
from oa_dagster.jobs.cleanup import cleanup_job
from oa_dagster.jobs.collections import COLLECTION_JOBS
from oa_dagster.jobs.coverage import COVERAGE_JOBS
from oa_dagster.jobs.layers import LAYER_JOBS
from oa_dagster.jobs.quality_gate import accept_held_run_job
from oa_dagster.resources.deployments import DEFAULT_COLLECTIONS_CRON, DEFAULT_SET_CRON, deployment
from oa_dagster.run_tags import CODE_REFERENCES_KEY
from oa_dagster.sensors.ci_job_reports import CI_REPORT_SENSORS
from oa_dagster.sensors.ci_jobs import CI_SENSORS
from oa_dagster.sensors.cleanup import DEFAULT_CLEANUP_CRON, build_cleanup_schedule
from oa_dagster.sensors.collections import COLLECTION_SENSORS, build_collections_schedule
from oa_dagster.sensors.coverage import COVERAGE_SENSORS
from oa_dagster.sensors.set_alerts import SET_ALERT_SENSORS
from oa_dagster.sensors.sets import SET_SENSORS, build_set_schedule, progress_metadata

ASSETS = [
    *CATALOG_ASSETS,
    *LAYER_ASSETS,
    *SET_ASSETS,
    *CI_ASSETS,
    *COLLECTION_ASSETS,
    *COVERAGE_ASSETS,
    *RESULTS_INDEX_ASSETS,
]
JOBS = [
    *CATALOG_JOBS,
    *LAYER_JOBS.values(),
    accept_held_run_job,
    cleanup_job,
    *CI_JOBS,
    *COLLECTION_JOBS,
    *COVERAGE_JOBS,
]
SENSORS = [
    *SET_SENSORS,
    *SET_ALERT_SENSORS,
    *CI_SENSORS,
    *CI_REPORT_SENSORS,
    *COLLECTION_SENSORS,
    *COVERAGE_SENSORS,
]


def build_definitions(
    resources: dict[str, Any],
    *,
    set_cron: str = DEFAULT_SET_CRON,
    collections_cron: str = DEFAULT_COLLECTIONS_CRON,
    schedule_running: bool = False,
) -> dg.Definitions:
    """`schedule_running`: the weekly set, the collections and the daily cleanup start RUNNING (production) or
    STOPPED (local)."""
    return dg.Definitions(
        assets=_with_code_references(ASSETS),
        jobs=JOBS,
        schedules=[
            build_set_schedule(set_cron, schedule_running),
            build_collections_schedule(collections_cron, schedule_running),
            build_cleanup_schedule(DEFAULT_CLEANUP_CRON, schedule_running),
        ],
        sensors=SENSORS,
        resources=resources,
    )


def _with_code_references(assets: Sequence[Any]) -> list[Any]:
    """Each asset linked, in the UI, to the code that makes it: its function, or for `set_progress` (a spec the
    set sensor reports) the sensor's code.

    The API is beta in Dagster 1.13; its warnings would be printed by every process loading the code location
    (each run worker), so they are silenced here, and only here.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        linked = list(dg.with_source_code_references(assets))
        for index, asset in enumerate(linked):
            if isinstance(asset, dg.AssetSpec):  # no function of its own: point at what reports it
                reference = dg.LocalFileCodeReference(
                    file_path=inspect.getfile(progress_metadata),
                    line_number=inspect.getsourcelines(progress_metadata)[1],
                    label="reported by the set_launcher sensor",
                )
                linked[index] = asset.merge_attributes(
                    metadata={CODE_REFERENCES_KEY: dg.CodeReferencesMetadataValue(code_references=[reference])}
                )
    return linked


def _defs() -> dg.Definitions:
    chosen = deployment()
    return build_definitions(
        chosen.resources,
        set_cron=chosen.set_cron,
        collections_cron=chosen.collections_cron,
        schedule_running=chosen.name == "production",
    )


defs = _defs()
