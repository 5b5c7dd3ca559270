"""dagster-aws's `EcsRunLauncher`, with the run tasks' network and optional environment read from variables.

The launcher takes `run_task_kwargs` as a free-form mapping, so Dagster never resolves `{env: ...}` inside it: the
subnets and security groups of an `awsvpc` task could only be written into `dagster.yaml` literally. Outside ECS
(`use_current_ecs_task_config: false`) they are required, so this subclass adds three string fields that do take
`{env: ...}` and turns them into the `networkConfiguration` RunTask receives. It also adds `optional_env_vars`:
names passed to run tasks only when the daemon has them (`env_vars` fails the launch for an unset name). Launching,
sizing (`ecs/cpu`, `ecs/memory` tags), health checks and termination are the parent's code, unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from dagster import Array, Field, StringSource
from dagster._serdes.config_class import ConfigurableClassData
from dagster_aws.ecs import EcsRunLauncher


def network_configuration(subnets: str, security_groups: str, assign_public_ip: str) -> dict[str, Any]:
    """RunTask's `networkConfiguration` from comma-separated ids (`subnet-a,subnet-b`)."""
    subnet_ids = [s.strip() for s in subnets.split(",") if s.strip()]
    if not subnet_ids:
        raise ValueError("the ECS run launcher needs at least one subnet (OA_ECS_SUBNETS)")
    return {
        "awsvpcConfiguration": {
            "subnets": subnet_ids,
            "securityGroups": [g.strip() for g in security_groups.split(",") if g.strip()],
            "assignPublicIp": assign_public_ip.strip().upper() or "DISABLED",
        }
    }


class OaEcsRunLauncher(EcsRunLauncher):
    """`EcsRunLauncher` plus `subnets`, `security_groups`, `assign_public_ip` and `optional_env_vars`."""

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {
            **super().config_type(),
            "subnets": Field(StringSource, description="Comma-separated subnet ids of the run tasks."),
            "security_groups": Field(StringSource, description="Comma-separated security group ids."),
            "assign_public_ip": Field(StringSource, is_required=False, default_value="DISABLED"),
            "optional_env_vars": Field(
                Array(str), is_required=False, default_value=[], description="Passed on when the daemon has them."
            ),
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]) -> OaEcsRunLauncher:
        config = dict(config_value)
        network = network_configuration(
            config.pop("subnets"), config.pop("security_groups"), config.pop("assign_public_ip")
        )
        optional = [name for name in config.pop("optional_env_vars") if os.environ.get(name)]
        config["env_vars"] = [*config.get("env_vars", []), *optional]
        config["run_task_kwargs"] = {**config.get("run_task_kwargs", {}), "networkConfiguration": network}
        return cls(inst_data=inst_data, **config)
