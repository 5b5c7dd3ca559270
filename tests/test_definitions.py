"""The code location loads, has the expected shape (a committed snapshot), and validates through the dagster CLI.

The snapshot (`tests/data/definitions_snapshot.json`) makes a change to the graph a visible diff in review: asset
keys, partitions, checks, backfill and freshness policies, owners, kinds, jobs with their tags, schedules and
sensors with their default status in each deployment, and every run tag. After an intended change, regenerate it
with `OA_UPDATE_SNAPSHOT=1 .venv/bin/pytest tests/test_definitions.py` and commit the diff with the change.
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg

from oa_dagster import run_tags
from oa_dagster.definitions import build_definitions
from oa_dagster.resources.deployments import deployment, local_resources
from oa_dagster.run_tags import CODE_REFERENCES_KEY

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = ROOT / "tests" / "data" / "definitions_snapshot.json"


def _code_files(metadata: Any) -> list[str]:
    """Where the UI links an asset's code: files relative to the checkout (line numbers move with every edit)."""
    value = metadata.get(CODE_REFERENCES_KEY)
    return sorted(os.path.relpath(ref.file_path, ROOT) for ref in value.code_references) if value else []


def _assets(defs: dg.Definitions) -> dict[str, Any]:
    graph = defs.resolve_asset_graph()
    shape = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        shape[key.to_user_string()] = {
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "owners": list(node.owners),
            "tags": {k: v for k, v in sorted(node.tags.items()) if not k.startswith("dagster/kind/")},
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "partitions": str(node.partitions_def) if node.partitions_def else None,
            "backfill_policy": str(node.backfill_policy) if node.backfill_policy else None,
            "freshness_policy": repr(node.freshness_policy) if node.freshness_policy else None,
            "pools": sorted(node.pools or ()),
            "materializable": node.is_materializable,
            "checks": {c.name: graph.get_check_spec(c).description for c in sorted(node.check_keys, key=str)},
            "code": _code_files(node.metadata),
        }
    return shape


def _jobs(defs: dg.Definitions) -> dict[str, Any]:
    return {
        job.name: {
            "tags": dict(sorted(job.tags.items())),
            "executor": job.executor_def.name,
            "assets": sorted(k.to_user_string() for k in job.asset_layer.selected_asset_keys),
            "ops": sorted(node.name for node in job.nodes_in_topological_order),
        }
        for job in sorted(defs.resolve_all_job_defs(), key=lambda j: j.name)
        if not job.name.startswith("__")
    }


def definitions_shape(tmp_path: Path) -> dict[str, Any]:
    """The code location as one JSON document, local and production (which differ only in default statuses)."""
    local = build_definitions(local_resources(tmp_path))
    production = build_definitions(local_resources(tmp_path), schedule_running=True)
    schedules = {
        schedule.name: {
            "job": schedule.job_name,
            "cron": schedule.cron_schedule,
            "timezone": schedule.execution_timezone,
            "default_status": {
                name: defs.resolve_schedule_def(schedule.name).default_status.value
                for name, defs in (("local", local), ("production", production))
            },
        }
        for schedule in sorted((local.resolve_schedule_def(s.name) for s in local.schedules), key=lambda s: s.name)
    }
    sensors = {
        sensor.name: {
            "jobs": sorted(t.job_name for t in sensor.targets),
            "default_status": {
                name: defs.resolve_sensor_def(sensor.name).default_status.value
                for name, defs in (("local", local), ("production", production))
            },
            "minimum_interval_seconds": sensor.minimum_interval_seconds,
        }
        for sensor in sorted((local.resolve_sensor_def(s.name) for s in local.sensors), key=lambda s: s.name)
    }
    tags = {name: value for name, value in sorted(vars(run_tags).items()) if name.isupper()}
    return {
        "assets": _assets(local),
        "jobs": _jobs(local),
        "schedules": schedules,
        "sensors": sensors,
        "run_tags": tags,
    }


