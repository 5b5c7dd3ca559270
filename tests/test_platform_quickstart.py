"""The README's quickstart, end to end: example sources processed by Dagster runs, outputs present."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg

from oa_dagster.platform import keys
from oa_dagster.platform.store import LocalStore, get_json

ROOT = Path(__file__).resolve().parent.parent


def test_quickstart_processes_every_example_entry_into_a_persistent_instance(tmp_path: Path) -> None:
    oa = Path(sys.executable).with_name("oa-dagster")
    done = subprocess.run([str(oa), "quickstart", "--home", str(tmp_path / "qs")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "addresses us/ca/berkeley_example/legacy: skipped" in done.stdout
    store = LocalStore(tmp_path / "qs" / "data")
    for layer, name in (("addresses", "city"), ("parcels", "county"), ("buildings", "city"),
                        ("centerlines", "city")):
        pointer = get_json(store, keys.latest_key(layer, f"us/ca/berkeley_example/{name}"))
        assert pointer and pointer["feature_count"] > 0, layer
        assert store.exists(pointer["files"]["output"])
    with dg.DagsterInstance.from_config(str(tmp_path / "qs" / "dagster_home")) as instance:
        assert instance.get_materialized_partitions(dg.AssetKey("parcels")) == {"us/ca/berkeley_example/county"}
