"""`oa-dagster check` and `oa-dagster process` through the command line, per the CLI contract."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from oa_dagster.cli import build_parser, main
from tests.geofiles import read_features, write_source
from tests.platform_helpers import city_sources, write_csv

EXAMPLES = Path(__file__).resolve().parents[1] / "oa_dagster" / "examples"
EXAMPLE = EXAMPLES / "sources" / "us" / "ca" / "berkeley_example.json"
STATE_KEYS = [
    "source",
    "layer",
    "name",
    "skipped",
    "feature_count",
    "features_without_geometry",
    "fingerprint",
    "source_problem",
    "problem_detail",
    "tests_passed",
    "cache_seconds",
    "process_seconds",
    "files",
]


def process(capsys: pytest.CaptureFixture, source: Path, layer: str, out: Path, *extra: str) -> tuple[int, dict]:
    code = main(["process", str(source), "--layer", layer, "--output", str(out), "-q", *extra])
    capsys.readouterr()
    states = list(out.glob(f"{layer}/**/state.json"))
    return code, json.loads(states[0].read_text()) if states else {}


def csv_source(
    tmp_path: Path, conform: dict, csv: str = "NUM,STREET,X,Y\n1,MAIN ST,-122.1,37.5\n", **entry: object
) -> Path:
    source = tmp_path / "sources" / "us" / "or" / "test.json"
    source.parent.mkdir(parents=True, exist_ok=True)
    (source.parent / "data.csv").write_text(csv)
    merged = {"format": "csv", "lon": "X", "lat": "Y", **conform}
    layer = {
        "name": "city",
        "protocol": "http",
        "data": "data.csv",
        "conform": {k: v for k, v in merged.items() if v is not None},
        **entry,
    }
    return write_source(source, {"addresses": [layer]})


# ------------------------------------------------------------------------------------------------ check


def test_check_json_reports_a_valid_source_and_its_passing_acceptance_tests(capsys: pytest.CaptureFixture) -> None:
    assert main(["check", str(EXAMPLE), "--json"]) == 0
    record = json.loads(capsys.readouterr().out.strip())
    assert record["source"] == str(EXAMPLE) and record["valid"] is True and record["errors"] == []
    assert [(t["layer"], t["name"], t["passed"]) for t in record["tests"]] == [("addresses", "city", True)] * 2
    assert record["tests"][0]["actual"] == record["tests"][0]["expected"]


def test_check_names_the_json_path_of_each_schema_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = write_source(
        tmp_path / "bad.json", {"addresses": [{"name": "city", "protocol": "gopher", "data": "x", "colour": "red"}]}
    )
    missing = tmp_path / "nope.json"
    assert main(["check", str(bad), str(missing), "--json"]) == 1
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["valid"] for r in records] == [False, False]
    assert any(e.startswith("$.layers.addresses[0]") for e in records[0]["errors"])
    assert records[0]["tests"] == [] and "nope.json" in records[1]["errors"][0]


def test_check_shows_expected_and_actual_of_a_failing_case(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    test = {
        "description": "numbers",
        "acceptance-tests": [
            {
                "description": "wrong on purpose",
                "inputs": {"NUM": "12", "STREET": "Main St"},
                "expected": {"number": "13", "street": "Main St"},
            }
        ],
    }
    source = csv_source(tmp_path, {"number": "NUM", "street": "STREET"}, test=test)
    assert main(["check", str(source), "--json"]) == 1
    case = json.loads(capsys.readouterr().out)["tests"][0]
    assert case["passed"] is False and case["error"] is None
    assert case["expected"] == {"number": "13", "street": "Main St"}
    assert case["actual"] == {"number": "12", "street": "Main St"}


def test_v1_source_is_checked_and_processed_as_its_primary_entry(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "data.csv").write_text("N,S,X,Y\n7,ELM ST,-122.1,37.5\n")
    v1 = tmp_path / "old.json"
    v1.write_text(
        json.dumps(
            {
                "coverage": {"country": "us", "US Census": {"geoid": "06", "state": "California"}},
                "protocol": "http",
                "data": "data.csv",
                "conform": {"format": "csv", "number": "N", "street": "S", "lon": "X", "lat": "Y"},
            }
        )
    )
    assert main(["check", str(v1), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["valid"] is True
    code, state = process(capsys, v1, "addresses", tmp_path / "out")
    assert (code, state["name"], state["feature_count"]) == (0, "primary", 1)


# ---------------------------------------------------------------------------------------------- process


@pytest.mark.parametrize(
    ("layer", "name", "count", "geometry"),
    [
        ("addresses", "city", None, "Point"),
        ("parcels", "county", 256, "Polygon"),
        ("buildings", "city", 256, "Polygon"),
        ("centerlines", "city", 9, "LineString"),
    ],
)
def test_process_writes_every_file_of_the_contract_for_each_example_layer(
    tmp_path: Path, capsys: pytest.CaptureFixture, layer: str, name: str, count: int | None, geometry: str
) -> None:
    extra = ["--name", name] if layer == "addresses" else []
    code, state = process(capsys, EXAMPLE, layer, tmp_path, *extra)
    assert code == 0, state
    assert list(state)[: len(STATE_KEYS)] == STATE_KEYS
    assert (state["source"], state["layer"], state["name"]) == ("us/ca/berkeley_example", layer, name)
    assert state["source_problem"] is None and state["skipped"] is False
    files = state["files"]
    assert files["output"] == "out.geojson" and files["sample"] == "sample.json" and files["log"] == "log.txt"
    assert files["preview"] == "preview.png" and files["cache"].startswith("cache.")
    folder = tmp_path / layer / "us/ca/berkeley_example" / name
    assert all((folder / f).exists() for f in files.values())
    assert (folder / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    features = read_features(folder / "out.geojson")
    assert len(features) == state["feature_count"] and (count is None or len(features) == count)
    assert {f["geometry"]["type"] for f in features} == {geometry}
    assert len(state["fingerprint"]) == 32
    sample = json.loads((folder / "sample.json").read_text())
    assert len(sample) > 1 and all(len(row) == len(sample[0]) for row in sample)


def test_process_example_centerlines_apply_maps_and_mph_to_kph(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    process(capsys, EXAMPLE, "centerlines", tmp_path)
    props = {
        f["properties"]["name"]: f["properties"]
        for f in read_features(tmp_path / "centerlines/us/ca/berkeley_example/city/out.geojson")
    }
    assert (props["SHATTUCK AVE"]["oneway"], props["SHATTUCK AVE"]["speed"]) == ("yes", "56")
    assert (props["CEDAR ST"]["oneway"], props["CEDAR ST"]["speed"], props["CEDAR ST"]["classification"]) == (
        "no",
        "40",
        "residential",
    )


def test_process_reports_progress_and_the_result_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["process", str(EXAMPLE), "--layer", "parcels", "--output", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "conform: 256 rows read" in captured.err
    assert (
        captured.out.strip()
        == f"us/ca/berkeley_example/county (parcels): 256 features in {tmp_path}/parcels/us/ca/berkeley_example/county"
    )


def test_process_skipped_entry_exits_zero_with_a_skipped_state(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, state = process(capsys, EXAMPLE, "addresses", tmp_path, "--name", "legacy")
    assert code == 0 and state["skipped"] is True and state["source_problem"] == "Source says to skip"
    assert state["feature_count"] is None and state["files"]["output"] is None


def test_process_unknown_name_is_a_usage_error_listing_the_choices(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["process", str(EXAMPLE), "--layer", "addresses", "--name", "town", "--output", str(tmp_path)]) == 2
    assert "city, legacy" in capsys.readouterr().err
    assert main(["process", str(EXAMPLE), "--layer", "addresses", "--output", str(tmp_path)]) == 2
    assert "--name" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("conform", "csv", "problem", "detail"),
    [
        (
            {"number": {"function": "regexp", "field": "HOUSE", "pattern": "^([0-9]+)"}, "street": "STREET"},
            None,
            "Could not conform source data",
            "HOUSE",
        ),
        ({"number": "NUM", "street": "STREET", "format": None}, None, "Unknown source conform format", "missing"),
        ({"number": "NUM", "street": "STREET"}, "NUM,STREET,X,Y\n", "Found no features in source data", "no rows"),
    ],
)
def test_process_broken_inputs_give_their_problem_string_and_exit_one(
    tmp_path: Path, capsys: pytest.CaptureFixture, conform: dict, csv: str | None, problem: str, detail: str
) -> None:
    source = csv_source(tmp_path, conform, **({"csv": csv} if csv else {}))
    code, state = process(capsys, source, "addresses", tmp_path / "out")
    assert code == 1
    assert state["source_problem"] == problem and detail in state["problem_detail"]
    folder = tmp_path / "out/addresses/us/or/test/city"
    assert state["files"]["output"] is None and not (folder / "out.geojson").exists()
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith("out")) == []


def test_process_unreadable_archive_is_a_download_problem(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "data.zip").write_bytes(b"PK\x03\x04 this is not really a zip file")
    layer = {
        "name": "city",
        "protocol": "http",
        "data": "data.zip",
        "compression": "zip",
        "conform": {"format": "shapefile", "number": "N", "street": "S"},
    }
    source = write_source(tmp_path / "s.json", {"addresses": [layer]})
    code, state = process(capsys, source, "addresses", tmp_path / "out")
    assert code == 1 and state["source_problem"] in ("Could not download source data", "Could not conform source data")
    assert "zip" in state["problem_detail"].lower()


def test_process_missing_conform_and_failing_acceptance_test_stop_before_download(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    no_conform = write_source(
        tmp_path / "a.json",
        {"addresses": [{"name": "city", "protocol": "http", "data": "https://127.0.0.1:9/never.csv"}]},
    )
    code, state = process(capsys, no_conform, "addresses", tmp_path / "a")
    assert (code, state["source_problem"], state["fingerprint"]) == (1, "Source is missing a conform object", None)
    test = {
        "description": "t",
        "acceptance-tests": [{"description": "c", "inputs": {"NUM": "1", "STREET": "A"}, "expected": {"number": "2"}}],
    }
    source = csv_source(tmp_path, {"number": "NUM", "street": "STREET"}, test=test)
    code, state = process(capsys, source, "addresses", tmp_path / "b")
    assert (code, state["source_problem"], state["tests_passed"]) == (1, "An acceptance test failed", False)
    assert "expected '2', got '1'" in state["problem_detail"] and state["fingerprint"] is None


def test_process_without_coverage_still_writes_output_and_records_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    source = csv_source(tmp_path, {"number": "NUM", "street": "STREET"})
    data = json.loads(source.read_text())
    data["coverage"] = {"country": "us"}
    source.write_text(json.dumps(data))
    code, state = process(capsys, source, "addresses", tmp_path / "out")
    assert code == 0 and state["source_problem"] == "Missing or incomplete coverage"
    assert state["feature_count"] == 1 and state["files"]["output"] == "out.geojson"


def test_console_script_runs_process_end_to_end(tmp_path: Path) -> None:
    source_dir = tmp_path / "src"
    shutil.copytree(EXAMPLES, source_dir)
    with zipfile.ZipFile(source_dir / "data" / "example_parcels.zip") as zf:
        assert any(n.endswith("Parcels.shp") for n in zf.namelist())
    script = Path(sys.executable).with_name("oa-dagster")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "oa_dagster.cli"]
    done = subprocess.run(
        [
            *command,
            "process",
            str(source_dir / "sources/us/ca/berkeley_example.json"),
            "--layer",
            "parcels",
            "--output",
            str(tmp_path / "out"),
            "--no-preview",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "256 features" in done.stdout
    state = json.loads((tmp_path / "out/parcels/us/ca/berkeley_example/county/state.json").read_text())
    assert state["files"]["preview"] is None and state["feature_count"] == 256


def test_process_of_a_local_file_never_imports_an_http_client(tmp_path: Path) -> None:
    """Start-up is part of every run's time: a local file's run leaves requests and urllib3 (a tenth of a second
    of imports) unloaded, as it does the GDAL and shapely modules a CSV does not need."""
    source = csv_source(tmp_path, {"number": "NUM", "street": "STREET"})
    program = (
        "import sys\n"
        "from oa_dagster.cli import main\n"
        f"code = main(['process', {str(source)!r}, '--layer', 'addresses', '--output', {str(tmp_path / 'out')!r}, "
        "'-q', '--no-preview'])\n"
        "print(code, sorted(m for m in ('requests', 'urllib3', 'pyogrio', 'shapely') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "0 []"


def test_process_logs_to_the_stderr_of_each_call(tmp_path: Path) -> None:
    """`main()` run twice in one process (tests, embedding) logs to the stderr of the second call, not the first's."""
    import contextlib
    import io

    source = csv_source(tmp_path, {"number": "NUM", "street": "STREET"})
    streams = [io.StringIO(), io.StringIO()]
    for n, stream in enumerate(streams):
        with contextlib.redirect_stderr(stream), contextlib.redirect_stdout(io.StringIO()):
            assert (
                main(
                    [
                        "process",
                        str(source),
                        "--layer",
                        "addresses",
                        "--output",
                        str(tmp_path / f"out{n}"),
                        "--no-preview",
                    ]
                )
                == 0
            )
    assert [s.getvalue().count("INFO oa-dagster") for s in streams] == [1, 1]