def test_definitions_match_the_committed_snapshot(tmp_path: Path) -> None:
    current = json.dumps(definitions_shape(tmp_path), indent=1, sort_keys=True) + "\n"
    if os.environ.get("OA_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(current)
    committed = SNAPSHOT.read_text() if SNAPSHOT.exists() else ""
    diff = "".join(
        difflib.unified_diff(
            committed.splitlines(True), current.splitlines(True), "committed snapshot", "the definitions now"
        )
    )
    assert not diff, (
        "the definitions changed; if intended, regenerate the snapshot with OA_UPDATE_SNAPSHOT=1 "
        f"and commit it:\n{diff}"
    )


def test_definitions_have_the_layer_assets_checks_jobs_schedule_and_sensor(tmp_path: Path) -> None:
    defs = build_definitions(local_resources(tmp_path))
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == {
        "source_catalog",
        "addresses",
        "parcels",
        "buildings",
        "centerlines",
        "set_progress",
        "set_report",
        "ci_job",
        "collections",
        "coverage",
        "coverage_maps",
        "results_index",
    }
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert {name for layer, name in checks if layer == "parcels"} == {"output_valid", "output_quality"}
    assert ("addresses", "output_quality") in checks
    jobs = {job.name for job in defs.resolve_all_job_defs()} - {"__ASSET_JOB"}
    assert jobs == {
        "source_catalog_job",
        "launch_changed_entries_job",
        "addresses_job",
        "parcels_job",
        "buildings_job",
        "centerlines_job",
        "accept_held_run_job",
        "cleanup_job",
        "ci_job_job",
        "collections_job",
        "coverage_job",
    }  # every one `*_job`
    assert defs.resolve_schedule_def("weekly_set").cron_schedule == "0 3 * * 6"
    cleanup = defs.resolve_schedule_def("daily_cleanup")
    assert cleanup.job_name == "cleanup_job" and cleanup.default_status == dg.DefaultScheduleStatus.STOPPED
    assert defs.resolve_sensor_def("set_launcher").default_status == dg.DefaultSensorStatus.RUNNING
    collections = defs.resolve_schedule_def("collections_schedule")
    assert collections.cron_schedule == "0 3 */2 * *" and collections.job_name == "collections_job"
    assert defs.resolve_sensor_def("coverage_after_collections").job_name == "coverage_job"
    spec = graph.get(dg.AssetKey("addresses"))
    assert spec.freshness_policy is not None


def test_deployment_is_chosen_by_oa_env_only() -> None:
    local = deployment(
        {"OA_ENV": "local", "OA_DATA_DIR": "/data/oa", "OA_SET_CRON": "0 1 * * *", "OA_COLLECTIONS_CRON": "0 5 * * *"}
    )
    assert local.resources["store"].root == "/data/oa" and local.set_cron == "0 1 * * *"
    assert local.collections_cron == "0 5 * * *" and deployment({}).collections_cron == "0 3 */2 * *"
    incremental = {
        "OA_FULL_REFRESH_DAYS": "7",
        "OA_ALERT_WEBHOOK_URL": "https://hooks.test/x",
        "OA_SET_EXPECTED_HOURS": "5",
    }
    for env in ({**incremental}, {**incremental, "OA_ENV": "production"}):
        tuned = deployment(env).resources
        assert tuned["processing"].entry_options().full_refresh_days == 7
        alerts = tuned["set_alerts"]
        assert alerts.expected_hours == 5 and isinstance(alerts.webhook_url, dg.EnvVar)  # a secret: its name only
    assert deployment({}).resources["set_alerts"].webhook_url is None
    assert local.resources["processing"].work_root().name == "oa-dagster-work"  # under the system temp dir
    assert deployment({"OA_WORK_DIR": "/scratch/oa"}).resources["processing"].work_root() == Path("/scratch/oa")
    served = deployment({"OA_DATA_DIR": "/data/oa", "OA_DOWNLOAD_URL": "http://oa.example:8080/download"})
    assert served.resources["store"].get_store().url("latest/a.json") == "http://oa.example:8080/download/latest/a.json"
    production = deployment({"OA_ENV": "production", "OA_S3_BUCKET": "b", "OA_WORK_DIR": "/scratch/oa"})
    assert production.resources["store"].bucket == "b"
    assert production.resources["processing"].work_root() == Path("/scratch/oa")
    assert production.resources["sources_repo"].kind == "github"
    assert production.resources["ci"].deliveries_url is None  # no webhook secret: the CI sensor skips
    ci = deployment(
        {
            "OA_WEBHOOK_SECRET": "s",
            "OA_WEBHOOK_DB": "sqlite:////tmp/hooks.db",
            "GITHUB_TOKEN": "t",
            "OA_SOURCES_REPO": "me/sources",
            "OA_CI_ALLOW_HOSTS": "10.0.0.5:8080",
        }
    ).resources
    assert ci["ci"].deliveries_url == "sqlite:////tmp/hooks.db" and ci["ci"].allowed() == {"10.0.0.5:8080"}
    assert ci["github"].repo == "me/sources" and ci["github"].api_url == "https://api.github.com"
    assert ci["github"].status_context == "oa-dagster"
    try:
        deployment({"OA_ENV": "staging"})
    except ValueError as exc:
        assert "staging" in str(exc)
    else:
        raise AssertionError("an unknown OA_ENV must be refused")


def test_dagster_definitions_validate_accepts_the_workspace(tmp_path: Path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "OA_ENV": "local"}
    dagster = Path(sys.executable).with_name("dagster")
    done = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_deploy_instance_configs_load(tmp_path: Path) -> None:
    import yaml
    from dagster._core.instance.config import dagster_instance_config

    for name in ("local", "production"):
        home = tmp_path / name
        home.mkdir()
        (home / "dagster.yaml").write_text((ROOT / "deploy" / name / "dagster.yaml").read_text())
        config, _ = dagster_instance_config(str(home))
        assert config["run_monitoring"]["enabled"] is True and config["run_monitoring"]["max_runtime_seconds"] > 0
        assert yaml.safe_load((home / "dagster.yaml").read_text())["concurrency"]["runs"]["max_concurrent_runs"]
    local_home = tmp_path / "local"
    with dg.DagsterInstance.from_config(str(local_home)) as instance:
        assert instance.run_coordinator.__class__.__name__ == "QueuedRunCoordinator"


def test_the_rules_the_run_tags_and_the_domain_library_import_no_dagster() -> None:
    """`platform/`, `run_tags.py`, `process.py` and the domain library stay plain code: CI jobs, the CLI and the
    tests use them without Dagster, and an import creeping in (say, through a moved helper) would go unnoticed."""
    modules = sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for folder in ("platform", "sources", "fetch", "conform", "collections", "coverage", "results_index")
        for path in (ROOT / "oa_dagster" / folder).rglob("*.py")
        if path.name != "__init__.py"
    ) + [
        "oa_dagster.run_tags",
        "oa_dagster.process",
        "oa_dagster.assets.layers_worker",
        "oa_dagster.assets.layers_event_writes",
    ]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m == 'dagster' or m.startswith('dagster.')))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"imported by {modules}: {done.stdout}"


def test_loading_the_code_location_imports_neither_the_web_app_nor_sqlalchemy() -> None:
    """Every run process loads the code location: the webhook receiver's SQLAlchemy and Starlette (a quarter second)
    are imported only where deliveries are read or served, and the geodata libraries of collections and coverage
    (numpy, shapely, pyproj, pycountry, pyarrow: about half a second) only by their runs, never at load."""
    heavy = ("sqlalchemy", "starlette", "uvicorn", "numpy", "shapely", "pyproj", "pycountry", "pyarrow")
    code = f"import sys, oa_dagster.definitions\nprint(sorted(m for m in {heavy!r} if m in sys.modules))"
    env = {**os.environ, "OA_ENV": "local", "OA_WEBHOOK_SECRET": "s", "OA_WEBHOOK_DB": "sqlite:///unused.db"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
