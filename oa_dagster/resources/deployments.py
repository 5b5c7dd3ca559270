"""Resources per deployment, chosen in one place by `OA_ENV` (`local` or `production`).

This is the only module that reads environment variables; everything else receives resources.

local (default): outputs in `$OA_DATA_DIR`, else `$DAGSTER_HOME/oa-data`, else `./.oa-dagster/data` (where
`oa-dagster quickstart` writes); sources from `$OA_SOURCES_DIR`, else the bundled examples.
production: outputs in S3 (`OA_S3_BUCKET`, `OA_S3_PREFIX`, `OA_S3_ENDPOINT_URL`, `OA_PUBLIC_URL`,
`OA_DOWNLOAD_URL`; credentials from the usual AWS chain), sources from GitHub (`GITHUB_TOKEN` optional).
Both: `OA_DOWNLOAD_URL` (the `/download` base of `oa-dagster serve`: stable links in metadata), `OA_SET_CRON`
(default weekly, Saturday 03:00 UTC), `OA_COLLECTIONS_CRON` (default `0 3 */2 * *`, every other night),
`OA_WORK_DIR` (the one folder runs' scratch space goes under; default `<system temp>/oa-dagster-work`); local:
`OA_BATCH_MAX_ENTRIES` (entries per set run). Incremental sets: `OA_FULL_REFRESH_DAYS` (default 28: an output older
than that is processed in full), `OA_DOWNLOAD_DEADLINE_SECONDS` (default 6 h: one download's wall clock, a hung
data server included), `OA_PROBE_WORKERS` (default 64: upstreams a set's planning asks at once),
`OA_PG_HELD_CONNECTIONS` (default on: a layer run keeps its Postgres connections; `off`: one per statement),
`OA_ALERT_WEBHOOK_URL` (a Slack-compatible webhook for set alerts; none: no alerts), `OA_SET_EXPECTED_HOURS`
(default 36: a set running longer is reported stalled).
CI jobs, both: `OA_GITHUB_API_URL` (default https://api.github.com), `GITHUB_TOKEN` or a GitHub App
(`OA_GITHUB_APP_ID`, `OA_GITHUB_APP_PRIVATE_KEY`, `OA_GITHUB_APP_INSTALLATION_ID`), `OA_STATUS_CONTEXT` (default
`oa-dagster`), `OA_DAGSTER_UI_URL`, `OA_SOURCES_REPO`, `OA_CI_ALLOW_HOSTS`, `OA_CI_RETENTION_DAYS` (default 14:
closed jobs' folders and runs, deliveries and sent reports are pruned after it), and the deliveries database of
`OA_WEBHOOK_SECRET` / `OA_WEBHOOK_DB` (`webhook_settings`); without a secret or a token the CI sensor skips.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oa_dagster.local_home import DEFAULT_HOME

if TYPE_CHECKING:
    from oa_dagster.webhook.settings import HookSettings

DEFAULT_SET_CRON = "0 3 * * 6"
DEFAULT_COLLECTIONS_CRON = "0 3 */2 * *"  # 03:00 UTC every other day
# botocore's standard retry mode (dagster-aws sets it), which retries 503 SlowDown/ServiceUnavailable, other 5xx and
# refused or dropped connections with full-jitter exponential backoff (up to 1, 2, 4, 8 s). S3Resource's
# `max_attempts` is botocore's `retries.max_attempts`, which counts the retries after the first call: 4 retries are
# 5 attempts, which ride out an outage of a few seconds and give up within about 15 s, so an entry fails clearly
# (`platform/store_errors.py`) and gets its second attempt at the end of the run instead of hanging on a long outage.
S3_RETRIES = 4


@dataclass(frozen=True)
class Deployment:
    name: str
    resources: dict[str, Any]
    set_cron: str
    collections_cron: str = DEFAULT_COLLECTIONS_CRON


def local_data_dir(env: dict[str, str] | os._Environ[str] = os.environ) -> Path:
    """The local store, the one rule every command and the code location follow.

    The last resort is the quickstart's default home in the current directory, so that `download`, `serve` and
    `cleanup` find what `oa-dagster quickstart` wrote when run from the same directory with no variables set.
    """
    if env.get("OA_DATA_DIR"):
        return Path(env["OA_DATA_DIR"])
    if env.get("DAGSTER_HOME"):
        return Path(env["DAGSTER_HOME"]) / "oa-data"
    return DEFAULT_HOME / "data"


def local_resources(
    data_dir: Path | str, sources_dir: Path | str | None = None, *, download_url: str | None = None, **settings: Any
) -> dict[str, Any]:
    """The local deployment's resources with explicit paths (what tests and `quickstart` use).

    `download_url` (`oa-dagster serve`'s `/download` base) makes metadata links http:// instead of file://.
    """
    from .github import CiSettings, GitHubResource
    from .processing import ProcessingSettings
    from .set_alerts import SetAlertSettings
    from .sources_repo import SourcesRepository
    from .store import LocalOutputStore

    return {
        "store": LocalOutputStore(root=str(data_dir), base_url=download_url),
        "sources_repo": SourcesRepository(kind="local", path=str(sources_dir) if sources_dir else None),
        "processing": ProcessingSettings(**settings),
        "github": GitHubResource(),
        "ci": CiSettings(),
        "set_alerts": SetAlertSettings(),
    }


def set_alert_resources(env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """Where set alerts go (`OA_ALERT_WEBHOOK_URL`, as an `EnvVar`: the URL is a secret) and when a set counts as
    stalled (`OA_SET_EXPECTED_HOURS`)."""
    import dagster as dg

    from .set_alerts import DEFAULT_EXPECTED_HOURS, SetAlertSettings

    return {
        "set_alerts": SetAlertSettings(
            webhook_url=dg.EnvVar("OA_ALERT_WEBHOOK_URL") if env.get("OA_ALERT_WEBHOOK_URL") else None,
            expected_hours=float(env.get("OA_SET_EXPECTED_HOURS") or DEFAULT_EXPECTED_HOURS),
        )
    }


def ci_resources(env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The CI jobs' resources (`github`, `ci`), the same in every deployment. The token (or the App's key) goes in
    as an `EnvVar`, so the UI shows its name, never its value."""
    from oa_dagster.ci.github_api import GitHubSettings
    from oa_dagster.ci.retention import DEFAULT_RETENTION_DAYS

    from .github import DEFAULT_SOURCES_REPO, CiSettings, GitHubResource

    settings = GitHubSettings.from_env(env)
    return {
        "github": GitHubResource(
            **github_credentials(env),
            status_context=settings.status_context,
            ui_url=settings.ui_url,
            repo=env.get("OA_SOURCES_REPO") or DEFAULT_SOURCES_REPO,
        ),
        "ci": CiSettings(
            deliveries_url=webhook_settings(env).database_url,
            allowed_hosts=env.get("OA_CI_ALLOW_HOSTS", ""),
            retention_days=float(env.get("OA_CI_RETENTION_DAYS") or DEFAULT_RETENTION_DAYS),
        ),
    }


APP_VARIABLES = ("OA_GITHUB_APP_ID", "OA_GITHUB_APP_PRIVATE_KEY", "OA_GITHUB_APP_INSTALLATION_ID")


def github_credentials(env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """`GitHubCredentials`' fields: `OA_GITHUB_API_URL`, and `GITHUB_TOKEN` or a GitHub App (all three of
    `APP_VARIABLES`, else a ValueError naming the missing ones). Secrets go in as `EnvVar`s."""
    import dagster as dg

    from oa_dagster.ci.github_api import GitHubSettings

    fields: dict[str, Any] = {
        "api_url": GitHubSettings.from_env(env).api_url,
        "token": dg.EnvVar("GITHUB_TOKEN") if env.get("GITHUB_TOKEN") else None,
    }
    present = [name for name in APP_VARIABLES if env.get(name)]
    if present and len(present) < len(APP_VARIABLES):
        missing = [name for name in APP_VARIABLES if name not in present]
        raise ValueError(f"the GitHub App is half configured: {', '.join(missing)} not set")
    if present:
        installation = env["OA_GITHUB_APP_INSTALLATION_ID"]
        if not installation.isdigit():
            raise ValueError(f"OA_GITHUB_APP_INSTALLATION_ID must be a number, not {installation!r}")
        fields.update(
            app_id=env["OA_GITHUB_APP_ID"],
            app_private_key=dg.EnvVar("OA_GITHUB_APP_PRIVATE_KEY"),
            app_installation_id=int(installation),
        )
    return fields


def s3_resources(
    bucket: str,
    *,
    prefix: str = "",
    endpoint_url: str | None = None,
    region_name: str | None = None,
    public_url: str | None = None,
    download_url: str | None = None,
    s3_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from dagster_aws.s3 import S3Resource

    from .store_s3 import S3OutputStore

    settings = {"max_attempts": S3_RETRIES, **(s3_kwargs or {})}
    s3 = S3Resource(endpoint_url=endpoint_url, region_name=region_name, **settings)
    return {
        "s3": s3,
        "store": S3OutputStore(s3=s3, bucket=bucket, prefix=prefix, public_url=public_url, download_url=download_url),
    }


def deployment(env: dict[str, str] | os._Environ[str] = os.environ) -> Deployment:
    """The resources and settings for `OA_ENV`; unknown names are an error, not a silent local."""
    from .processing import ProcessingSettings
    from .sources_repo import SourcesRepository

    name = env.get("OA_ENV", "local")
    cron = env.get("OA_SET_CRON") or DEFAULT_SET_CRON
    collections_cron = env.get("OA_COLLECTIONS_CRON") or DEFAULT_COLLECTIONS_CRON
    processing: dict[str, Any] = {}  # ProcessingSettings both deployments take from the environment
    if env.get("OA_WORK_DIR"):
        processing["work_dir"] = env["OA_WORK_DIR"]
    if env.get("OA_FULL_REFRESH_DAYS"):
        processing["full_refresh_days"] = float(env["OA_FULL_REFRESH_DAYS"])
    if env.get("OA_DOWNLOAD_DEADLINE_SECONDS"):
        processing["download_deadline"] = float(env["OA_DOWNLOAD_DEADLINE_SECONDS"])
    if env.get("OA_PROBE_WORKERS"):
        processing["probe_workers"] = int(env["OA_PROBE_WORKERS"])
    if env.get("OA_PG_HELD_CONNECTIONS"):
        processing["hold_db_connections"] = env["OA_PG_HELD_CONNECTIONS"].strip().lower() not in {"off", "0", "false"}
    shared = {**ci_resources(env), **set_alert_resources(env)}
    if name == "local":
        batch = {"batch_max_entries": int(env["OA_BATCH_MAX_ENTRIES"])} if env.get("OA_BATCH_MAX_ENTRIES") else {}
        resources = local_resources(
            local_data_dir(env),
            env.get("OA_SOURCES_DIR"),
            download_url=env.get("OA_DOWNLOAD_URL") or None,
            **batch,
            **processing,
        )
        return Deployment(name, {**resources, **shared}, cron, collections_cron)
    if name == "production":
        resources = s3_resources(
            env.get("OA_S3_BUCKET", "oa-results"),
            prefix=env.get("OA_S3_PREFIX", ""),
            endpoint_url=env.get("OA_S3_ENDPOINT_URL") or None,
            region_name=env.get("AWS_REGION") or None,
            public_url=env.get("OA_PUBLIC_URL") or None,
            download_url=env.get("OA_DOWNLOAD_URL") or None,
        )
        # the same GitHub (api.github.com, an Enterprise server, a mirror) and credentials as CI jobs
        resources["sources_repo"] = SourcesRepository(
            kind="github",
            **github_credentials(env),
            repo=shared["github"].repo,
            default_ref=env.get("OA_SOURCES_REF", "master"),
        )
        resources["processing"] = ProcessingSettings(
            cache_dir=env.get("OA_CACHE_DIR") or None, batch_target_seconds=300.0, set_slots=12, **processing
        )
        return Deployment(name, {**resources, **shared}, cron, collections_cron)
    raise ValueError(f"OA_ENV must be local or production, not {name!r}")


def webhook_settings(env: Mapping[str, str] = os.environ) -> HookSettings:
    """`POST /hook`'s secrets (`OA_WEBHOOK_SECRET`) and deliveries database (`OA_WEBHOOK_DB`, else the production
    Postgres of `DAGSTER_PG_*`, else `$DAGSTER_HOME/webhook.db`)."""
    from oa_dagster.webhook.settings import hook_settings_from_env

    return hook_settings_from_env(env)


def webhook_database_url(env: Mapping[str, str] = os.environ) -> str:
    """The deliveries database `oa-dagster hooks` and `serve` share, whether or not a secret is set."""
    from oa_dagster.webhook.settings import default_database_url

    return default_database_url(env)
