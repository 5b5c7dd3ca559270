"""The README's quickstart, end to end: example sources processed by Dagster runs, outputs present."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import requests

from oa_dagster.platform import keys
from oa_dagster.platform.store import LocalStore, get_json

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The README's first command, run once: its home directory and what it printed."""
    home = tmp_path_factory.mktemp("quickstart") / "qs"
    oa = Path(sys.executable).with_name("oa-dagster")
    done = subprocess.run([str(oa), "quickstart", "--home", str(home)], cwd=home.parent,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return home, done.stdout


def test_quickstart_processes_every_example_entry_into_a_persistent_instance(quickstart: tuple[Path, str]) -> None:
    home, printed = quickstart
    assert "addresses us/ca/berkeley_example/legacy: skipped" in printed
    store = LocalStore(home / "data")
    for layer, name in (("addresses", "city"), ("parcels", "county"), ("buildings", "city"),
                        ("centerlines", "city")):
        pointer = get_json(store, keys.latest_key(layer, f"us/ca/berkeley_example/{name}"))
        assert pointer and pointer["feature_count"] > 0, layer
        assert store.exists(pointer["files"]["output"])
    with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
        assert instance.get_materialized_partitions(dg.AssetKey("parcels")) == {"us/ca/berkeley_example/county"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_ui_shows_the_entry_metadata_preview_sample_and_checks(quickstart: tuple[Path, str]) -> None:
    """What the quickstart prints to browse the runs, through the webserver's GraphQL API (what the UI reads)."""
    home, _ = quickstart
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home / "dagster_home"), "OA_DATA_DIR": str(home / "data")}
    web = subprocess.Popen([str(Path(sys.executable).with_name("dagster-webserver")), "-w", "workspace.yaml",
                            "-h", "127.0.0.1", "-p", str(port)], cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and web.poll() is None:
            try:
                if requests.get(f"{base}/server_info", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        assert web.poll() is None, web.stderr.read().decode() if web.stderr else ""

        def graphql(query: str, **variables: Any) -> dict[str, Any]:
            answer = requests.post(f"{base}/graphql", json={"query": query, "variables": variables}, timeout=60)
            assert answer.ok and "errors" not in answer.json(), answer.text
            return answer.json()["data"]

        entry = "us/ca/berkeley_example/city"
        asset = graphql("""query($key: AssetKeyInput!, $entry: String!) { assetOrError(assetKey: $key) {
            ... on Asset { assetMaterializations(partitions: [$entry]) { partition metadataEntries { label
              ... on MarkdownMetadataEntry { mdStr } ... on TableMetadataEntry { table { records } }
              ... on IntMetadataEntry { intValue } ... on UrlMetadataEntry { url } } } } } }""",
                        key={"path": ["addresses"]}, entry=entry)["assetOrError"]
        entries = {e["label"]: e for e in asset["assetMaterializations"][0]["metadataEntries"]}
        assert entries["preview"]["mdStr"].startswith("![preview](data:image/png;base64,")
        assert entries["feature_count"]["intValue"] > 100
        assert json.loads(entries["sample"]["table"]["records"][0])["street"]
        assert entries["url_output"]["url"].endswith("/out.geojson")

        nodes = graphql("""query { assetNodes(assetKeys: [{path: ["addresses"]}]) { assetChecksOrError {
            ... on AssetChecks { checks { name executionForLatestMaterialization { status
              evaluation { severity success partition } } } } } } }""")["assetNodes"]
        checks = {c["name"]: c["executionForLatestMaterialization"] for c in nodes[0]["assetChecksOrError"]["checks"]}
        assert set(checks) == {"output_valid", "output_quality"}
        assert checks["output_valid"]["status"] == "SUCCEEDED"
        assert checks["output_valid"]["evaluation"]["severity"] == "ERROR"
        assert checks["output_quality"]["evaluation"]["severity"] == "WARN"
        assert checks["output_quality"]["evaluation"]["partition"] == entry  # the skipped entry has no checks
    finally:
        web.terminate()
        web.wait(30)
