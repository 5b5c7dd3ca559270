"""The results index (index.json, state.txt, licenses.json, index.html) from really processed entries, on the local
store and on S3 through moto over HTTP; the asset through `dg.materialize`; the download app serving it."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from PIL import Image
from starlette.applications import Starlette

from oa_dagster.assets.results_index import results_index
from oa_dagster.platform import store_layout as layout
from oa_dagster.platform.catalog import build_catalog, local_commit
from oa_dagster.platform.entry_processing import EntryOptions, process_entry
from oa_dagster.platform.publishing import publish_run
from oa_dagster.platform.store import LocalStore, OutputStore, S3Store, get_json, put_json
from oa_dagster.resources.deployments import local_resources
from oa_dagster.results_index import build_results_index
from oa_dagster.results_index.documents import STATE_COLUMNS
from oa_dagster.webhook.app import create_app
from tests.platform_helpers import csv_entry, write_csv, write_source
from tests.servers.apps import AppServers
from tests.servers.fixtures import moto_bucket

pytest_plugins = ["tests.servers.fixtures"]

GOOD = "us/ca/good/city"
SHARE_ALIKE = "us/ny/sharealike/city"
FAILING = "de/be/berlin/city"  # good once, failing now
NEVER = "us/tx/never/city"  # never good
HELD = "us/wa/held/city"
SKIPPED = "us/or/skipme/city"
NOT_RUN = "us/co/notrun/city"
BROKEN = "fr/paris/city"  # its newest run's problem detail carries markup from a server's answer
HOSTILE = '<img src=x onerror="window.hacked=1">&amp;'
PUBLIC_DOMAIN = {"text": "Public Domain", "attribution": False, "share-alike": False}
ODBL = {
    "text": "ODbL",
    "url": "https://opendatacommons.org/licenses/odbl/",
    "attribution name": "NYC Open Data & <Co>",
    "share-alike": True,
}


def _sources(tmp: Path) -> Path:
    """Source JSON for every case, reading CSVs under `tmp/data`."""
    sources = tmp / "sources"
    data = tmp / "data-files"
    plan: dict[str, tuple[int, dict[str, Any]]] = {
        GOOD: (30, {"license": PUBLIC_DOMAIN, "website": "https://good.example.org"}),
        SHARE_ALIKE: (20, {"license": ODBL, "website": "https://ny.example.org"}),
        FAILING: (25, {"license": "CC-BY 4.0", "website": "https://berlin.example.org"}),
        NEVER: (0, {}),
        HELD: (40, {"license": PUBLIC_DOMAIN}),
        SKIPPED: (5, {"skip": True}),
        NOT_RUN: (5, {}),
        BROKEN: (5, {}),
    }
    for key, (rows, extra) in plan.items():
        source_key = layout.split_partition_key(key)[0]
        csv_path = data / f"{source_key.replace('/', '-')}.csv"
        if rows:
            write_csv(csv_path, rows)
        relative = Path(*[".."] * source_key.count("/"), "..", "data-files", csv_path.name)
        write_source(sources, source_key, {"addresses": [csv_entry("city", relative.as_posix(), **extra)]})
    return sources


def processed_store(store: OutputStore, tmp: Path) -> dict[str, Any]:
    """Entries processed for real (`process_entry`, runs `run-1` then `run-2`), giving every status; returns the
    stored catalog."""
    sources = _sources(tmp)
    catalog = build_catalog(sources, local_commit(sources), ref="local", origin="test", keep_source_dir=True)
    put_json(store, layout.CURRENT_CATALOG, catalog)
    options = EntryOptions(work_root=tmp / "work", preview=True)

    def run(key: str, run_id: str) -> None:
        process_entry(catalog, "addresses", key, store, options, run_id=run_id)

    for key in (GOOD, SHARE_ALIKE, FAILING, NEVER, HELD):
        run(key, "run-1")
    (tmp / "data-files" / "de-be-berlin.csv").unlink()  # the server lost its file: failing now
    write_csv(tmp / "data-files" / "us-wa-held.csv", 4)  # 90% fewer features: held by the gate
    for key in (FAILING, HELD):
        run(key, "run-2")
    _failed_run_with_markup(store, catalog, tmp)
    return catalog


def _failed_run_with_markup(store: OutputStore, catalog: dict[str, Any], tmp: Path) -> None:
    """A failed run whose problem detail quotes markup (what a server answered): published as runs are."""
    state = {
        "source": "fr/paris",
        "layer": "addresses",
        "name": "city",
        "source_problem": "Could not download source data",
        "problem_detail": f"HTTP 500: {HOSTILE}",
        "files": {"log": "log.txt"},
        "fingerprint": None,
    }
    out = tmp / "paris-run"
    out.mkdir()
    (out / "log.txt").write_text("download failed\n")
    version = catalog["entries"]["addresses"][BROKEN]["version"]
    publish_run(store, state, out, "run-1", entry_key=BROKEN, entry_version=version)


def add_collections(store: OutputStore, tmp: Path) -> dict[str, int]:
    """Collection files and records as the collections asset writes them (contract); returns file sizes by key."""
    sizes: dict[str, int] = {}
    for area, sa, layer in (("global", "", "addresses"), ("global", "-sa", "addresses"), ("europe", "", "parcels")):
        zip_key = f"collections/{layer}/openaddr-collected-{area}{sa}.zip"
        parquet_key = f"collections/{layer}/{area}{sa}.parquet"
        zip_path, parquet_path = tmp / f"{area}{sa}-{layer}.zip", tmp / f"{area}{sa}-{layer}.parquet"
        with zipfile.ZipFile(zip_path, "w") as archive:
            archive.writestr("README.txt", f"{area}{sa} {layer}\n")
        pq.write_table(pa.table({"source": ["us/ca/good"], "entry": ["city"]}), parquet_path)
        for key, path in ((zip_key, zip_path), (parquet_key, parquet_path)):
            store.put_file(key, path)
            sizes[key] = path.stat().st_size
        record = {
            "area": area,
            "layer": layer,
            "licence": "share-alike" if sa else "free",
            "zip": {"key": zip_key, "size": sizes[zip_key]},
            "parquet": {"key": parquet_key, "size": sizes[parquet_key]},
            "entries": 2,
            "features": 50,
            "missing": [NEVER],
            "inputs": {GOOD: "run-1"},
            "built": "2026-11-30T10:00:00+00:00",
            "catalog": "local-test",
        }
        put_json(store, f"collections/{layer}/{area}{sa}.json", record)
    store.put_file("openaddr-collected-global.zip", tmp / "global-addresses.zip")  # the classic root name
    return sizes


MAP_COLOURS = {"world": (0x74, 0xA5, 0x78), "usa": (0xE4, 0x73, 0x5A), "europe": (0x74, 0xA5, 0x78)}


def add_maps(store: OutputStore, tmp: Path) -> None:
    """Two-colour PNGs where the coverage maps go."""
    for name, colour in MAP_COLOURS.items():
        image = Image.new("RGB", (120, 60), (0xE8, 0xE8, 0xE8))
        image.paste(colour, (10, 10, 60, 40))
        path = tmp / f"render-{name}.png"
        image.save(path)
        store.put_file(f"coverage/render-{name}.png", path)
    store.put_bytes("coverage/stats.json", b'{"countries": []}\n')


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> OutputStore:
    if request.param == "local":
        return LocalStore(tmp_path / "store", base_url="http://downloads.example.org/download")
    moto_url = request.getfixturevalue("moto_url")
    return moto_bucket(moto_url, f"index-{abs(hash(tmp_path)) % 10**8}", download_url="https://oa.example.org/download")


def _state_rows(store: OutputStore) -> dict[str, dict[str, str]]:
    raw = store.get_bytes("state.txt")
    assert raw is not None and b"\r\n" in raw  # the machine's excel-tab dialect
    rows = list(csv.DictReader(io.StringIO(raw.decode()), dialect="excel-tab"))
    return {f"{r['source']}/{r['name']}": r for r in rows}


def test_state_txt_has_one_row_per_entry_with_status_problem_and_urls(store: OutputStore, tmp_path: Path) -> None:
    catalog = processed_store(store, tmp_path)
    build_results_index(store)
    header = store.get_bytes("state.txt").decode().split("\r\n", 1)[0]  # type: ignore[union-attr]
    assert header.split("\t") == list(STATE_COLUMNS)
    rows = _state_rows(store)
    assert sorted(rows) == sorted(catalog["entries"]["addresses"])
    status = {key: row["status"] for key, row in rows.items()}
    assert status == {
        GOOD: "good",
        SHARE_ALIKE: "good",
        FAILING: "failing",
        NEVER: "failed",
        HELD: "held",
        SKIPPED: "skipped",
        NOT_RUN: "not run",
        BROKEN: "failed",
    }
    good = rows[GOOD]
    pointer = get_json(store, layout.latest_key("addresses", GOOD))
    assert good["feature count"] == "30" and good["run id"] == "run-1" and good["last good"] == pointer["created"]
    assert re.fullmatch(r"[0-9a-f]{32}", good["fingerprint"]) and float(good["process seconds"]) >= 0
    assert good["output"] == store.url(pointer["files"]["output"]) and good["preview"].endswith("/preview.png")
    assert good["license"] == "Public Domain" and good["attribution required"] == "false"
    # failing now: the last good output is still what is served, the newest run explains why
    failing = rows[FAILING]
    assert failing["feature count"] == "25" and failing["good run id"] == "run-1" and failing["run id"] == "run-2"
    assert failing["problem"] and failing["output"].endswith("/run-1/out.geojson")
    assert failing["last run log"] == store.url(f"runs/addresses/{FAILING}/run-2/log.txt")
    assert rows[NEVER]["problem"] and rows[NEVER]["output"] == "" and rows[NEVER]["feature count"] == ""
    assert rows[HELD]["problem"].startswith("held by the quality gate: feature count fell 90%")
    assert rows[HELD]["feature count"] == "40"  # the served output is still the good one
    assert rows[SKIPPED]["problem"] == "Source says to skip" and rows[NOT_RUN]["run id"] == ""
    assert rows[BROKEN]["problem"] == "Could not download source data" and HOSTILE in rows[BROKEN]["problem detail"]
    assert (
        rows[SHARE_ALIKE]["share-alike"] == "true" and rows[SHARE_ALIKE]["attribution name"] == ODBL["attribution name"]
    )


def test_licenses_group_sources_with_data_by_licence_and_attribution(store: OutputStore, tmp_path: Path) -> None:
    processed_store(store, tmp_path)
    build_results_index(store)
    groups = get_json(store, "licenses.json")["licenses"]
    by_licence = {g["license"]: g for g in groups}
    assert set(by_licence) == {"Public Domain", "ODbL (https://opendatacommons.org/licenses/odbl/)", "CC-BY 4.0"}
    public = by_licence["Public Domain"]
    assert public["attribution"] == "No" and not public["attribution_required"] and not public["share_alike"]
    assert public["sources"] == [["us/ca/good", "https://good.example.org"], ["us/wa/held", ""]]
    odbl = by_licence["ODbL (https://opendatacommons.org/licenses/odbl/)"]
    assert odbl["attribution"] == "NYC Open Data & <Co>" and odbl["share_alike"] and odbl["attribution_required"]
    cc = by_licence["CC-BY 4.0"]  # a bare string says nothing of attribution: required, no name
    assert cc["attribution"] == "Yes" and cc["sources"] == [["de/be/berlin", "https://berlin.example.org"]]
    # entries without data to download (never good, skipped, not run) are in no group
    assert not any(source == "us/tx/never" for g in groups for source, _ in g["sources"])


def test_index_json_lists_collections_maps_and_documents(store: OutputStore, tmp_path: Path) -> None:
    processed_store(store, tmp_path)
    sizes = add_collections(store, tmp_path)
    add_maps(store, tmp_path)
    store.put_bytes("collections/buildings/asia.json", b"{not json")  # a broken record: skipped, reported
    result = build_results_index(store)
    index = get_json(store, "index.json")
    assert index["state"] == {"key": "state.txt", "url": store.url("state.txt")}
    assert index["run_states_url"] == store.url("state.txt") and index["licenses_url"] == store.url("licenses.json")
    assert index["entries"]["total"] == 8 and index["entries"]["good"] == 2 and index["entries"]["failed"] == 2
    assert index["catalog"]["commit"].startswith("local-")
    world = index["collections_by_layer"]["addresses"]["global"]["free"]
    zip_key = "collections/addresses/openaddr-collected-global.zip"
    assert world["zip"] == {"key": zip_key, "url": store.url(zip_key), "size": sizes[zip_key]}
    assert world["parquet"]["key"] == "collections/addresses/global.parquet" and world["missing_entries"] == 1
    assert set(index["collections_by_layer"]) == {"addresses", "parcels"}
    assert index["collections"]["global"]["sa"] == {
        "url": store.url("collections/addresses/openaddr-collected-global-sa.zip"),
        "content_length": sizes["collections/addresses/openaddr-collected-global-sa.zip"],
        "license": "Share-Alike Required",
    }
    assert "europe" not in index["collections"]  # the machine's shape lists address collections only
    assert index["maps"]["usa"] == {"key": "coverage/render-usa.png", "url": store.url("coverage/render-usa.png")}
    assert index["render_world_url"] == store.url("coverage/render-world.png")
    assert index["coverage"]["stats"]["key"] == "coverage/stats.json" and "geojson" not in index["coverage"]
    assert any("collections/buildings/asia.json" in w and "not a collection record" in w for w in result.warnings)


def test_s3_documents_carry_their_content_types(moto_url: str, tmp_path: Path) -> None:
    store = moto_bucket(moto_url, "index-types")
    processed_store(store, tmp_path)
    build_results_index(store)
    for key, expected in {
        "index.html": "text/html; charset=utf-8",
        "state.txt": "text/plain; charset=utf-8",
        "index.json": "application/json",
        "licenses.json": "application/json",
    }.items():
        head = store.client.head_object(Bucket=store.bucket, Key=f"oa/{key}")
        assert head["ContentType"] == expected and head["CacheControl"] == "no-cache", key


def test_page_escapes_contributor_strings_and_links_relative_to_the_store_root(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    processed_store(store, tmp_path)
    add_collections(store, tmp_path)
    add_maps(store, tmp_path)
    build_results_index(store)
    page = (tmp_path / "store" / "index.html").read_text()
    assert HOSTILE not in page and "&lt;img src=x onerror=&quot;window.hacked=1&quot;&gt;&amp;amp;" in page
    hrefs = re.findall(r'(?:href|src)="([^"]*)"', page)
    assert hrefs and all(not h.startswith(("/", "http:", "https:", "file:", "//")) for h in hrefs)
    for key in ("state.txt", "collections/addresses/global-sa.parquet", "coverage/render-europe.png"):
        assert key in hrefs
    assert f"runs/addresses/{GOOD}/run-1/out.geojson" in hrefs
    assert f"runs/addresses/{FAILING}/run-2/log.txt" in hrefs  # where a failing entry's problem is explained
    assert "<h3>parcels</h3>" in page and "No collections have been built yet" not in page
    # the headline counts every entry, the skipped and the not-run ones too
    assert re.search(
        r"<p>[\d,]+ features to download\. Of 8 entries: 2 good, 1 held by the quality gate, 3 failing, 1 not run yet "
        r"and 1 skipped \(their sources say skip: true\); as of ",
        page,
    ), page[:2000]


def test_an_empty_store_gives_an_index_saying_so(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    result = build_results_index(store)
    assert result.rows == [] and result.collections == [] and result.maps == {}
    page = (tmp_path / "store" / "index.html").read_text()
    assert "No collections have been built yet." in page and "No coverage maps have been rendered yet." in page
    assert get_json(store, "index.json")["entries"]["total"] == 0
    assert get_json(store, "licenses.json") == {"licenses": []}
    assert store.get_bytes("state.txt") == ("\t".join(STATE_COLUMNS) + "\r\n").encode()


def test_an_unreadable_pointer_is_that_entrys_problem_only(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    processed_store(store, tmp_path)
    store.put_bytes(layout.latest_key("addresses", SHARE_ALIKE), b'{"run_id": ')  # a truncated pointer
    store.put_bytes(layout.held_key("addresses", HELD), b"[1]\n")  # JSON, but not a pointer
    add_collections(store, tmp_path)
    store.delete("collections/parcels/europe.parquet")  # a record naming a file that is gone
    result = build_results_index(store)
    rows = _state_rows(store)
    assert f"latest/addresses/{SHARE_ALIKE}.json could not be read" in rows[SHARE_ALIKE]["problem"]
    assert (
        f"held/addresses/{HELD}.json could not be read: a JSON object was expected, not list" in (rows[HELD]["problem"])
    )
    assert rows[GOOD]["status"] == "good" and rows[FAILING]["status"] == "failing"
    europe = next(c for c in result.collections if c.layer == "parcels")
    assert [f.format for f in europe.files] == ["zip"]
    assert (
        "collections/parcels/europe.json: its parquet file collections/parcels/europe.parquet is not in the store"
        in (result.warnings)
    )


def test_without_the_runs_scan_entries_are_judged_by_their_pointers(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    processed_store(store, tmp_path)
    build_results_index(store, scan_runs=False)
    rows = _state_rows(store)
    assert rows[FAILING]["status"] == "good" and rows[HELD]["status"] == "held" and rows[NEVER]["status"] == "not run"


def test_asset_materializes_with_counts_and_the_page_url(tmp_path: Path) -> None:
    resources = local_resources(tmp_path / "data", download_url="http://127.0.0.1:8080/download")
    store = LocalStore(tmp_path / "data")
    processed_store(store, tmp_path)
    add_maps(store, tmp_path)
    with dg.instance_for_test() as instance:
        result = dg.materialize([results_index], instance=instance, resources=resources)
    assert result.success
    meta = result.asset_materializations_for_node("results_index")[0].metadata
    assert meta["url"].value == "http://127.0.0.1:8080/download/index.html"
    assert meta["entries"].value == 8 and meta["entries_good"].value == 2 and meta["entries_failing"].value == 1
    assert meta["features"].value == 30 + 20 + 25 + 40 and meta["maps"].value == 3 and meta["collections"].value == 0
    assert "**115 features** to download from 8 entries" in meta["summary"].value
    assert "collections: none built yet" in meta["summary"].value
    assert (tmp_path / "data" / "index.html").is_file()


@pytest.fixture
def serve() -> Iterator[Callable[[Starlette], str]]:
    servers = AppServers()
    yield servers.start
    servers.stop_all()


def page_links(html: str) -> list[str]:
    """Every link and image of the page, but the empty inline icon (`data:,`, so no /favicon.ico is asked for)."""
    return sorted({link for link in re.findall(r'(?:href|src)="([^"]*)"', html) if link != "data:,"})


def test_download_app_serves_the_index_with_types_and_its_links_resolve(
    store: OutputStore, tmp_path: Path, serve: Callable[[Starlette], str]
) -> None:
    processed_store(store, tmp_path)
    add_collections(store, tmp_path)
    add_maps(store, tmp_path)
    build_results_index(store)
    base = serve(create_app(store))

    front = requests.get(base + "/", allow_redirects=False, timeout=10)
    assert front.status_code == 307 and front.headers["Location"] == "/download/index.html"
    page = requests.get(f"{base}/download/index.html", allow_redirects=False, timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'sha256-" in policy and "default-src 'none'" in policy and "unsafe-inline" not in policy
    assert page.headers["Cache-Control"] == "no-cache"
    head = requests.head(f"{base}/download/index.html", allow_redirects=False, timeout=10)
    assert head.status_code == 200 and head.content == b"" and head.headers["Content-Type"].startswith("text/html")
    for key, content_type in (
        ("state.txt", "text/plain; charset=utf-8"),
        ("index.json", "application/json"),
        ("licenses.json", "application/json"),
    ):
        answer = requests.get(f"{base}/download/{key}", timeout=10)
        assert answer.status_code == 200 and answer.headers["Content-Type"] == content_type, key
    assert json.loads(requests.get(f"{base}/download/index.json", timeout=10).content)["entries"]["total"] == 8
    links = page_links(page.text)
    assert len(links) > 20
    for link in links:
        answer = requests.get(f"{base}/download/{link}", timeout=10)
        assert answer.status_code == 200, (link, answer.status_code, answer.text[:200])
    classic = requests.get(f"{base}/download/openaddr-collected-global.zip", timeout=10)
    assert classic.status_code == 200 and zipfile.ZipFile(io.BytesIO(classic.content)).namelist() == ["README.txt"]
    assert requests.get(f"{base}/download/other.txt", timeout=10).status_code == 404
    if isinstance(store, S3Store):  # the page's images come from the S3 endpoint: the policy allows that origin
        assert store.client.meta.endpoint_url in policy
