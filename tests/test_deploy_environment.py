"""Every variable `docs/operations.md` lists for production, each set to its own value, reaches what it configures:
the resources of `OA_ENV=production`, the instance built from `deploy/production/dagster.yaml`, and a running
`oa-dagster serve`. A variable read nowhere, or read by one process and not another, fails here."""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import pytest
import requests

from oa_dagster.resources.deployments import deployment
from oa_dagster.webhook.signatures import sign
from tests.ci_deliveries import pr_payload
from tests.platform_helpers import PG, ROOT, postgres_or_skip, production_instance_home, running_serve
from tests.servers.fixtures import MOTO_CREDS

OPERATIONS = ROOT / "docs" / "operations.md"
ENV_TABLE_HEADING = "### Environment"
VARIABLE = re.compile(r"^\| `([A-Z][A-Z0-9_]+)`", re.MULTILINE)


def documented_variables() -> set[str]:
    """The variables named in the first column of the environment table of docs/operations.md."""
    text = OPERATIONS.read_text()
    start = text.index(ENV_TABLE_HEADING)
    end = text.find("\n#", start + len(ENV_TABLE_HEADING))
    return set(VARIABLE.findall(text[start : end if end > 0 else None]))


def production_env(tmp: Path, moto_url: str, database: str) -> dict[str, str]:
    """Each documented variable with a value of its own (the Postgres ones: the throwaway `database`)."""
    pg = urlsplit(database)
    return {
        "OA_ENV": "production",
        "DAGSTER_HOME": str(tmp / "home"),
        "AWS_REGION": "eu-west-3",
        "OA_S3_BUCKET": "env-outputs",
        "OA_S3_PREFIX": "env-prefix",
        "OA_S3_ENDPOINT_URL": moto_url,
        "OA_PUBLIC_URL": "https://public.env.test/bucket",
        "OA_DOWNLOAD_URL": "https://app.env.test/download",
        "OA_LOGS_BUCKET": "env-logs",
        "DAGSTER_PG_HOST": str(pg.hostname),
        "DAGSTER_PG_USER": str(pg.username),
        "DAGSTER_PG_PASSWORD": "env-pg-password",  # trust authentication: any password is accepted
        "DAGSTER_PG_DB": pg.path.lstrip("/"),
        "OA_SOURCES_REPO": "env-org/env-sources",
        "OA_SOURCES_REF": "env-ref",
        "OA_GITHUB_API_URL": "https://github.env.test/api/v3",
        "GITHUB_TOKEN": "env-github-token",
        "OA_GITHUB_APP_ID": "4711",
        "OA_GITHUB_APP_PRIVATE_KEY": "env-app-key",
        "OA_GITHUB_APP_INSTALLATION_ID": "815",
        "OA_STATUS_CONTEXT": "env-context",
        "OA_DAGSTER_UI_URL": "https://dagster.env.test",
        "OA_CI_ALLOW_HOSTS": "10.9.8.7:8080",
        "OA_WEBHOOK_SECRET": "env-webhook-secret",
        "OA_WEBHOOK_DB": f"sqlite:///{tmp / 'env-deliveries.db'}",
        "OA_WORK_DIR": str(tmp / "env-work"),
        "OA_CACHE_DIR": str(tmp / "env-cache"),
        "OA_SET_CRON": "1 2 * * 3",
        "OA_COLLECTIONS_CRON": "4 5 * * 6",
        "OA_FULL_REFRESH_DAYS": "17",
        "OA_DOWNLOAD_DEADLINE_SECONDS": "1234",
        "OA_PROBE_WORKERS": "7",
        "OA_PG_HELD_CONNECTIONS": "off",
        "OA_ALERT_WEBHOOK_URL": "https://alerts.env.test/hook",
        "OA_SET_EXPECTED_HOURS": "23",
        "OA_CI_RETENTION_DAYS": "9",
    }


