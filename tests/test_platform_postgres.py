"""The platform on Postgres storage over TCP (a throwaway database on the machine's server)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from tests.platform_helpers import local, materialize_catalog, materialize_range, partition_status

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


@pytest.fixture
def pg_url() -> Iterator[str]:
    import psycopg2

    try:
        admin = psycopg2.connect(dbname="postgres", connect_timeout=3, **PG)
    except psycopg2.OperationalError:
        if os.environ.get("CI"):
            raise
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    admin.autocommit = True
    name = f"oa_test_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_catalog_and_a_partition_on_postgres_storage(pg_url: str, tmp_path: Path) -> None:
    resources = local(tmp_path)
    key = "us/ca/berkeley_example/city"
    with dg.instance_for_test(overrides={"storage": {"postgres": {"postgres_url": pg_url}}}) as instance:
        assert "Postgres" in type(instance.run_storage).__name__
        materialize_catalog(instance, resources)
        assert materialize_range(instance, resources, "centerlines", key, key).success
        assert partition_status(instance, "centerlines", [key]) == {key: dg.AssetPartitionStatus.MATERIALIZED}
