"""Issue 8, the conform engine: untrusted patterns, coordinates and files end in a specific source problem.

Each case runs a small source through `oa-dagster process` (in process, or as a subprocess where what Python
prints to stderr by itself matters) or through `run_entry` when a limit is lowered. Bad input must never
hang, never publish invalid JSON or invisible places, and never surface as "unexpected <Exception>" or a
traceback on stderr.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from oa_dagster.cli import main
from oa_dagster.conform.limits import ConformLimits
from oa_dagster.conform.re_compat import compile_for_ascii, compile_like_re
from oa_dagster.process import RunState, run_entry
from oa_dagster.sources import load_source
from tests.geofiles import feature_collection, write_layer, write_source, zip_folder
from tests.sources_snapshot import require_snapshot

CONFORM = "Could not conform source data"


def _source(tmp_path: Path, data: str, conform: dict[str, Any], layer: str = "addresses", **entry: Any) -> Path:
    """A one-entry source `tmp_path/src/us/or/test.json` reading `data` from its own directory."""
    return write_source(
        tmp_path / "src" / "us" / "or" / "test.json",
        {layer: [{"name": "city", "protocol": "http", "data": data, "conform": conform, **entry}]},
    )


def _data_file(tmp_path: Path, name: str) -> Path:
    path = tmp_path / "src" / "us" / "or" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _csv(tmp_path: Path, text: str, conform: dict[str, Any] | None = None) -> Path:
    _data_file(tmp_path, "data.csv").write_text(text)
    return _source(
        tmp_path,
        "data.csv",
        {"format": "csv", "lon": "X", "lat": "Y", "number": "NUM", "street": "STREET", **(conform or {})},
    )


def _process(
    tmp_path: Path,
    source: Path,
    capsys: pytest.CaptureFixture,
    layer: str = "addresses",
) -> tuple[int, dict[str, Any], str]:
    """Exit code, state.json and stderr of `oa-dagster process`; stderr never holds a traceback."""
    out = tmp_path / "out"
    code = main(["process", str(source), "--layer", layer, "--output", str(out), "--no-preview", "-q"])
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr and "unexpected" not in stderr, stderr
    return code, json.loads((out / layer / "test/city" / "state.json").read_text()), stderr


def _run(tmp_path: Path, source: Path, limits: ConformLimits, layer: str = "addresses") -> RunState:
    entry = load_source(source).entry(layer, "city")
    return run_entry(entry, tmp_path / "out", preview=False, conform_limits=limits)


def _strict_json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line parsed as strict JSON: `Infinity`, `NaN` (and bare `inf`) are refused."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"not JSON: {constant}")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


# ------------------------------------------------------------------------------- 4: patterns are bounded


@pytest.mark.timeout(120)  # the pattern backtracks for hours under plain `re`
def test_catastrophic_source_pattern_fails_the_entry_naming_the_pattern(tmp_path: Path) -> None:
    source = _csv(
        tmp_path,
        "NUM,STREET,X,Y\n" + "a" * 40 + "!,MAIN ST,-122.1,45.5\n1,OAK ST,-122.2,45.6\n",
        {"number": {"function": "regexp", "field": "NUM", "pattern": "^(a|aa)+$"}},
    )
    state = _run(tmp_path, source, ConformLimits(regex_value_seconds=0.05))
    assert state.source_problem == CONFORM and not state.has_output
    assert "conform.number: regexp pattern '^(a|aa)+$' took more than 0.05 s" in state.problem_detail
    assert state.problem_detail.endswith(
        f"on one value of 41 characters, '{'a' * 40}'… (ConformLimits.regex_value_seconds)"
    )
    assert not (tmp_path / "out" / "out.geojson").exists()


@pytest.mark.timeout(120)
def test_the_issue_pattern_on_33_characters_no_longer_hangs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = _csv(
        tmp_path,
        "NUM,STREET,X,Y\n" + "a" * 33 + "!,MAIN ST,-122.1,45.5\naaa,OAK ST,-122.2,45.6\n",
        {"number": {"function": "regexp", "field": "NUM", "pattern": "^(a+)+$"}},
    )
    code, state, _ = _process(tmp_path, source, capsys)
    assert code == 0 and state["feature_count"] == 2


@pytest.mark.timeout(120)
def test_many_slow_values_use_up_the_patterns_budget_for_the_entry(tmp_path: Path) -> None:
    rows = "".join(f"{'a' * 27}!{i},MAIN ST,-122.1,45.5\n" for i in range(40))  # ~0.1 s each, all distinct
    source = _csv(
        tmp_path, "NUM,STREET,X,Y\n" + rows, {"number": {"function": "regexp", "field": "NUM", "pattern": "^(a|aa)+$"}}
    )
    state = _run(tmp_path, source, ConformLimits(regex_value_seconds=30, regex_pattern_seconds=0.3))
    assert state.source_problem == CONFORM
    assert state.problem_detail == (
        "conform.number: regexp pattern '^(a|aa)+$' used up its 0.3 s over the "
        "entry's values (ConformLimits.regex_pattern_seconds)"
    )


@pytest.mark.timeout(120)  # plain `re` needs minutes on one such value (quadratic in the run of spaces)
def test_a_huge_value_through_a_built_in_grammar_is_bounded_too(tmp_path: Path) -> None:
    source = _csv(
        tmp_path,
        "NUM,STREET,X,Y\n1," + " " * 50_000 + "x,-122.1,45.5\n",
        {"street": {"function": "postfixed_street", "field": "STREET", "may_contain_units": True}},
    )
    state = _run(tmp_path, source, ConformLimits(regex_value_seconds=0.05))
    assert state.source_problem == CONFORM
    assert state.problem_detail.startswith(
        "conform.street: postfixed_street took more than 0.05 s of CPU time on one value of 50,001 characters"
    )


AWKWARD = [
    "12½ MAIN ST",
    "3² AVE",
    "Jose\u0301 Marti\u0301",
    "KURTULUŞ CADDESİ 12",
    "ılık sokak",
    "\x1c12\x1f B",
    "x\u0345y",
    "①②",
    "",
    "\n12 A\n",
    "UNIT 5 # 3",
    "a{e<=1}",
    "[:alpha:]",
    "Rua São João 1",
    "ſ K",
]
PATTERNS = [
    r"^(\w+)",
    r"(\w+)$",
    r"\b(\w)\w*\b",
    r"^\s*(\d+)\s+(.*)$",
    r"(\S+)\s+(\S+)",
    r"\B(.)",
    r"[\w-]+",
    r"([^\W\d]+)",
    r"([\W\S]+)",
    r"(?i)(UNIT|APT)\s*(\d+)",
    r"(?i)[a-z]+",
    r"(?i)([^i]+)",
    r"(?i)İ|k",
    r"([[:alpha:]]+)",
    r"a{e<=1}",
    r"(?x) (\w+) \s # comment [",
    r"(?#[)(\w+)",
    r"\N{LATIN SMALL LETTER I}",
    r"(?:ab){1,2}|x{,2}",
    r"^$|^\W*$",
]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_timed_patterns_match_exactly_what_python_re_matches(pattern: str) -> None:
    plain, timed = re.compile(pattern), compile_like_re(pattern)
    for value in AWKWARD:
        expected, found = plain.search(value), timed.search(value, timeout=5)
        assert (found and (found.span(), found.groups())) == (expected and (expected.span(), expected.groups()))
        assert timed.sub("<\\g<0>>", value, timeout=5) == plain.sub("<\\g<0>>", value)


ASCII_VALUES = ["".join(map(chr, range(128))), "\x1c12\x1f B", "a_b c-d", "__", " x ", "12 MAIN ST UNIT 3", ""]


@pytest.mark.parametrize("pattern", [p for p in PATTERNS if "(?i" not in p])
def test_the_faster_ascii_twin_matches_python_re_on_ascii_values(pattern: str) -> None:
    plain, timed = re.compile(pattern), compile_for_ascii(pattern)
    assert timed is not None
    for value in ASCII_VALUES:
        expected, found = plain.search(value), timed.search(value, timeout=5)
        assert (found and (found.span(), found.groups())) == (expected and (expected.span(), expected.groups()))
        assert timed.sub("<\\g<0>>", value, timeout=5) == plain.sub("<\\g<0>>", value)


def test_case_insensitive_patterns_have_no_ascii_twin() -> None:
    assert compile_for_ascii(r"(?i)İ") is None and compile_for_ascii("a(?i:b)") is None


def _snapshot_patterns(sources: Path) -> list[str]:
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("function") == "regexp" and isinstance(node.get("pattern"), str):
                found.add(node["pattern"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in sources.rglob("*.json"):
        walk(json.loads(path.read_text(encoding="utf-8")))
    return sorted(found)


@pytest.mark.sweep
def test_every_real_sources_pattern_matches_as_python_re_does_on_awkward_values() -> None:
    patterns = _snapshot_patterns(require_snapshot())
    assert len(patterns) > 300
    for pattern in patterns:
        plain, timed, ascii_twin = re.compile(pattern), compile_like_re(pattern), compile_for_ascii(pattern)
        for value in [*AWKWARD, *ASCII_VALUES, "12½ N MAIN ST UNIT 3, SPRINGFIELD, IL 62701", "1204 CEDAR ST APT A"]:
            expected = plain.search(value)
            expected = expected and (expected.span(), expected.groups())
            found = timed.search(value, timeout=5)
            assert (found and (found.span(), found.groups())) == expected, (pattern, value)
            if ascii_twin is not None and value.isascii():
                found = ascii_twin.search(value, timeout=5)
                assert (found and (found.span(), found.groups())) == expected, (pattern, value)


def test_regexp_on_unicode_words_gives_python_re_results_through_the_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # nested quantifiers: this pattern always takes the timed path, whatever the value's length
    source = _csv(
        tmp_path,
        "NUM,STREET,X,Y\n12½ MAIN,a,-122.1,45.5\nJose\u0301 3,b,-122.2,45.6\n",
        {"number": {"function": "regexp", "field": "NUM", "pattern": r"^((?:\w+)+)"}},
    )
    code, _, _ = _process(tmp_path, source, capsys)
    numbers = [f["properties"]["number"] for f in _strict_json_lines(tmp_path / "out/addresses/test/city/out.geojson")]
    assert code == 0 and numbers == ["12½", "Jose"]


# -------------------------------------------------------------------------------- 7: deep GeoJSON

DEEP = "[" * 50_000 + "]" * 50_000


def _geojson(tmp_path: Path, text: str, **conform: Any) -> Path:
    _data_file(tmp_path, "data.geojson").write_text(text)
    return _source(tmp_path, "data.geojson", {"format": "geojson", "number": "NUM", "street": "NUM", **conform})


def _feature(properties: str, lon: float = -122.1) -> str:
    return f'{{"type":"Feature","properties":{properties},"geometry":{{"type":"Point","coordinates":[{lon},45.5]}}}}'


@pytest.mark.parametrize(
    ("text", "conform", "detail"),
    [
        (
            '{"type":"FeatureCollection","features":[' + _feature('{"NUM":"1","x":' + DEEP + "}") + "]}",
            {},
            "invalid GeoJSON: feature 1 nests objects and arrays deeper than 200 levels (at byte 284)",
        ),
        (
            "\n".join([_feature('{"NUM":"1"}')] * 3 + [_feature('{"NUM":' + DEEP + "}")]) + "\n",
            {},
            "invalid GeoJSON: feature 4 nests objects and arrays deeper than 200 levels (at byte ",
        ),
        (
            _feature('{"NUM":' + DEEP + "}") + "\n",
            {"encoding": "latin-1"},
            "invalid GeoJSON: the value at character 31 nests objects and arrays too deeply to be read",
        ),
    ],
    ids=["feature-collection", "geojson-lines", "latin-1-reader"],
)
def test_geojson_properties_nested_50k_deep_are_a_conform_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture, text: str, conform: dict, detail: str
) -> None:
    code, state, _ = _process(tmp_path, _geojson(tmp_path, text, **conform), capsys)
    assert code == 1 and state["source_problem"] == CONFORM
    assert state["problem_detail"].startswith(detail), state["problem_detail"]


def test_a_deep_feature_far_into_a_large_file_is_named_by_its_number(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    features = [_feature(f'{{"NUM":"{i}"}}') for i in range(60_000)] + [_feature('{"NUM":' + DEEP + "}")]
    text = '{"type":"FeatureCollection","features":[' + ",".join(features) + "]}"
    code, state, _ = _process(tmp_path, _geojson(tmp_path, text), capsys)
    assert code == 1 and state["problem_detail"].startswith(
        "invalid GeoJSON: feature 60001 nests objects and arrays deeper than 200 levels"
    )


# ------------------------------------------------------------------------ 9: ordinary bad input, no surprises


@pytest.mark.parametrize(
    ("properties", "kind"), [('["NUM","1"]', "an array"), ('"NUM"', "a string"), ("12", "a number")]
)
def test_geojson_properties_that_are_not_an_object_are_refused_naming_the_feature(
    tmp_path: Path, capsys: pytest.CaptureFixture, properties: str, kind: str
) -> None:
    text = '{"type":"FeatureCollection","features":[' + _feature('{"NUM":"1"}') + "," + _feature(properties) + "]}"
    code, state, _ = _process(tmp_path, _geojson(tmp_path, text), capsys)
    assert code == 1 and state["source_problem"] == CONFORM
    assert state["problem_detail"] == f"invalid GeoJSON: feature 2: properties is {kind}, expected an object"


def test_geojson_properties_null_or_empty_still_mean_no_properties(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    text = (
        '{"type":"FeatureCollection","features":['
        + ",".join([_feature('{"NUM":"1"}'), _feature("null"), _feature("[]")])
        + "]}"
    )
    code, state, _ = _process(tmp_path, _geojson(tmp_path, text), capsys)
    assert code == 0 and state["feature_count"] == 3


def test_shapefile_without_its_dbf_is_refused_naming_the_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "shp"
    folder.mkdir()
    write_layer(
        folder / "points.shp", [{"NUM": "1", "STREET": "MAIN ST"}], ["POINT (-122.1 45.5)"], driver="ESRI Shapefile"
    )
    (folder / "points.dbf").unlink()
    zip_folder(folder, _data_file(tmp_path, "points.zip"))
    source = _source(
        tmp_path, "points.zip", {"format": "shapefile", "number": "NUM", "street": "STREET"}, compression="zip"
    )
    code, state, _ = _process(tmp_path, source, capsys)
    assert code == 1 and state["source_problem"] == CONFORM
    assert state["problem_detail"] == (
        "shapefile points.shp has no points.dbf next to it: the download lacks its attribute table"
    )


def test_a_layer_with_geometry_only_keeps_every_row(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_layer(
        _data_file(tmp_path, "points.gpkg"), [{}, {}], ["POINT (-122.1 45.5)", "POINT (-122.2 45.6)"], driver="GPKG"
    )
    source = _source(
        tmp_path,
        "points.gpkg",
        {
            "format": "gpkg",
            "number": {"function": "constant", "value": "1"},
            "street": {"function": "constant", "value": "MAIN ST"},
        },
    )
    code, state, _ = _process(tmp_path, source, capsys)
    assert code == 0 and state["feature_count"] == 2


def _oa_dagster(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("oa-dagster")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "oa_dagster.cli"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("split_character", [False, True])
def test_a_bad_byte_after_blocks_of_ascii_is_recoded_or_named_at_its_exact_offset(
    tmp_path: Path, split_character: bool
) -> None:
    # whole ASCII blocks take the byte-scan path of the UTF-8 check; a character split across two reads must still
    # decode, a stray Latin-1 byte after them is recoded and counted once, and in a file that is no text (a NUL)
    # the offset named must still count the ASCII blocks
    from oa_dagster.conform.readers import CSV_BLOCK_BYTES, _Utf8Checked

    head = b"X,Y,NUM,STREET\n"
    row = b"1,2,3,MAIN ST\n"
    body = head + row * (3 * CSV_BLOCK_BYTES // len(row))
    if split_character:  # a two-byte character across the first block boundary, then a stray byte
        body = body[: CSV_BLOCK_BYTES - 1] + "é".encode() + body[CSV_BLOCK_BYTES - 1 :]
    path = _data_file(tmp_path, "data.csv")
    path.write_bytes(body + b"1,2,3,\xffBAD\n")
    checked = _Utf8Checked(path)
    read = b"".join(iter(lambda: checked.read(CSV_BLOCK_BYTES), b""))
    checked.close()
    assert read == body + "1,2,3,ÿBAD\n".encode() and checked.recoded.count == 1

    path.write_bytes(body + b"1,2,3,\x00\xffBAD\n")
    checked = _Utf8Checked(path)
    with pytest.raises(Exception, match=re.escape(f"byte 0xff at offset {len(body) + 7:,})")):
        while checked.read(CSV_BLOCK_BYTES):
            pass
    checked.close()


def test_a_garbage_csv_is_refused_without_anything_printed_by_python_itself(tmp_path: Path) -> None:
    random_bytes = bytes(range(256)) * 4 + os.urandom(50_000)
    _data_file(tmp_path, "data.csv").write_bytes(b"X,Y,NUM,STREET\n1,2,3,a\n" + random_bytes)
    source = _source(
        tmp_path, "data.csv", {"format": "csv", "lon": "X", "lat": "Y", "number": "NUM", "street": "STREET"}
    )
    done = _oa_dagster(
        "process", str(source), "--layer", "addresses", "--output", str(tmp_path / "out"), "--no-preview", "-q"
    )
    assert done.returncode == 1
    assert "Exception ignored" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    state = json.loads((tmp_path / "out" / "addresses" / "test/city" / "state.json").read_text())
    assert state["source_problem"] == CONFORM
    assert state["problem_detail"] == (
        "data.csv is not UTF-8 text (byte 0x80 at offset 151): set conform.encoding to the file's encoding"
    ).replace("data.csv", state["files"]["cache"])


def test_an_engine_bug_keeps_its_traceback_in_log_txt_only(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import oa_dagster.conform.engine as engine

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(engine, "conform_file", broken)
    out = tmp_path / "out"
    code = main(
        [
            "process",
            str(_csv(tmp_path, "NUM,STREET,X,Y\n1,A,-122.1,45.5\n")),
            "--layer",
            "addresses",
            "--output",
            str(out),
            "--no-preview",
        ]
    )
    stderr = capsys.readouterr().err
    log = (out / "addresses" / "test/city" / "log.txt").read_text()
    assert code == 1 and "unexpected ZeroDivisionError: a bug" in stderr and "Traceback" not in stderr
    assert "Traceback (most recent call last)" in log and "ZeroDivisionError: a bug" in log


# ---------------------------------------------------------------------------- 8: coordinates


def test_non_finite_and_out_of_range_points_are_left_out_and_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    rows = [
        "1,A,1e308,1e308",
        "2,B,inf,45",
        "3,C,-122.1,95",
        "4,D,,",
        "5,E,-122.1,45.5",
        "6,F,-122.2,45.6",
        "7,G,-122.3,45.7",
        "8,H,-122.4,45.8",
        "9,I,180,-90",
    ]
    code, state, _ = _process(tmp_path, _csv(tmp_path, "NUM,STREET,X,Y\n" + "\n".join(rows) + "\n"), capsys)
    assert code == 0 and state["feature_count"] == 5
    assert state["features_out_of_range"] == 3 and state["features_without_geometry"] == 1
    assert state["bbox"] == [-122.4, -90.0, 180.0, 45.8]
    features = _strict_json_lines(tmp_path / "out" / "addresses" / "test/city" / "out.geojson")
    assert [f["properties"]["number"] for f in features] == ["5", "6", "7", "8", "9"]
    log = (tmp_path / "out" / "addresses" / "test/city" / "log.txt").read_text()
    assert "left out 3 features with coordinates outside lon/lat range (e.g. x=1e+308, y=1e+308)" in log


def test_geojson_with_1e308_coordinates_never_writes_inf(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    features = [({"NUM": str(i)}, {"type": "Point", "coordinates": [-122.1 - i / 10, 45.5]}) for i in range(3)]
    features.append(({"NUM": "big"}, {"type": "Point", "coordinates": [1e308, 1e308]}))
    code, state, _ = _process(tmp_path, _geojson(tmp_path, feature_collection(features)), capsys)
    assert code == 0 and state["feature_count"] == 3 and state["features_out_of_range"] == 1
    assert all(-180 <= v <= 180 for v in state["bbox"])
    assert len(_strict_json_lines(tmp_path / "out" / "addresses" / "test/city" / "out.geojson")) == 3


def test_csv_with_lon_500_lat_100_is_refused_suggesting_srs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, state, _ = _process(tmp_path, _csv(tmp_path, "NUM,STREET,X,Y\n1,A,500,100\n"), capsys)
    assert code == 1 and state["source_problem"] == CONFORM and state["files"]["output"] is None
    assert state["problem_detail"] == (
        "conform.srs is not set, and 1 of 1 features of the first batch have coordinates outside lon/lat range "
        "(e.g. x=500, y=100): the data looks projected; set `srs` in the conform"
    )


def test_projected_csv_without_srs_is_refused_like_a_shapefile_without_prj(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    csv_dir, shp_dir = tmp_path / "csv", tmp_path / "shp"
    rows = "NUM,STREET,X,Y\n1,A,6050000.5,2120000.25\n2,B,6050100.5,2120100.25\n3,C,-122.1,37.5\n"
    csv_code, csv_state, _ = _process(csv_dir, _csv(csv_dir, rows), capsys)
    (shp_dir / "layer").mkdir(parents=True)
    write_layer(
        shp_dir / "layer" / "points.shp",
        [{"NUM": "1", "STREET": "A"}, {"NUM": "2", "STREET": "B"}],
        ["POINT (6050000.5 2120000.25)", "POINT (6050100.5 2120100.25)"],
        driver="ESRI Shapefile",
        crs=None,
    )
    zip_folder(shp_dir / "layer", _data_file(shp_dir, "points.zip"))
    shp_source = _source(
        shp_dir, "points.zip", {"format": "shapefile", "number": "NUM", "street": "STREET"}, compression="zip"
    )
    shp_code, shp_state, _ = _process(shp_dir, shp_source, capsys)
    assert (csv_code, shp_code) == (1, 1)
    assert csv_state["problem_detail"] == (
        "conform.srs is not set, and 2 of 3 features of the first batch have coordinates outside lon/lat range "
        "(e.g. x=6050000.5, y=2120000.25): the data looks projected; set `srs` in the conform"
    )
    assert shp_state["problem_detail"] == (
        "no projection found: the file states none and conform.srs is not set, and 2 of 2 features of the first "
        "batch have coordinates outside lon/lat range (e.g. x=6050000.5, y=2120000.25): the data looks projected; "
        "set `srs` in the conform"
    )


def test_a_wrong_srs_that_puts_most_features_off_the_earth_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # lon/lat read as UTM metres land near the zone's origin: in range, but far from it, so use big values
    rows = "NUM,STREET,X,Y\n1,A,1e9,1e9\n2,B,2e9,2e9\n3,C,500000,4100000\n"
    code, state, _ = _process(tmp_path, _csv(tmp_path, rows, {"srs": "EPSG:32610"}), capsys)
    assert code == 1 and state["problem_detail"] == (
        "2 of 3 features have coordinates outside lon/lat range (e.g. x=1000000000, y=1000000000): check `srs` "
        "(the data was reprojected from EPSG:32610)"
    )


def test_shapes_outside_lon_lat_range_are_left_out_and_counted(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    square = "POLYGON(({x} 45, {x} 45.1, {y} 45.1, {y} 45, {x} 45))"
    write_layer(
        _data_file(tmp_path, "parcels.gpkg"),
        [{"PID": str(i)} for i in range(4)],
        [
            square.format(x=-122.1, y=-122.0),
            square.format(x=-122.2, y=-122.1),
            square.format(x=-122.3, y=-122.2),
            square.format(x=179.9, y=180.5),
        ],
        driver="GPKG",
    )
    source = _source(tmp_path, "parcels.gpkg", {"format": "gpkg", "pid": "PID"}, layer="parcels")
    code, state, _ = _process(tmp_path, source, capsys, layer="parcels")
    assert code == 0 and state["feature_count"] == 3 and state["features_out_of_range"] == 1
    assert state["bbox"] == [-122.3, 45.0, -122.0, 45.1]


def test_out_of_range_count_is_in_the_dagster_metadata(tmp_path: Path) -> None:
    import dagster as dg

    from tests.platform_helpers import city_sources, local, materialize_catalog, materialize_range

    data = tmp_path / "sources" / "us" / "xx" / "a.csv"
    data.parent.mkdir(parents=True)
    data.write_text("lon,lat,num,street\n-122.1,37.5,1,MAIN ST\n-122.2,37.6,2,MAIN ST\n500,100,3,MAIN ST\n")
    resources = local(tmp_path, city_sources(tmp_path, {"us/xx/a": "sources/us/xx/a.csv"}))
    with dg.instance_for_test() as instance:
        materialize_catalog(instance, resources)
        result = materialize_range(instance, resources, "addresses", "us/xx/a/city", "us/xx/a/city")
        metadata = result.get_asset_materialization_events()[0].event_specific_data.materialization.metadata
    assert metadata["feature_count"].value == 2 and metadata["features_out_of_range"].value == 1
