"""What the UI shows of an entry carried over unchanged: read through the webserver's GraphQL API (what the UI
reads), the partition goes stale when the next set's catalog arrives and fresh again once the set carried it over,
with the same data version as before."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from tests.platform_helpers import local, local_instance_home, materialize_catalog, running_webserver, write_source
from tests.servers.downloads import DownloadServer
from tests.test_incremental_sets import CSV_CONFORM, csv_bytes, entry, run_set

pytest_plugins = ["tests.servers.fixtures"]

PARTITION_VIEW = """
query Partition($partition: String!) {
  assetNodes(assetKeys: [{path: ["addresses"]}]) {
    staleStatus(partition: $partition)
    dataVersion(partition: $partition)
  }
}
"""


def test_an_unchanged_partition_is_fresh_with_the_same_data_version_in_the_ui(
    tmp_path: Path, download_server: DownloadServer
) -> None:
    download_server.route("/same.csv", body=csv_bytes(4), etag='"u1"')
    download_server.route("/other.csv", body=csv_bytes(3), etag='"o1"')
    sources = tmp_path / "sources"
    write_source(
        sources,
        "us/xx/ui",
        {
            "addresses": [
                entry("same", "http", download_server.url("/same.csv"), CSV_CONFORM),
                entry("other", "http", download_server.url("/other.csv"), CSV_CONFORM),
            ]
        },
    )
    resources = local(tmp_path, sources)
    home = local_instance_home(tmp_path / "home")
    env = {"OA_ENV": "local", "OA_DATA_DIR": str(tmp_path / "data"), "OA_SOURCES_DIR": str(sources)}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        cursor, first = run_set(instance, resources, "set-1", None)
        assert first["finished"] and first["done"] == 2
        with running_webserver(home, env, tmp_path / "web.log") as graphql:

            def view() -> dict[str, str]:
                return graphql(PARTITION_VIEW, partition="us/xx/ui/same")["assetNodes"][0]

            before = view()
            assert before["staleStatus"] == "FRESH" and before["dataVersion"]
            # the next set's catalog: until the set reaches the entry, the UI shows it stale
            materialize_catalog(instance, resources)
            assert view()["staleStatus"] == "STALE"
            cursor, second = run_set(instance, resources, "set-2", cursor)
            assert second["finished"] and second["unchanged"] == 2
            after = view()
    assert after == {"staleStatus": "FRESH", "dataVersion": before["dataVersion"]}
