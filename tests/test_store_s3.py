"""The output store on S3: a moto server over HTTP, through dagster-aws's S3Resource."""

from __future__ import annotations

import argparse
from pathlib import Path

import dagster as dg
import pytest

from oa_dagster.platform import store_layout as layout
from oa_dagster.platform.store import LocalStore, get_json
from oa_dagster.resources.deployments import local_resources, s3_resources
from tests.platform_helpers import materialize_catalog, materialize_range
from tests.servers.fixtures import MOTO_CREDS, PUBLIC_CONTENT_TYPES, moto_bucket


def test_s3_store_round_trips_lists_and_downloads(moto_url: str, tmp_path: Path) -> None:
    store = moto_bucket(moto_url, "roundtrip")
    store.put_bytes("latest/addresses/us/a/city.json", b"{}")
    (tmp_path / "f").write_bytes(b"x" * 1000)
    store.put_file("runs/addresses/us/a/city/r1/out.geojson", tmp_path / "f")
    assert list(store.list("runs/")) == ["runs/addresses/us/a/city/r1/out.geojson"]
    assert store.get_bytes("missing.json") is None
    seen: list[int] = []
    store.download("runs/addresses/us/a/city/r1/out.geojson", tmp_path / "g", lambda _w, done, _t: seen.append(done))
    assert (tmp_path / "g").read_bytes() == b"x" * 1000 and seen[-1] == 1000
    assert store.url("a/b") == "s3://roundtrip/oa/a/b"


def test_example_entries_materialize_into_s3_and_download_from_there(moto_url: str, tmp_path: Path) -> None:
    from oa_dagster.cli.platform import cmd_download

    store = moto_bucket(moto_url, "oa-results")
    resources = {
        **local_resources(tmp_path / "unused", preview=False),
        **s3_resources(
            "oa-results",
            prefix="oa",
            endpoint_url=moto_url,
            region_name="us-east-1",
            public_url="https://data.example.org",
            s3_kwargs=MOTO_CREDS,
        ),
    }
    key = "us/ca/berkeley_example/county"
    with dg.instance_for_test() as instance:
        materialize_catalog(instance, resources)
        result = materialize_range(instance, resources, "parcels", key, key)
        assert result.success
        meta = result.get_asset_materialization_events()[0].event_specific_data.materialization.metadata
        assert meta["url_output"].value.startswith("https://data.example.org/oa/runs/parcels/" + key)
    pointer = get_json(store, layout.latest_key("parcels", key))
    assert pointer["feature_count"] > 0
    assert get_json(store, layout.CURRENT_CATALOG)["entries"]["parcels"][key]
    args = argparse.Namespace(
        source="us/ca/berkeley_example", layer="parcels", name=None, dest=str(tmp_path / "dl"), all_files=False
    )
    assert cmd_download(args, store=store) == 0
    assert (tmp_path / "dl" / "parcels" / key / "out.geojson").stat().st_size == pointer["sizes"]["output"]


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/./b", "a/../b", "..", "a/b/", "a\x00b"])
def test_both_stores_refuse_keys_that_escape_or_mean_different_objects(moto_url: str, tmp_path: Path, key: str) -> None:
    for store in (LocalStore(tmp_path), moto_bucket(moto_url, "refuse")):
        with pytest.raises(ValueError, match="bad key"):
            store.put_bytes(key, b"x")


def test_every_object_a_set_publishes_carries_its_content_type(moto_url: str, tmp_path: Path) -> None:
    """A public bucket serves an object with the type it was stored with (boto3's default: binary/octet-stream):
    a run's files, collections, coverage, maps and the results index, written by their assets, each read back."""
    from oa_dagster.assets.collections import collections
    from oa_dagster.assets.coverage import COVERAGE_ASSETS
    from oa_dagster.assets.results_index import results_index
    from tests.collections_helpers import make_world

    store = moto_bucket(moto_url, "content-types")
    resources = {
        **local_resources(tmp_path / "unused", work_dir=str(tmp_path / "work")),
        **s3_resources(
            "content-types", prefix="oa", endpoint_url=moto_url, region_name="us-east-1", s3_kwargs=MOTO_CREDS
        ),
    }
    key = "us/ca/berkeley_example/county"
    with dg.instance_for_test() as instance:
        materialize_catalog(instance, resources)
        assert materialize_range(instance, resources, "parcels", key, key).success  # out.geojson, preview.png, ...
        make_world(store, tmp_path, rows=10)  # a catalog and outputs for collections and coverage
        area = dg.MultiPartitionKey({"area": "global", "layer": "addresses"})
        assert dg.materialize([collections], partition_key=area, resources=resources, instance=instance).success
        assert dg.materialize([*COVERAGE_ASSETS, results_index], resources=resources, instance=instance).success
    expected = PUBLIC_CONTENT_TYPES
    found: dict[str, str] = {}
    for stored in store.list(""):
        head = store.client.head_object(Bucket="content-types", Key=f"oa/{stored}")
        suffix = Path(stored).suffix
        want = "application/geo+json" if stored == "coverage/render-world.geojson" else expected[suffix]
        assert head["ContentType"] == want, stored
        found[suffix] = stored
    assert set(found) == set(expected), found  # every kind was written and checked
    assert "openaddr-collected-global.zip" in store.list("openaddr")  # the classic copy keeps the zip's type
    assert store.client.head_object(Bucket="content-types", Key="oa/index.html")["CacheControl"] == "no-cache"
