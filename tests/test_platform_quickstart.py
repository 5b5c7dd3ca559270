"""The README's first commands, verbatim, in a fresh directory with no variables set: `quickstart` (example sources
processed by the named jobs), `download`, and `ui` (the Dagster UI and the download app its links point at)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import requests

from oa_dagster.platform import store_layout as keys
from oa_dagster.platform.store import LocalStore, get_json
from tests.platform_helpers import free_port, post_graphql, wait_for_dagster_server

ROOT = Path(__file__).resolve().parent.parent
OA = Path(sys.executable).with_name("oa-dagster")
LOCAL_VARIABLES = ("OA_DATA_DIR", "DAGSTER_HOME", "OA_ENV", "OA_DOWNLOAD_URL", "OA_SOURCES_DIR")


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in LOCAL_VARIABLES}


@dataclass
class Quickstart:
    cwd: Path  # the "project directory" the commands run in
    printed: str
    download_port: int

    @property
    def home(self) -> Path:
        return self.cwd / ".oa-dagster"


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Quickstart:
    """The README's first command, run once in a fresh directory (its links on a free port, not 8080)."""
    cwd = tmp_path_factory.mktemp("project")
    port = free_port()
    done = subprocess.run(
        [str(OA), "quickstart", "--download-port", str(port)],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return Quickstart(cwd, done.stdout, port)


def test_quickstart_processes_every_example_entry_into_a_persistent_instance(quickstart: Quickstart) -> None:
    assert "addresses us/ca/berkeley_example/legacy: skipped" in quickstart.printed
    store = LocalStore(quickstart.home / "data")
    for layer, name in (("addresses", "city"), ("parcels", "county"), ("buildings", "city"), ("centerlines", "city")):
        pointer = get_json(store, keys.latest_key(layer, f"us/ca/berkeley_example/{name}"))
        assert pointer and pointer["feature_count"] > 0, layer
        assert store.exists(pointer["files"]["output"])
    with dg.DagsterInstance.from_config(str(quickstart.home / "dagster_home")) as instance:
        assert instance.get_materialized_partitions(dg.AssetKey("parcels")) == {"us/ca/berkeley_example/county"}
        jobs = [run.job_name for run in reversed(instance.get_runs())]
    layers = ["source_catalog_job", "addresses_job", "parcels_job", "buildings_job", "centerlines_job"]
    # then the collections of every area and layer with entries (Berkeley: us_west and global; Berlin: europe and
    # global, addresses only) in one run, and one coverage run: coverage, maps, the results index
    assert jobs == [*layers, "collections_job", "coverage_job"]
    collections_run = instance.get_runs(dg.RunsFilter(job_name="collections_job"))[0]
    built = {
        record.partition_key
        for record in instance.fetch_materializations(dg.AssetKey("collections"), limit=100).records
        if record.run_id == collections_run.run_id
    }
    assert len(built) == 9, built


def test_quickstart_builds_collections_in_two_areas_and_both_licences_and_the_download_page(
    quickstart: Quickstart,
) -> None:
    store = LocalStore(quickstart.home / "data")
    records = {key for key in store.list("collections/addresses/") if key.endswith(".json")}
    assert records == {f"collections/addresses/{name}.json" for name in ("global", "global-sa", "us_west", "europe-sa")}
    for name in ("openaddr-collected-us_west.zip", "openaddr-collected-europe-sa.zip"):
        assert store.exists(name)  # the machine's classic root names
    for key in ("index.html", "index.json", "state.txt", "licenses.json", "coverage/render-world.png"):
        assert store.exists(key), key
    page = f"http://127.0.0.1:{quickstart.download_port}/download/index.html"
    assert f"{quickstart.home / 'data' / 'index.html'}" in quickstart.printed and page in quickstart.printed
    assert "collections global|addresses: 2 entries" in quickstart.printed


def test_quickstart_counts_one_entry_in_the_singular_and_names_a_range_of_one_once(quickstart: Quickstart) -> None:
    assert "  parcels: 1 entry, us/ca/berkeley_example/county\n" in quickstart.printed
    assert "  addresses: 2 entries, de/berlin_example/city to us/ca/berkeley_example/city\n" in quickstart.printed
    assert "collections europe|addresses: 1 entry, 120 features" in quickstart.printed
    assert " 1 entries" not in quickstart.printed
    assert "county to us/ca/berkeley_example/county" not in quickstart.printed


def test_quickstart_sets_up_the_instance_config_and_prints_the_ui_command_of_this_virtualenv(
    quickstart: Quickstart,
) -> None:
    assert (quickstart.home / "dagster_home" / "dagster.yaml").read_text() == (
        ROOT / "deploy" / "local" / "dagster.yaml"
    ).read_text()
    assert f"{OA} ui" in quickstart.printed  # the venv's command: `dagster` alone is not on PATH unactivated
    assert "dagster dev" not in quickstart.printed


def test_the_readme_download_example_works_after_quickstart(quickstart: Quickstart, tmp_path: Path) -> None:
    """Verbatim, from the quickstart's directory, with no variables: one rule finds the quickstart's store.

    Two layers of one source (same entry name `city`) land in their own folders, so neither overwrites the other.
    """
    store = LocalStore(quickstart.home / "data")
    for layer in ("addresses", "buildings"):
        done = subprocess.run(
            [str(OA), "download", "us/ca/berkeley_example", "--layer", layer, "--name", "city", "--dest", "out/"],
            cwd=quickstart.cwd,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
    for layer in ("addresses", "buildings"):
        got = quickstart.cwd / "out" / layer / "us/ca/berkeley_example/city" / "out.geojson"
        pointer = get_json(store, keys.latest_key(layer, "us/ca/berkeley_example/city"))
        assert got.read_bytes() == (store.root / pointer["files"]["output"]).read_bytes(), layer
        assert (got.parent / "state.json").exists()


def test_download_and_process_both_ask_for_the_name_when_a_layer_has_several_entries(quickstart: Quickstart) -> None:
    """Berkeley's addresses: `city` (with an output) and `legacy` (skipped); `download` used to pick `city`."""
    source = ROOT / "oa_dagster" / "examples" / "sources" / "us" / "ca" / "berkeley_example.json"
    for command in (
        ["download", "us/ca/berkeley_example", "--layer", "addresses", "--dest", "picked/"],
        ["process", str(source), "--layer", "addresses", "--output", "picked/"],
    ):
        done = subprocess.run(
            [str(OA), *command], cwd=quickstart.cwd, env=clean_env(), capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 2, command
        said = "us/ca/berkeley_example: layer addresses has several entries, choose one with --name ("
        assert said in done.stderr and "city" in done.stderr and "legacy" in done.stderr, done.stderr
        assert not (quickstart.cwd / "picked").exists()


def test_cleanup_and_hooks_find_the_quickstarts_instance_by_one_rule(quickstart: Quickstart, tmp_path: Path) -> None:
    """No DAGSTER_HOME: `cleanup` looked at no runs ("DAGSTER_HOME is not set") where `hooks list` used the
    quickstart's instance; both now take `$DAGSTER_HOME`, else `./.oa-dagster/dagster_home`."""

    def run(*command: str, cwd: Path = quickstart.cwd) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(OA), *command], cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=120
        )

    cleaned = run("cleanup", "--dry-run")
    assert cleaned.returncode == 0, cleaned.stderr
    assert "runs: checked in the Dagster instance in .oa-dagster/dagster_home" in cleaned.stdout
    assert "(store .oa-dagster/data" in cleaned.stdout or str(quickstart.home / "data") in cleaned.stdout
    hooks = run("hooks", "list")
    assert hooks.returncode == 0, hooks.stderr
    assert str(quickstart.home / "dagster_home" / "webhook.db") in hooks.stdout
    elsewhere = run("cleanup", "--dry-run", cwd=tmp_path)
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert "runs: not checked (no Dagster instance in .oa-dagster/dagster_home" in elsewhere.stdout


def test_download_of_a_skipped_entry_says_it_is_skipped(quickstart: Quickstart) -> None:
    done = subprocess.run(
        [str(OA), "download", "us/ca/berkeley_example", "--layer", "addresses", "--name", "legacy"],
        cwd=quickstart.cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "us/ca/berkeley_example/legacy addresses: the source marks it skip: true" in done.stderr


def _processes_with(variable: str, value: str) -> list[int]:
    """Processes on this machine whose environment has `variable=value` (what `oa-dagster ui` started)."""
    wanted = f"{variable}={value}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if wanted in (proc / "environ").read_bytes().split(b"\0"):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def test_oa_dagster_ui_shows_the_entries_and_serves_the_links_in_their_metadata(quickstart: Quickstart) -> None:
    """`oa-dagster ui` as the quickstart printed it: the UI's GraphQL API shows the entry's metadata, preview,
    sample and checks; its output and preview links answer from the download app; it stops cleanly."""
    port = free_port()
    ui = subprocess.Popen(
        [str(OA), "ui", "--port", str(port)],
        cwd=quickstart.cwd,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_dagster_server(base, ui)
        assert ui.poll() is None, ui.communicate()
        assert post_graphql(base, "query { shouldShowNux }") == {"shouldShowNux": False}  # no community dialog
        entry = "us/ca/berkeley_example/city"
        asset = post_graphql(
            base,
            """query($key: AssetKeyInput!, $entry: String!) { assetOrError(assetKey: $key) {
            ... on Asset { assetMaterializations(partitions: [$entry]) { partition metadataEntries { label
              ... on MarkdownMetadataEntry { mdStr } ... on TableMetadataEntry { table { records } }
              ... on IntMetadataEntry { intValue } ... on UrlMetadataEntry { url } } } } } }""",
            key={"path": ["addresses"]},
            entry=entry,
        )["assetOrError"]
        entries = {e["label"]: e for e in asset["assetMaterializations"][0]["metadataEntries"]}
        assert entries["feature_count"]["intValue"] > 100
        assert json.loads(entries["sample"]["table"]["records"][0])["street"]
        app = f"http://127.0.0.1:{quickstart.download_port}/download/"
        output = entries["url_output"]["url"]
        assert output.startswith(f"{app}runs/addresses/{entry}/") and output.endswith("/out.geojson")
        fetched = requests.get(output, timeout=30)
        assert fetched.status_code == 200
        assert fetched.content == (quickstart.home / "data" / output[len(app) :]).read_bytes()
        preview = entries["preview"]["mdStr"]
        assert preview.startswith(f"![preview]({app}runs/addresses/{entry}/") and preview.endswith("/preview.png)")
        image = requests.get(preview[len("![preview](") : -1], timeout=30)
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG")

        nodes = post_graphql(
            base,
            """query { assetNodes(assetKeys: [{path: ["addresses"]}]) { assetChecksOrError {
            ... on AssetChecks { checks { name executionForLatestMaterialization { status
              evaluation { severity success partition } } } } } } }""",
        )["assetNodes"]
        checks = {c["name"]: c["executionForLatestMaterialization"] for c in nodes[0]["assetChecksOrError"]["checks"]}
        assert set(checks) == {"output_valid", "output_quality"}
        assert checks["output_valid"]["status"] == "SUCCEEDED"
        assert checks["output_valid"]["evaluation"]["severity"] == "ERROR"
        assert checks["output_quality"]["evaluation"]["severity"] == "WARN"
        assert checks["output_quality"]["evaluation"]["partition"] == entry  # the skipped entry has no checks
    finally:
        ui.send_signal(signal.SIGINT)  # Ctrl-C
        out, err = ui.communicate(timeout=120)
    assert ui.returncode == 0, out + err
    assert "No dagster instance configuration file (dagster.yaml) found" not in err
    assert "Warning" not in err and "superseded" not in err, err  # none a user could act on
    assert _processes_with("DAGSTER_HOME", str(quickstart.home / "dagster_home")) == []  # webserver, daemon, code
    for stopped in (port, quickstart.download_port):
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{stopped}/", timeout=5)


def test_the_coverage_sensor_finds_the_quickstarts_collections_already_covered(quickstart: Quickstart) -> None:
    """What the daemon of `oa-dagster ui` evaluates first on the quickstart's instance: no second coverage_job run."""
    from oa_dagster.sensors.coverage import coverage_after_collections

    with dg.DagsterInstance.from_config(str(quickstart.home / "dagster_home")) as instance:
        result = coverage_after_collections(dg.build_sensor_context(instance=instance))
    assert isinstance(result, dg.SensorResult) and not result.run_requests, result
    assert "already covered by coverage_job run" in str(result.skip_reason)


def test_the_quickstarts_maps_show_berkeley_and_berlin_at_a_glance(quickstart: Quickstart) -> None:
    """Two towns on maps of the world, the USA and Europe: each a dot in the covered colour, still that colour
    once the map is shrunk to 1,000 px wide (what a browser window shows)."""
    import io

    from PIL import Image

    from oa_dagster.coverage import maps

    store = LocalStore(quickstart.home / "data")
    places = {"berkeley": (-122.2665, 37.8719), "berlin": (13.40, 52.52)}
    for name, shown in (("world", ("berkeley", "berlin")), ("usa", ("berkeley",)), ("europe", ("berlin",))):
        png = store.get_bytes(f"coverage/render-{name}.png")
        assert png is not None, name
        image = Image.open(io.BytesIO(png)).convert("RGB")
        small = image.resize((1000, round(1000 * image.height / image.width)), Image.Resampling.LANCZOS)
        view = maps.MAPS[name]
        for place in shown:
            x, y = view.pixel(*places[place])
            disc = [image.getpixel((x + dx, y + dy)) for dx in range(-5, 6) for dy in range(-5, 6)]
            assert disc.count(maps.GOOD_DARK) >= 100, (name, place)
            seen = small.getpixel((round(x * 1000 / image.width), round(y * 1000 / image.width)))
            assert sum(abs(a - b) for a, b in zip(seen, maps.GOOD_DARK, strict=True)) < 40, (name, place, seen)