def test_every_documented_variable_reaches_the_resources_the_instance_and_serve(
    tmp_path: Path, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with postgres_or_skip("oa_env") as database:
        env = production_env(tmp_path, moto_url, database)
        assert documented_variables() == set(env), "docs/operations.md's table and this test name other variables"
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        _check_resources(env)
        _check_instance(env, tmp_path)
        _check_serve(env, tmp_path, moto_url)


def _check_resources(env: dict[str, str]) -> None:
    chosen = deployment(env)
    resources = chosen.resources
    assert (chosen.name, chosen.set_cron, chosen.collections_cron) == ("production", "1 2 * * 3", "4 5 * * 6")
    store = resources["store"]
    assert (store.bucket, store.prefix, store.public_url, store.download_url) == (
        "env-outputs",
        "env-prefix",
        "https://public.env.test/bucket",
        "https://app.env.test/download",
    )
    assert (resources["s3"].endpoint_url, resources["s3"].region_name) == (env["OA_S3_ENDPOINT_URL"], "eu-west-3")
    sources = resources["sources_repo"]
    assert (sources.kind, sources.api_url, sources.repo, sources.default_ref) == (
        "github",
        "https://github.env.test/api/v3",  # was always api.github.com: a test deployment read the real repository
        "env-org/env-sources",
        "env-ref",
    )
    github = resources["github"]
    assert (github.api_url, github.repo, github.status_context, github.ui_url) == (
        "https://github.env.test/api/v3",
        "env-org/env-sources",
        "env-context",
        "https://dagster.env.test",
    )
    # secrets go in by name: the UI shows `GITHUB_TOKEN`, never the value
    for signed_in in (github, sources):
        assert (signed_in.app_id, signed_in.app_installation_id) == ("4711", 815)
        for secret, name in (
            (signed_in.token, "GITHUB_TOKEN"),
            (signed_in.app_private_key, "OA_GITHUB_APP_PRIVATE_KEY"),
        ):
            assert isinstance(secret, dg.EnvVar) and secret.env_var_name == name and secret.get_value() == env[name]
    alerts = resources["set_alerts"]
    assert isinstance(alerts.webhook_url, dg.EnvVar) and alerts.webhook_url.env_var_name == "OA_ALERT_WEBHOOK_URL"
    assert alerts.expected_hours == 23
    ci = resources["ci"]
    assert ci.deliveries_url == env["OA_WEBHOOK_DB"] and ci.allowed() == {"10.9.8.7:8080"}
    assert ci.retention_days == 9
    processing = resources["processing"]
    assert (processing.work_dir, processing.cache_dir, processing.full_refresh_days) == (
        env["OA_WORK_DIR"],
        env["OA_CACHE_DIR"],
        17,
    )
    assert processing.fetch_options().download_deadline == 1234 and processing.probe_workers == 7
    assert processing.hold_db_connections is False  # on by default


def _check_instance(env: dict[str, str], tmp: Path) -> None:
    """The instance an operator starts from deploy/production/dagster.yaml, on the throwaway database."""
    home = production_instance_home(Path(env["DAGSTER_HOME"]))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        url = urlsplit(instance.run_storage.postgres_url)  # type: ignore[attr-defined]
        assert (url.hostname, url.port, url.username, url.password, url.path) == (
            PG["host"],
            PG["port"],
            env["DAGSTER_PG_USER"],
            env["DAGSTER_PG_PASSWORD"],
            "/" + env["DAGSTER_PG_DB"],
        )
        assert instance.get_runs_count() == 0
        logs = instance.compute_log_manager
        # (dagster-aws's S3ComputeLogManager takes `region` but its client follows the AWS chain's region)
        assert (logs._s3_bucket, logs._s3_prefix) == ("env-logs", "dagster-compute-logs")  # type: ignore[attr-defined]


def _check_serve(env: dict[str, str], tmp: Path, moto_url: str) -> None:
    """`oa-dagster serve` (its own process): downloads from the bucket and prefix on the endpoint, deliveries
    signed with the secret recorded in the deliveries database."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1", **MOTO_CREDS)
    s3.create_bucket(Bucket="env-outputs")
    s3.put_object(Bucket="env-outputs", Key="env-prefix/state.txt", Body=b"ok\n")
    serve_env = {**env, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    with running_serve(serve_env, tmp / "serve.log") as base:
        download = requests.get(f"{base}/download/state.txt", allow_redirects=False, timeout=30)
        assert download.status_code == 307, download.text
        target = download.headers["location"]
        assert target.startswith(f"{moto_url}/env-outputs/env-prefix/state.txt?"), target
        body = json.dumps(pr_payload()).encode()
        delivery = str(uuid.uuid4())
        headers = {"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": delivery}
        wrong = requests.post(f"{base}/hook", data=body, headers={**headers, "X-Hub-Signature-256": sign("x", body)})
        assert wrong.status_code == 401
        signed = {**headers, "X-Hub-Signature-256": sign(env["OA_WEBHOOK_SECRET"], body)}
        assert requests.post(f"{base}/hook", data=body, headers=signed, timeout=30).ok
    with sqlite3.connect(tmp / "env-deliveries.db") as db:
        tables = [row[0] for row in db.execute("select name from sqlite_master where type = 'table'")]
        recorded = [row for table in tables for row in db.execute(f"select * from {table}") if delivery in row]
    assert recorded, f"the delivery is not in OA_WEBHOOK_DB ({tables})"


def test_the_compute_logs_lifecycle_rule_outlives_ci_runs_and_matches_the_instance(moto_url: str) -> None:
    """The rule an operator applies to `OA_LOGS_BUCKET` (docs/operations.md), applied to an S3 bucket and read
    back: it covers the instance's compute log prefix, keeps logs at least as long as CI runs are kept, and as
    long as the instance keeps the ticks that explain runs."""
    import boto3
    import yaml

    from oa_dagster.ci.retention import DEFAULT_RETENTION_DAYS

    deploy = ROOT / "deploy" / "production"
    instance = yaml.safe_load((deploy / "dagster.yaml").read_text())
    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1", **MOTO_CREDS)
    s3.create_bucket(Bucket="env-lifecycle")
    rules = json.loads((deploy / "compute-logs-lifecycle.json").read_text())
    s3.put_bucket_lifecycle_configuration(Bucket="env-lifecycle", LifecycleConfiguration=rules)
    [rule] = s3.get_bucket_lifecycle_configuration(Bucket="env-lifecycle")["Rules"]
    assert rule["Status"] == "Enabled"
    assert rule["Filter"]["Prefix"] == instance["compute_logs"]["config"]["prefix"] + "/"
    days = rule["Expiration"]["Days"]
    assert days >= DEFAULT_RETENTION_DAYS
    ticks = instance["retention"]
    assert days == ticks["schedule"]["purge_after_days"] == ticks["sensor"]["purge_after_days"]["failure"]
    assert f"Expiration {days} days" in OPERATIONS.read_text()  # what the operator reads is what is applied
