"""The Dockerfile agrees with what runs in it: the code server's command, the command EcsRunLauncher gives each
run task, the instance files, the project install. CI builds the image where a Docker engine exists (`.ci/run`);
everywhere else this parse is the check."""

from __future__ import annotations

import fnmatch
import json
import tomllib
from pathlib import Path

import yaml
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.origin import DEFAULT_DAGSTER_ENTRY_POINT, JobPythonOrigin, RepositoryPythonOrigin
from dagster._grpc.types import ExecuteRunArgs

from tests.platform_helpers import ROOT


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    joined: list[str] = []
    pending = ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1].strip()) for text in joined]


DOCKERFILE = instructions(ROOT / "Dockerfile")


def arguments(name: str) -> list[str]:
    return [args for instruction, args in DOCKERFILE if instruction == name]


def launcher_command() -> list[str]:
    """The command EcsRunLauncher puts in RunTask's container override for a run of this code location (Dagster's
    own `ExecuteRunArgs`, on an origin like the one the code server reports)."""
    origin = RepositoryPythonOrigin(
        executable_path="python",
        code_pointer=ModuleCodePointer("oa_dagster.definitions", "defs", None),
        entry_point=DEFAULT_DAGSTER_ENTRY_POINT,  # what `dagster api grpc` reports without --use-python-environment...
    )
    args = ExecuteRunArgs(job_origin=JobPythonOrigin("source_catalog_job", origin), run_id="0" * 36, instance_ref=None)
    return args.get_command_args()


def test_the_image_is_python_3_11_slim_with_the_project_installed_from_its_own_files() -> None:
    assert arguments("FROM") == ["python:3.11-slim"]
    runs = " ".join(arguments("RUN"))
    assert "pip install ." in runs
    assert "apt-get" not in runs and "gdal" not in runs.lower()  # GDAL comes inside the pyogrio wheel
    copied = [args.split()[:-1] for args in arguments("COPY")]
    sources = [source for group in copied for source in group]
    assert {"pyproject.toml", "oa_dagster"} <= set(sources)
    for source in sources:  # everything copied exists and passes .dockerignore
        assert (ROOT / source).exists(), source
        patterns = [p for p in (ROOT / ".dockerignore").read_text().splitlines() if p and not p.startswith("#")]
        allowed = False
        for pattern in patterns:
            rule = pattern.removeprefix("!").rstrip("/")
            if fnmatch.fnmatch(source, rule) or source.startswith(rule + "/"):  # a folder's rule covers its files
                allowed = pattern.startswith("!")
        assert allowed, f"{source} is excluded by .dockerignore"


def test_processes_run_as_a_non_root_user() -> None:
    users = arguments("USER")
    assert users and users[-1] not in ("root", "0")
    assert f"useradd --create-home --uid 10001 {users[-1]}" in " ".join(arguments("RUN"))
    assert [i for i, _ in DOCKERFILE].index("USER") > [i for i, _ in DOCKERFILE].index("RUN")  # after installing


def test_the_default_command_is_the_code_server_the_workspace_points_at() -> None:
    (cmd,) = arguments("CMD")
    command = json.loads(cmd)  # exec form: no shell between ECS and the process (signals reach it)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert command[:4] == ["dagster", "api", "grpc", "-m"]
    assert command[4] == project["tool"]["dagster"]["module_name"]
    port = command[command.index("-p") + 1]
    assert port in " ".join(arguments("EXPOSE")).split()
    workspace = yaml.safe_load((ROOT / "deploy/production/workspace.yaml").read_text())
    (location,) = workspace["load_from"]
    assert location["grpc_server"]["location_name"] == project["tool"]["dagster"]["code_location_name"]


def test_the_launchers_run_command_runs_unchanged_in_the_image() -> None:
    command = launcher_command()
    assert command[:3] == ["dagster", "api", "execute_run"]
    # ECS replaces the image's CMD with the launcher's command; an ENTRYPOINT would be prefixed to it
    assert arguments("ENTRYPOINT") == []
    # the same executable as the code server's, installed by the project's pinned dagster
    assert json.loads(arguments("CMD")[0])[0] == command[0]
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.startswith("dagster==") for d in dependencies)


def test_the_instance_in_the_image_is_deploy_production() -> None:
    env = " ".join(arguments("ENV"))
    home = next(part.split("=", 1)[1] for part in env.split() if part.startswith("DAGSTER_HOME="))
    (instance_copy,) = [args.split() for args in arguments("COPY") if "deploy/production/dagster.yaml" in args]
    assert instance_copy[-1].rstrip("/") in (home, "${DAGSTER_HOME}")
    assert "deploy/production/workspace.yaml" in instance_copy
