"""The code location loads, has the expected shape, and validates through the dagster CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from oa_dagster.definitions import build_definitions
from oa_dagster.resources.deployments import deployment, local_resources

ROOT = Path(__file__).resolve().parent.parent


def test_definitions_have_the_layer_assets_checks_jobs_schedule_and_sensor(tmp_path: Path) -> None:
    defs = build_definitions(local_resources(tmp_path))
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == {
        "source_catalog", "addresses", "parcels", "buildings", "centerlines", "set_progress"}
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert {name for layer, name in checks if layer == "parcels"} == {"output_valid", "output_quality"}
    assert ("addresses", "output_quality") in checks
    for job in ("source_catalog_job", "launch_changed_entries", "addresses_job", "accept_held_run", "cleanup"):
        defs.resolve_job_def(job)
    assert defs.resolve_schedule_def("weekly_set").cron_schedule == "0 3 * * 6"
    cleanup = defs.resolve_schedule_def("daily_cleanup")
    assert cleanup.job_name == "cleanup" and cleanup.default_status == dg.DefaultScheduleStatus.STOPPED
    assert defs.resolve_sensor_def("set_launcher").default_status == dg.DefaultSensorStatus.RUNNING
    spec = graph.get(dg.AssetKey("addresses"))
    assert spec.freshness_policy is not None


def test_deployment_is_chosen_by_oa_env_only() -> None:
    local = deployment({"OA_ENV": "local", "OA_DATA_DIR": "/data/oa", "OA_SET_CRON": "0 1 * * *"})
    assert local.resources["store"].root == "/data/oa" and local.set_cron == "0 1 * * *"
    assert local.resources["processing"].work_root().name == "oa-dagster-work"  # under the system temp dir
    assert deployment({"OA_WORK_DIR": "/scratch/oa"}).resources["processing"].work_root() == Path("/scratch/oa")
    served = deployment({"OA_DATA_DIR": "/data/oa", "OA_DOWNLOAD_URL": "http://oa.example:8080/download"})
    assert served.resources["store"].get_store().url("latest/a.json") == "http://oa.example:8080/download/latest/a.json"
    production = deployment({"OA_ENV": "production", "OA_S3_BUCKET": "b", "OA_WORK_DIR": "/scratch/oa"})
    assert production.resources["store"].bucket == "b"
    assert production.resources["processing"].work_root() == Path("/scratch/oa")
    assert production.resources["sources_repo"].kind == "github"
    try:
        deployment({"OA_ENV": "staging"})
    except ValueError as exc:
        assert "staging" in str(exc)
    else:
        raise AssertionError("an unknown OA_ENV must be refused")


def test_dagster_definitions_validate_accepts_the_workspace(tmp_path: Path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "OA_ENV": "local"}
    dagster = Path(sys.executable).with_name("dagster")
    done = subprocess.run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)
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
