"""Untrusted source files (issue 8): local data confined to the sources tree, entry names that stay one path
segment, unique partition keys, deeply nested JSON, and specific messages for what a local `data` really is."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from oa_dagster.cli import main
from oa_dagster.errors import DownloadError
from oa_dagster.fetch import fetch_entry
from oa_dagster.platform import store_layout as layout
from oa_dagster.platform.catalog import build_catalog, catalog_from_sources, entry_from_catalog
from oa_dagster.platform.store import LocalStore, get_json
from oa_dagster.process import run_entry
from oa_dagster.sources import LayerEntry, Source, SourceInvalid, load_source
from oa_dagster.sources.local_data import sources_root_for, tree_of
from tests.geofiles import write_source
from tests.platform_helpers import csv_entry, local, materialize_catalog, write_csv
from tests.servers.helpers import fast_options

CSV = "NUM,STREET,X,Y\n1,MAIN ST,-122.1,37.5\n2,ELM ST,-122.2,37.6\n"
SECRET = "TOP-SECRET-LINE\n"
CONFORM = {"format": "csv", "lon": "X", "lat": "Y", "number": "NUM", "street": "STREET"}
# The issue's three values; the second climbs from tmp/sources/us/or/ to tmp's parent, the third is the
# worker's environment with its secrets.
OUTSIDE = ["/etc/passwd", "../../../../etc/passwd", "file:///proc/self/environ"]


def entry(data: str, name: str = "city", **extra: Any) -> dict[str, Any]:
    return {"name": name, "protocol": "http", "data": data, "conform": dict(CONFORM), **extra}


def tree_source(tmp_path: Path, *entries: dict[str, Any], key: str = "us/or/test") -> Path:
    """`tmp/tree/sources/<key>.json` with the given address entries; the tree is `tmp/tree`."""
    return write_source(tmp_path / "tree" / "sources" / f"{key}.json", {"addresses": list(entries)})


def check_json(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, list[dict[str, Any]]]:
    code = main(["check", "--json", *args])
    return code, [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


# ------------------------------------------------------------------------------ 1. data outside the tree


@pytest.mark.parametrize("data", OUTSIDE)
def test_check_refuses_data_outside_the_sources_tree_naming_the_field(
    tmp_path: Path, data: str, capsys: pytest.CaptureFixture
) -> None:
    source = tree_source(tmp_path, entry(data))
    code, [record] = check_json(capsys, str(source))
    assert code == 1 and record["valid"] is False
    assert len(record["errors"]) == 1 and record["errors"][0].startswith("$.layers.addresses[0].data: ")
    assert main(["check", str(source)]) == 1
    out = capsys.readouterr().out
    assert f"{source}: INVALID" in out and "$.layers.addresses[0].data: " in out


def test_refusal_says_why_for_each_kind_of_local_data(tmp_path: Path) -> None:
    source = tree_source(
        tmp_path,
        entry("/etc/passwd", "a"),
        entry("../../../../etc/passwd", "b"),
        entry("file:///proc/self/environ", "c"),
        entry("gopher://example.test/x.csv", "d"),
    )
    with pytest.raises(SourceInvalid) as caught:
        load_source(source)
    why = dict(line.split(": ", 1) for line in caught.value.errors)
    assert why["$.layers.addresses[0].data"].startswith("absolute paths are refused")
    assert why["$.layers.addresses[1].data"].startswith("path '../../../../etc/passwd' leads outside the sources tree")
    assert why["$.layers.addresses[2].data"].startswith("file:// URLs are refused")
    assert why["$.layers.addresses[3].data"].startswith("unsupported URL scheme 'gopher'")
    assert all("--allow-local-files" in why[f"$.layers.addresses[{i}].data"] for i in (0, 2))


@pytest.mark.parametrize("data", [*OUTSIDE, "../../../../../../../../../../../../../../proc/self/environ"])
def test_process_refuses_local_data_outside_the_tree_without_reading_it(
    tmp_path: Path, data: str, capsys: pytest.CaptureFixture
) -> None:
    source = tree_source(tmp_path, entry(data))
    out = tmp_path / "out"
    assert main(["process", str(source), "--layer", "addresses", "--output", str(out), "-q"]) == 1
    captured = capsys.readouterr()
    assert "$.layers.addresses[0].data: " in captured.err
    assert not out.exists()  # refused at load: no state.json, no cache.*, nothing to publish
    for line in (Path("/etc/passwd").read_text().splitlines()[0], "PATH="):
        assert line not in captured.out + captured.err


def test_allow_local_files_lets_the_cli_read_an_absolute_path_or_file_url(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    elsewhere = tmp_path / "elsewhere" / "points.csv"
    elsewhere.parent.mkdir()
    elsewhere.write_text(CSV)
    source = tree_source(tmp_path, entry(str(elsewhere), "absolute"), entry(elsewhere.as_uri(), "url"))
    code, [record] = check_json(capsys, str(source))
    assert code == 1 and len(record["errors"]) == 2
    code, [record] = check_json(capsys, str(source), "--allow-local-files")
    assert code == 0 and record["valid"] is True
    for name in ("absolute", "url"):
        out = tmp_path / f"out-{name}"
        assert (
            main(
                [
                    "process",
                    str(source),
                    "--layer",
                    "addresses",
                    "--name",
                    name,
                    "--output",
                    str(out),
                    "-q",
                    "--no-preview",
                    "--allow-local-files",
                ]
            )
            == 0
        )
        state = json.loads((out / "addresses" / "us/or/test" / name / "state.json").read_text())
        assert state["feature_count"] == 2 and state["files"]["cache"] == "cache.csv"


def test_the_bundled_examples_need_no_flag(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    example = Path(__file__).resolve().parents[1] / "oa_dagster/examples/sources/us/ca/berkeley_example.json"
    assert main(["process", str(example), "--layer", "parcels", "--output", str(tmp_path), "-q", "--no-preview"]) == 0


def test_relative_data_inside_the_tree_but_above_the_source_directory_is_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "tree" / "data").mkdir(parents=True)
    (tmp_path / "tree" / "data" / "points.csv").write_text(CSV)
    source = tree_source(tmp_path, entry("../../../data/points.csv"))
    assert (
        main(["process", str(source), "--layer", "addresses", "--output", str(tmp_path / "out"), "-q", "--no-preview"])
        == 0
    )


def test_a_symlink_inside_the_tree_leading_outside_is_refused_when_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "secret.csv").write_text(SECRET)
    source = tree_source(tmp_path, entry("data.csv"))
    (source.parent / "data.csv").symlink_to(tmp_path / "secret.csv")
    code, [record] = check_json(capsys, str(source))
    assert code == 1
    assert record["errors"] == [
        "$.layers.addresses[0].data: path 'data.csv' leads outside the sources tree "
        "(the directory holding sources/; symbolic links are followed)"
    ]


def test_a_symlink_swapped_in_after_loading_is_refused_when_the_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "secret.csv").write_text(SECRET)
    source = tree_source(tmp_path, entry("data/points.csv"))
    data = source.parent / "data"
    data.mkdir()
    (data / "points.csv").write_text(CSV)
    loaded = load_source(source)  # valid: the file is inside the tree now
    (data / "points.csv").unlink()
    (data / "points.csv").symlink_to(tmp_path / "secret.csv")
    out = tmp_path / "out"
    state = run_entry(loaded.entry("addresses", "city"), out, preview=False)
    assert state.source_problem == "Could not download source data"
    assert "leads outside the sources tree" in (state.problem_detail or "")
    assert not list(out.glob("cache.*"))
    assert all(SECRET.strip() not in p.read_text() for p in out.iterdir() if p.is_file())


def test_a_directory_symlink_swapped_in_is_refused_too(tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "points.csv").write_text(SECRET)
    source = tree_source(tmp_path, entry("data/points.csv"))
    (source.parent / "data").mkdir()
    (source.parent / "data" / "points.csv").write_text(CSV)
    loaded = load_source(source)
    (source.parent / "data" / "points.csv").unlink()
    (source.parent / "data").rmdir()
    (source.parent / "data").symlink_to(tmp_path / "outside")
    with pytest.raises(DownloadError, match="leads outside the sources tree"):
        fetch_entry(loaded.entry("addresses", "city"), tmp_path / "work", fast_options())
    assert not list((tmp_path / "work").glob("cache.*"))


def test_source_catalog_lists_sources_reading_local_files_as_invalid(tmp_path: Path) -> None:
    write_csv(tmp_path / "repo" / "a.csv", 2)
    (tmp_path / "secret.csv").write_text(SECRET)
    sources = tmp_path / "repo" / "sources"
    files = {
        "us/xx/absolute": "/etc/passwd",
        "us/xx/climbs": "../../../../etc/passwd",
        "us/xx/url": "file:///proc/self/environ",
        "us/xx/symlink": "link.csv",
        "us/xx/good": "../../../a.csv",
    }
    for key, data in files.items():
        path = sources / f"{key}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps({"schema": 2, "coverage": {"country": "us"}, "layers": {"addresses": [csv_entry("city", data)]}})
        )
    (sources / "us/xx/link.csv").symlink_to(tmp_path / "secret.csv")
    resources = local(tmp_path, sources)
    with dg.instance_for_test() as instance:
        meta = materialize_catalog(instance, resources).asset_materializations_for_node("source_catalog")[0].metadata
        invalid = meta["invalid"].value
        assert sorted(invalid) == ["us/xx/absolute", "us/xx/climbs", "us/xx/symlink", "us/xx/url"]
        assert all(errors[0].startswith("$.layers.addresses[0].data: ") for errors in invalid.values())
        assert instance.get_dynamic_partitions("addresses") == ["us/xx/good/city"]
    stored = get_json(LocalStore(tmp_path / "data"), layout.CURRENT_CATALOG)
    assert stored["sources"]["us/xx/good"]["sources_root"] == str((tmp_path / "repo").resolve())


def test_the_file_system_root_is_never_the_sources_tree(tmp_path: Path) -> None:
    assert tree_of(Path("/sources")) == Path("/sources")  # a container mounting the checkout's sources/ there
    assert tree_of(tmp_path / "repo" / "sources") == tmp_path / "repo"
    assert sources_root_for(Path("/sources/us/ca/x.json")) == Path("/sources")
    assert sources_root_for(tmp_path / "x.json") == tmp_path


def test_a_source_file_symlinked_from_outside_the_tree_is_not_read_into_the_catalog(tmp_path: Path) -> None:
    (tmp_path / "secret.json").write_text(
        json.dumps({"schema": 2, "coverage": {"country": "us"}, "layers": {"addresses": [csv_entry("city", "x.csv")]}})
    )
    sources = tmp_path / "repo" / "sources"
    (sources / "us").mkdir(parents=True)
    (sources / "us" / "leak.json").symlink_to(tmp_path / "secret.json")
    catalog = build_catalog(sources, "c1", ref="main", origin="test", keep_source_dir=True)
    assert catalog["invalid"] == {"us/leak": ["$: the source file is a symbolic link leading outside the sources tree"]}
    assert catalog["sources"] == {}


def test_an_archive_catalog_refuses_relative_data_it_has_no_tree_for(tmp_path: Path) -> None:
    sources = tmp_path / "checkout" / "sources"
    write_source(sources / "us/xx/relative.json", {"addresses": [entry("data.csv")]})
    write_source(sources / "us/xx/remote.json", {"addresses": [entry("https://x.test/a.csv")]})
    catalog = build_catalog(sources, "c1", ref="main", origin="github:x/y@main", keep_source_dir=False)
    assert list(catalog["invalid"]) == ["us/xx/relative"]
    assert "needs a local sources tree" in catalog["invalid"]["us/xx/relative"][0]
    assert list(catalog["entries"]["addresses"]) == ["us/xx/remote/city"]


def test_a_catalog_stored_before_the_rule_cannot_make_a_run_read_local_files(tmp_path: Path) -> None:
    write_csv(tmp_path / "a.csv", 2)
    sources = tmp_path / "repo" / "sources"
    write_source(sources / "us/xx/ok.json", {"addresses": [entry("https://x.test/a.csv")]})
    catalog = build_catalog(sources, "c1", ref="main", origin="test", keep_source_dir=True)
    stored = catalog["sources"]["us/xx/ok"]
    for data in OUTSIDE:  # what an older catalog could hold: the source JSON as it was, with its directory
        stored["data"]["layers"]["addresses"][0]["data"] = data
        with pytest.raises(SourceInvalid, match=r"\$\.layers\.addresses\[0\]\.data: "):
            entry_from_catalog(catalog, "addresses", "us/xx/ok/city")
    del stored["sources_root"]  # older still: no tree recorded, so the one around the source directory is used
    stored["data"]["layers"]["addresses"][0]["data"] = "../../../../a.csv"
    with pytest.raises(SourceInvalid, match="leads outside the sources tree"):
        entry_from_catalog(catalog, "addresses", "us/xx/ok/city")


# ------------------------------------------------------------------------------------- 2. entry names

BAD_NAMES = {
    "../../../x": "contains a slash",
    "/abs": "contains a slash",
    "a\\b": "contains a slash",
    ".hidden": "starts with a dot",
    "..": "starts with a dot",
    "a\0b": "contains a control character",
    "a\x1bb": "contains a control character",
    "a\nb": "contains a control character",
    "x" * 200: "is too long",
    "é" * 101: "is too long",
}


@pytest.mark.parametrize("name", list(BAD_NAMES), ids=lambda n: repr(n)[:20])
def test_entry_names_that_are_not_one_path_segment_are_schema_errors(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture
) -> None:
    source = tree_source(tmp_path, entry("https://x.test/a.csv", name))
    code, [record] = check_json(capsys, str(source))
    assert code == 1
    assert len(record["errors"]) == 1
    assert record["errors"][0].startswith("$.layers.addresses[0].name: entry name ")
    assert BAD_NAMES[name] in record["errors"][0]
    assert "\0" not in record["errors"][0] and "\x1b" not in record["errors"][0]


@pytest.mark.parametrize("name", ["../../../x", "../../../../" + "x" * 10, "ABSOLUTE"])
def test_process_writes_nothing_outside_its_output_for_a_climbing_name(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture
) -> None:
    # every target stays under tmp_path (the absolute one too), so even a regression writes nowhere else
    name = str(tmp_path / "absolute-target") if name == "ABSOLUTE" else name
    source = tree_source(tmp_path, entry("data.csv", name))
    (source.parent / "data.csv").write_text(CSV)
    out = tmp_path / "tree" / "deep" / "out"
    before = files_under(tmp_path)
    assert main(["process", str(source), "--layer", "addresses", "--output", str(out), "-q"]) == 1
    assert "$.layers.addresses[0].name: entry name " in capsys.readouterr().err
    assert files_under(tmp_path) == before


def test_a_repeated_name_stays_valid_once_made_unique(tmp_path: Path) -> None:
    source = load_source(tree_source(tmp_path, entry("https://x.test/a.csv"), entry("https://x.test/b.csv")))
    assert [e.name for e in source.entries] == ["city", "city-2"]
    long = "n" * 100
    with pytest.raises(SourceInvalid) as caught:
        load_source(
            tree_source(
                tmp_path, entry("https://x.test/a.csv", long), entry("https://x.test/b.csv", long), key="us/or/long"
            )
        )
    assert caught.value.errors == [
        f'$.layers.addresses[1].name: entry name "{long[:56]}... repeats an earlier '
        f'one, and made unique as "{long[:56]}... it is too long (at most 100 '
        "characters and 200 bytes in UTF-8)"
    ]


# ------------------------------------------------------------------------------ 3. shared partition keys


def test_the_issues_colliding_files_give_a_clear_error_and_nothing_vanishes(tmp_path: Path) -> None:
    write_csv(tmp_path / "a.csv", 2)
    sources = tmp_path / "sources"
    for key, name in (("kk2/x", "a/b"), ("kk2/x/a", "b")):
        path = sources / f"{key}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        relative = os.path.relpath(tmp_path / "a.csv", path.parent)
        path.write_text(
            json.dumps(
                {"schema": 2, "coverage": {"country": "us"}, "layers": {"addresses": [csv_entry(name, relative)]}}
            )
        )
    with dg.instance_for_test() as instance:
        meta = (
            materialize_catalog(instance, local(tmp_path, sources))
            .asset_materializations_for_node("source_catalog")[0]
            .metadata
        )
        assert meta["invalid_sources"].value == 1
        assert meta["invalid"].value == {
            "kk2/x": [
                '$.layers.addresses[0].name: entry name "a/b" contains a slash, '
                "but an entry name is a single path segment"
            ]
        }
        assert instance.get_dynamic_partitions("addresses") == ["kk2/x/a/b"]
    stored = get_json(LocalStore(tmp_path / "data"), layout.CURRENT_CATALOG)
    assert stored["entries"]["addresses"]["kk2/x/a/b"]["source"] == "kk2/x/a"


def _source(key: str, name: str) -> Source:
    raw = entry("https://x.test/a.csv", name)
    return Source(
        key, None, {"schema": 2, "layers": {"addresses": [raw]}}, entries=(LayerEntry(key, "addresses", name, 0, raw),)
    )


def test_the_catalog_refuses_both_sources_of_a_shared_partition_key(tmp_path: Path) -> None:
    # Rule 2 keeps loaded sources from meeting; the catalog's guard is checked on sources built directly.
    sources = [_source("kk2/x", "a/b"), _source("kk2/x/a", "b"), _source("kk2/y", "b")]
    catalog = catalog_from_sources(sources, {"kk2/z": ["$: broken"]}, "c1", ref="main", origin="test", tree=None)
    assert catalog["invalid"] == {
        "kk2/z": ["$: broken"],
        "kk2/x": [
            "$.layers.addresses[0].name: partition key 'kk2/x/a/b' is also the key of an entry of source "
            "kk2/x/a, so neither is processed; rename one of them"
        ],
        "kk2/x/a": [
            "$.layers.addresses[0].name: partition key 'kk2/x/a/b' is also the key of an entry of source "
            "kk2/x, so neither is processed; rename one of them"
        ],
    }
    assert list(catalog["entries"]["addresses"]) == ["kk2/y/b"]
    assert list(catalog["sources"]) == ["kk2/y"]


# ------------------------------------------------------------------------------------- 7. nested JSON


def deep_json(levels: int) -> str:
    return '{"schema": 2, "layers": ' + "[" * levels + "]" * levels + "}"


@pytest.mark.parametrize("levels", [100_000, 500, 65])
def test_check_reports_a_deeply_nested_file_and_carries_on(
    tmp_path: Path, levels: int, capsys: pytest.CaptureFixture
) -> None:
    good = [tree_source(tmp_path, entry("https://x.test/a.csv"), key=k) for k in ("us/or/a", "us/or/c")]
    bad = tmp_path / "tree" / "sources" / "us" / "or" / "bad.json"
    bad.write_text(deep_json(levels))
    code, records = check_json(capsys, str(good[0]), str(bad), str(good[1]))
    assert code == 1
    assert [r["valid"] for r in records] == [True, False, True]
    assert records[1]["errors"] == ["$: JSON nested too deeply (more than 64 levels of objects and arrays)"]
    assert main(["process", str(bad), "--layer", "addresses", "--output", str(tmp_path / "out")]) == 1
    assert "JSON nested too deeply" in capsys.readouterr().err


def test_nesting_of_a_real_depth_still_validates(tmp_path: Path) -> None:
    ring = [[-122.0, 37.0], [-121.0, 37.0], [-121.0, 38.0], [-122.0, 37.0]]
    coverage = {"country": "us", "geometry": {"type": "MultiPolygon", "coordinates": [[ring]]}}
    path = write_source(
        tmp_path / "sources/us/or/poly.json", {"addresses": [entry("https://x.test/a.csv")]}, coverage=coverage
    )
    assert load_source(path).key == "us/or/poly"


def test_the_catalog_loads_the_other_sources_next_to_a_deeply_nested_one(tmp_path: Path) -> None:
    write_csv(tmp_path / "a.csv", 2)
    sources = tmp_path / "sources"
    path = sources / "us/xx/good.json"
    path.parent.mkdir(parents=True)
    path.write_text(
        json.dumps(
            {"schema": 2, "coverage": {"country": "us"}, "layers": {"addresses": [csv_entry("city", "../../../a.csv")]}}
        )
    )
    (sources / "us/xx/deep.json").write_text(deep_json(100_000))
    with dg.instance_for_test() as instance:
        meta = (
            materialize_catalog(instance, local(tmp_path, sources))
            .asset_materializations_for_node("source_catalog")[0]
            .metadata
        )
        assert meta["invalid"].value == {
            "us/xx/deep": ["$: JSON nested too deeply (more than 64 levels of objects and arrays)"]
        }
        assert instance.get_dynamic_partitions("addresses") == ["us/xx/good/city"]


# ------------------------------------------------------------------------ 9. what a local `data` really is


def test_dev_zero_as_data_is_not_a_regular_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = tree_source(tmp_path, entry("/dev/zero"))
    out = tmp_path / "out"
    assert (
        main(["process", str(source), "--layer", "addresses", "--output", str(out), "-q", "--allow-local-files"]) == 1
    )
    state = json.loads((out / "addresses" / "us/or/test/city" / "state.json").read_text())
    assert state["problem_detail"] == "local path /dev/zero is a character device, not a regular file"
    assert not list((out / "addresses" / "us/or/test/city").glob("cache.*"))


def test_a_directory_as_data_says_it_is_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = tree_source(tmp_path, entry("folder"))
    (source.parent / "folder").mkdir()
    out = tmp_path / "out"
    assert main(["process", str(source), "--layer", "addresses", "--output", str(out), "-q"]) == 1
    state = json.loads((out / "addresses" / "us/or/test/city" / "state.json").read_text())
    assert state["problem_detail"] == f"local path {(source.parent / 'folder').resolve()} is a directory, not a file"


def test_a_named_pipe_as_data_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    source = tree_source(tmp_path, entry("pipe.csv"))
    os.mkfifo(source.parent / "pipe.csv")
    with pytest.raises(DownloadError, match="is a named pipe, not a regular file"):
        fetch_entry(load_source(source).entry("addresses", "city"), tmp_path / "work", fast_options())


def test_a_missing_local_file_still_says_it_does_not_exist(tmp_path: Path) -> None:
    source = tree_source(tmp_path, entry("nope.csv"))
    with pytest.raises(DownloadError, match="nope.csv does not exist"):
        fetch_entry(load_source(source).entry("addresses", "city"), tmp_path / "work", fast_options())


def test_local_files_are_held_to_the_download_size_cap(tmp_path: Path) -> None:
    source = tree_source(tmp_path, entry("data.csv"))
    (source.parent / "data.csv").write_text(CSV)
    with pytest.raises(
        DownloadError, match=f"download size cap: data.csv: the file has {len(CSV)} bytes, over the cap of 10 bytes"
    ):
        fetch_entry(
            load_source(source).entry("addresses", "city"), tmp_path / "work", fast_options(max_download_bytes=10)
        )
    assert not list((tmp_path / "work").iterdir())
