"""The platform on Postgres storage over TCP (a throwaway database on the machine's server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from tests.platform_helpers import local, materialize_catalog, materialize_range, partition_status, postgres_or_skip


@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgres_or_skip("oa_test") as url:
        yield url


def test_catalog_and_a_partition_on_postgres_storage(pg_url: str, tmp_path: Path) -> None:
    resources = local(tmp_path)
    key = "us/ca/berkeley_example/city"
    with dg.instance_for_test(overrides={"storage": {"postgres": {"postgres_url": pg_url}}}) as instance:
        assert "Postgres" in type(instance.run_storage).__name__
        materialize_catalog(instance, resources)
        assert materialize_range(instance, resources, "centerlines", key, key).success
        assert partition_status(instance, "centerlines", [key]) == {key: dg.AssetPartitionStatus.MATERIALIZED}
