"""Where the webhook receiver keeps its deliveries and which secrets it accepts, read from a mapping.

Apart from `deliveries.py` (SQLAlchemy) and `hooks.py` (Starlette) because `resources/deployments.py` calls this
whenever the code location loads, and every run process loads it: it must cost nothing to import.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import quote

from oa_dagster.local_home import instance_dir

from .signatures import parse_secrets

PG_ENV = ("DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB")
PG_PORT = 5432
SQLITE_NAME = "webhook.db"


def default_database_url(env: Mapping[str, str]) -> str:
    """Where deliveries go: `OA_WEBHOOK_DB`; else the production instance's Postgres when its variables are set;
    else a SQLite file in the local instance's home. Half of the Postgres variables is an error, not a silent
    SQLite file that the code server (another process, maybe another machine) would never read."""
    if env.get("OA_WEBHOOK_DB"):
        return env["OA_WEBHOOK_DB"]
    present = [name for name in PG_ENV if name in env]
    if present:
        missing = [name for name in PG_ENV if name not in env or (not env[name] and name != "DAGSTER_PG_PASSWORD")]
        if missing:
            raise ValueError(
                f"the production Postgres is half configured: {', '.join(missing)} not set "
                f"(set all of {', '.join(PG_ENV)}, or OA_WEBHOOK_DB)"
            )
        user, password = quote(env["DAGSTER_PG_USER"], safe=""), quote(env["DAGSTER_PG_PASSWORD"], safe="")
        login = f"{user}:{password}" if password else user
        database = quote(env["DAGSTER_PG_DB"], safe="")
        return f"postgresql+psycopg2://{login}@{env['DAGSTER_PG_HOST']}:{PG_PORT}/{database}"
    if env.get("OA_ENV") == "production":
        raise ValueError(
            f"OA_ENV=production needs a shared deliveries database: set OA_WEBHOOK_DB or {', '.join(PG_ENV)}"
        )
    return f"sqlite:///{(instance_dir(env) / SQLITE_NAME).absolute()}"


class HookSettings(NamedTuple):
    secrets: list[str]
    database_url: str | None  # None when there is no secret: nothing would be accepted, no database is needed


def hook_settings_from_env(env: Mapping[str, str]) -> HookSettings:
    """What `oa-dagster serve` needs for `/hook`: the secrets of `OA_WEBHOOK_SECRET` (comma-separated, any one
    verifies) and the deliveries database (`default_database_url`). Raises ValueError for a half-configured
    Postgres."""
    secrets = parse_secrets(env.get("OA_WEBHOOK_SECRET"))
    return HookSettings(secrets, default_database_url(env) if secrets else None)
