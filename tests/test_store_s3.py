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
from tests.servers.fixtures import MOTO_CREDS, moto_bucket


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
