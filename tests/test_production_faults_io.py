"""Faults of issue 18 that hit the platform's I/O, with the real servers: S3 answering 503 (a fault-injecting proxy
in front of moto, `tests/servers/s3_faults.py`) while a layer run publishes through the production S3 store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from oa_dagster.platform import store_layout as layout
from oa_dagster.platform.store import S3Store, get_json
from oa_dagster.resources.deployments import S3_RETRIES, s3_resources
from tests.platform_helpers import (
    city_sources,
    local,
    materialize_catalog,
    materialize_range,
    partition_status,
    write_csv,
)
from tests.servers.fixtures import MOTO_CREDS, moto_bucket
from tests.servers.s3_faults import WRITES, Outage, S3FaultProxy

KEY = "us/xx/city/city"
ATTEMPTS = S3_RETRIES + 1  # what the client makes of one request before it gives up


@pytest.fixture
def proxy(moto_url: str) -> Iterator[S3FaultProxy]:
    server = S3FaultProxy(moto_url).start()
    yield server
    server.stop()


def production_store(tmp_path: Path, proxy: S3FaultProxy, bucket: str) -> tuple[dict[str, Any], S3Store]:
    """The production S3 store resources pointed at the proxy (one entry, `KEY`), and a store reading moto directly
    (what a downloader sees, whatever the proxy does)."""
    direct = moto_bucket(f"http://{proxy.upstream.netloc}", bucket)
    write_csv(tmp_path / "city.csv", 40)
    sources = city_sources(tmp_path, {"us/xx/city": "city.csv"})
    s3 = s3_resources(bucket, prefix="oa", endpoint_url=proxy.url, region_name="us-east-1", s3_kwargs=MOTO_CREDS)
    return {**local(tmp_path, sources), **s3}, direct


def assert_published_keys_whole(store: S3Store) -> dict[str, dict[str, Any]]:
    """Every published key (`latest/`, `held/`, the current catalog) is complete JSON, and names a run whose
    manifest and files all exist with the sizes it states: what a reader following them finds. Returns the
    pointers by key."""
    assert get_json(store, layout.CURRENT_CATALOG)["entries"]
    sizes = {item.key: item.size for item in store.list_objects("runs/")}
    pointers = {}
    for key in [*store.list("latest/"), *store.list("held/")]:
        pointer = get_json(store, key)
        assert f"{pointer['prefix']}/{layout.MANIFEST}" in sizes, f"{key} names a run without a manifest"
        for role, file_key in pointer["files"].items():
            assert file_key in sizes, f"{key} names {file_key}, which is not there"
            if role in pointer["sizes"]:
                assert sizes[file_key] == pointer["sizes"][role], f"{file_key} is not the file {key} describes"
        pointers[key] = pointer
    return pointers


def failure_description(result: dg.ExecuteInProcessResult) -> str:
    return result.get_step_failure_events()[0].step_failure_data.user_failure_data.description


def test_a_short_s3_outage_is_ridden_out_by_the_client_retries(tmp_path: Path, proxy: S3FaultProxy) -> None:
    resources, store = production_store(tmp_path, proxy, "short-outage")
    with dg.instance_for_test() as instance:
        materialize_catalog(instance, resources)
        # shorter than the retry budget: the next S3_RETRIES writes fail (a count, not seconds: the client's
        # backoff is random, so only a count makes "shorter" hold under any load)
        mark = len(proxy.seen)
        outage = proxy.fail(Outage(methods=WRITES, requests=S3_RETRIES, code="SlowDown"))
        result = materialize_range(instance, resources, "addresses", KEY, KEY)
        assert result.success
        run_id = result.run_id
    assert outage.over() and outage.failed == S3_RETRIES
    first_write = next(seen for seen in proxy.seen[mark:] if seen.method in WRITES)
    assert proxy.statuses(first_write.method, first_write.path) == [503] * S3_RETRIES + [200]
    pointers = assert_published_keys_whole(store)
    assert pointers[layout.latest_key("addresses", KEY)]["run_id"] == run_id


def test_a_60_second_s3_outage_fails_the_entry_clearly_and_never_exposes_a_half_published_run(
    tmp_path: Path, proxy: S3FaultProxy
) -> None:
    resources, store = production_store(tmp_path, proxy, "long-outage")
    latest = layout.latest_key("addresses", KEY)
    with dg.instance_for_test() as instance:
        materialize_catalog(instance, resources)
        assert materialize_range(instance, resources, "addresses", KEY, KEY).success
        before = assert_published_keys_whole(store)[latest]

        write_csv(tmp_path / "city.csv", 45)  # a new output to publish; S3 goes down in the middle of it
        outage = proxy.fail(Outage(methods=WRITES, seconds=60, starts_at=r"/runs/addresses/.*/state\.json$"))
        result = materialize_range(instance, resources, "addresses", KEY, KEY)
        assert not result.success
        failed_run = result.run_id
        description = failure_description(result)
        assert f"{KEY}: Output store unavailable: S3 unavailable: writing s3://long-outage/oa/runs/addresses/" in (
            description
        )
        assert f"answered 503 ServiceUnavailable after {ATTEMPTS} attempts" in description
        assert "1 of 1 addresses entry failed" in description
        assert partition_status(instance, "addresses", [KEY]) == {KEY: dg.AssetPartitionStatus.FAILED}

        # the run's data went up before the outage, under its own run id; nothing published names it
        run_keys = f"/runs/addresses/{KEY}/{failed_run}/"
        assert proxy.statuses("PUT", run_keys + r"state\.json$") == [503] * ATTEMPTS, "the client did not retry"
        # the entry's second attempt at the end of the run: its first upload fails as long
        assert proxy.statuses("PUT", run_keys + r"cache\.csv$") == [200] + [503] * ATTEMPTS
        debris = list(store.list(layout.run_prefix("addresses", KEY, failed_run) + "/"))
        assert debris and not any(key.endswith(layout.MANIFEST) for key in debris)
        assert assert_published_keys_whole(store) == {latest: before}

        # once S3 is back, the next run publishes as usual
        while not outage.over():
            time.sleep(1)
        write_csv(tmp_path / "city.csv", 46)
        recovered = materialize_range(instance, resources, "addresses", KEY, KEY)
        assert recovered.success
        pointer = assert_published_keys_whole(store)[latest]
        assert pointer["run_id"] == recovered.run_id and pointer["feature_count"] == 46


def test_the_store_failing_after_the_held_run_is_dropped_leaves_the_old_latest_pointer(
    tmp_path: Path, proxy: S3FaultProxy
) -> None:
    """The last two writes of a promotion: dropping the held run, then the pointer. S3 failing between them must not
    leave a promoted pointer behind an entry reported failed (nor a held run older than the latest one)."""
    resources, store = production_store(tmp_path, proxy, "held-order")
    with dg.instance_for_test() as instance:
        materialize_catalog(instance, resources)
        proxy.fail(Outage(methods=frozenset({"DELETE"}), path=r"/held/", requests=1000))
        result = materialize_range(instance, resources, "addresses", KEY, KEY)
    assert not result.success
    assert f"{KEY}: Output store unavailable: S3 unavailable: deleting" in failure_description(result)
    assert get_json(store, layout.latest_key("addresses", KEY)) is None
    assert assert_published_keys_whole(store) == {}