def test_process_puts_each_source_in_its_own_folder_as_download_does(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Three sources with an entry named `city` processed into one folder: three folders, each state.json its own
    (the layout was `<layer>/<name>/`, so each run overwrote the previous one)."""
    rows = {"us/ca/a": 1, "us/ca/b": 2, "us/or/c": 3}
    for key, count in rows.items():
        write_csv(tmp_path / f"{key.replace('/', '_')}.csv", count)
    sources = city_sources(tmp_path, {key: f"{key.replace('/', '_')}.csv" for key in rows})
    for key, count in rows.items():
        command = ["process", str(sources / f"{key}.json"), "--layer", "addresses", "--output", str(tmp_path / "out")]
        assert main(command) == 0
        assert f"{count} features in {tmp_path / 'out' / 'addresses' / key / 'city'}" in capsys.readouterr().out
    for key, count in rows.items():
        state = json.loads((tmp_path / "out" / "addresses" / key / "city" / "state.json").read_text())
        assert (state["source"], state["name"], state["feature_count"]) == (key, "city", count)


def test_process_refuses_a_folder_holding_another_entrys_output(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = csv_source(tmp_path, {"number": "NUM", "street": "STREET"})
    folder = tmp_path / "out" / "addresses" / "us/or/test" / "city"
    folder.mkdir(parents=True)
    (folder / "out.geojson").write_text("theirs\n")
    (folder / "state.json").write_text(json.dumps({"source": "us/ca/other", "layer": "addresses", "name": "city"}))
    assert main(["process", str(source), "--layer", "addresses", "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"error: {folder} holds the output of us/ca/other/city addresses, not of us/or/test/city addresses" in err
    assert (folder / "out.geojson").read_text() == "theirs\n"
    (folder / "state.json").write_text(json.dumps({"source": "us/or/test", "layer": "addresses", "name": "city"}))
    assert main(["process", str(source), "--layer", "addresses", "--output", str(tmp_path / "out")]) == 0  # its own
    assert (folder / "out.geojson").read_text() != "theirs\n"


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every command and subcommand of `parser`, as its argument path and its parser."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += [((*path, name), sub), *_commands(sub, (*path, name))]
    return found


def test_every_command_says_what_it_does_and_its_defaults(
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve --help` had no description and did not show its default host and port."""
    monkeypatch.setenv("COLUMNS", "1000")  # no wrapping: a default is on one line
    commands = _commands(build_parser())
    assert {"check", "process", "quickstart", "ui", "download", "serve", "cleanup", "hooks"} <= {
        path[0] for path, _ in commands
    }
    for path, parser in commands:
        with pytest.raises(SystemExit) as exit_info:
            main([*path, "--help"])
        shown = capsys.readouterr().out
        assert exit_info.value.code == 0
        assert parser.description and parser.description.split()[0] in shown, path
        for action in parser._actions:
            if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
                assert f"(default {action.default}" in shown, (path, action.option_strings)
