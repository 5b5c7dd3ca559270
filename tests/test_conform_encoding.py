"""Issue 16 §5: text that is not in the encoding the conform (or the `.cpg`) names is never silently U+FFFD.

A wrong `encoding` is common: a conform says utf-8 over a Latin-1 CSV, or over a shapefile whose `.cpg` says 1252.
The `.cpg`'s encoding is tried, then Latin-1, and the run warns with the count (its `log.txt`, the warnings a
Dagster run records, and `text_values_recoded` in `state.json`). Real files, through `run_entry`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from oa_dagster.platform.entry_processing import EntryWarnings, entry_logger
from oa_dagster.process import RunState, run_entry
from tests.geofiles import read_features, write_layer, zip_folder
from tests.servers.helpers import make_entry

REPLACEMENT = "\ufffd"


def run(tmp_path: Path, data: str, conform: dict[str, Any]) -> tuple[RunState, list[str], list[str]]:
    """State, streets written and the warnings recorded for a local file `tmp_path/src/<data>`."""
    entry = make_entry(data, conform=conform, source_dir=tmp_path / "src", allow_local_files=True)
    warnings = EntryWarnings("xx/test")
    out = tmp_path / "out"
    state = run_entry(entry, out, preview=False, log=entry_logger(warnings))
    assert state.source_problem is None, state.problem_detail
    streets = [f["properties"]["street"] for f in read_features(out / "out.geojson")]
    stored = json.loads((out / "state.json").read_text())
    assert stored["text_values_recoded"] == state.text_values_recoded
    log_text = (out / "log.txt").read_text()
    lines = [line for level, line in warnings.lines if level == logging.WARNING and "could not be decoded" in line]
    assert all(line.split(": ", 1)[1] in log_text for line in lines)
    return state, streets, lines


def src(tmp_path: Path) -> Path:
    folder = tmp_path / "src"
    folder.mkdir(exist_ok=True)
    return folder


CSV_CONFORM = {"format": "csv", "number": "NUM", "street": "STREET", "lon": "X", "lat": "Y"}


def test_a_latin1_csv_whose_conform_says_utf8_is_read_as_latin1_with_a_warning(tmp_path: Path) -> None:
    text = "NUM,STREET,X,Y\n1,MÜLLERSTRASSE,8.5,47.4\n2,MAIN ST,8.5,47.4\n3,CAFÉ ROAD,8.5,47.4\n"
    (src(tmp_path) / "a.csv").write_bytes(text.encode("latin-1"))
    state, streets, warnings = run(tmp_path, "a.csv", {**CSV_CONFORM, "encoding": "utf-8"})
    assert streets == ["MÜLLERSTRASSE", "MAIN ST", "CAFÉ ROAD"]
    assert state.text_values_recoded == 2
    assert len(warnings) == 1 and "2 rows of" in warnings[0] and "read 2 as iso-8859-1" in warnings[0]


ROWS = 200_000  # about 5 MiB: more than one of pyarrow's blocks


def test_a_latin1_character_split_across_reads_and_rows_are_counted_once_each(tmp_path: Path) -> None:
    """Thousands of rows, several bad bytes per row, over pyarrow's 4 MiB blocks: one count per row."""
    rows = [f"{i},ÄÖÜ STRASSE {i},8.5,47.4" if i % 3 == 0 else f"{i},MAIN ST {i},8.5,47.4" for i in range(ROWS)]
    (src(tmp_path) / "a.csv").write_bytes(("NUM,STREET,X,Y\n" + "\n".join(rows) + "\n").encode("latin-1"))
    state, streets, _ = run(tmp_path, "a.csv", CSV_CONFORM)
    assert state.text_values_recoded == len(range(0, ROWS, 3))
    assert streets[:4] == ["ÄÖÜ STRASSE 0", "MAIN ST 1", "MAIN ST 2", "ÄÖÜ STRASSE 3"]
    assert not any(REPLACEMENT in s for s in streets)


def _shapefile(tmp_path: Path, street: str, encoding: str, cpg: str | None, dbf_bytes: bytes = b"") -> None:
    """`src/a.zip` holding a.shp written in `encoding`, its `.cpg` saying `cpg` (none when None)."""
    folder = tmp_path / "shp"
    folder.mkdir(exist_ok=True)
    write_layer(
        folder / "a.shp", [{"NUM": "1", "STREET": street}], ["POINT (8.5 47.4)"], driver="ESRI Shapefile",
        encoding=encoding,
    )  # fmt: skip
    (folder / "a.cpg").unlink(missing_ok=True)
    if cpg is not None:
        (folder / "a.cpg").write_text(cpg)
    if dbf_bytes:
        dbf = folder / "a.dbf"
        dbf.write_bytes(dbf.read_bytes().replace(street.encode(encoding), dbf_bytes, 1))
    zip_folder(folder, src(tmp_path) / "a.zip")


SHP_CONFORM = {"format": "shapefile", "number": "NUM", "street": "STREET", "file": "a.shp"}


@pytest.mark.parametrize("said", ["utf-8", "UTF8"])
def test_a_shapefile_whose_cpg_says_1252_is_read_as_1252_when_the_conform_says_utf8(tmp_path: Path, said: str) -> None:
    """The euro sign is 0x80 in windows-1252 and a control character in Latin-1: the .cpg was tried first."""
    _shapefile(tmp_path, "CAFÉ € STRASSE", "cp1252", "1252")
    state, streets, warnings = run(tmp_path, "a.zip", {**SHP_CONFORM, "encoding": said})
    assert streets == ["CAFÉ € STRASSE"] and state.text_values_recoded == 1
    assert "1 text values of a.shp" in warnings[0] and "read 1 as cp1252" in warnings[0]


def test_a_conforms_shapefile_encoding_is_not_kept_for_the_next_shapefile_read_on_the_same_thread(
    tmp_path: Path,
) -> None:
    """pyogrio's `encoding=` is a thread-local SHAPE_ENCODING restored when the reader closes, and the reader
    closes on the read-ahead thread: the next entry opened on this thread was read as the previous one's encoding
    ("MÜLLER" in a 1252 shapefile came out as CP437's "M▄LLER"). The driver's ENCODING open option has no state."""
    first, second = tmp_path / "first", tmp_path / "second"
    for folder in (first, second):
        folder.mkdir()
        _shapefile(folder, "MÜLLER", "cp1252", "1252")
    _, streets, _ = run(first, "a.zip", {**SHP_CONFORM, "encoding": "cp437"})
    assert streets == ["MÜLLER".encode("cp1252").decode("cp437")]  # "M▄LLER": what the conform asked for
    _, streets, warnings = run(second, "a.zip", SHP_CONFORM)
    assert streets == ["MÜLLER"] and warnings == []


def test_latin1_is_the_last_resort_when_the_cpg_is_wrong_too(tmp_path: Path) -> None:
    """0x81 is undefined in windows-1252: that value falls through to Latin-1 rather than U+FFFD."""
    _shapefile(tmp_path, "XY", "cp1252", "1252", dbf_bytes=b"\x81\xc9")
    state, streets, warnings = run(tmp_path, "a.zip", {**SHP_CONFORM, "encoding": "utf-8"})
    assert streets == ["\x81É"] and state.text_values_recoded == 1
    assert "read 1 as iso-8859-1" in warnings[0]


def test_geojson_that_is_not_utf8_is_read_as_latin1_with_a_warning(tmp_path: Path) -> None:
    point = '"geometry":{"type":"Point","coordinates":[8.5,47.4]}'
    feature = '{"type":"Feature","properties":{"NUM":"1","STREET":"CAFÉ"},' + point + "}"
    (src(tmp_path) / "a.geojson").write_bytes(("\n".join([feature] * 3) + "\n").encode("latin-1"))
    state, streets, warnings = run(tmp_path, "a.geojson", {"format": "geojson", "number": "NUM", "street": "STREET"})
    assert streets == ["CAFÉ"] * 3 and state.text_values_recoded == 3 and len(warnings) == 1


@pytest.mark.parametrize(
    ("name", "write", "conform"),
    [
        ("a.csv", lambda p: p.write_bytes("NUM,STREET,X,Y\n1,CAFÉ €,8.5,47.4\n".encode()), CSV_CONFORM),
        (
            "a.csv",
            lambda p: p.write_bytes("NUM,STREET,X,Y\n1,CAFÉ,8.5,47.4\n".encode("latin-1")),
            {**CSV_CONFORM, "encoding": "latin-1"},
        ),
        (
            "a.zip",
            lambda p: _shapefile(p.parents[1], "CAFÉ €", "UTF-8", "UTF-8"),
            {**SHP_CONFORM, "encoding": "utf-8"},
        ),
        ("a.zip", lambda p: _shapefile(p.parents[1], "CAFÉ €", "cp1252", "1252"), SHP_CONFORM),
    ],
    ids=["utf8-csv", "latin1-csv-said-latin1", "utf8-shapefile", "cp1252-shapefile-with-cpg"],
)
def test_correctly_encoded_text_is_read_as_it_is_without_a_warning(
    tmp_path: Path, name: str, write: Any, conform: dict[str, Any]
) -> None:
    write(src(tmp_path) / name)
    state, streets, warnings = run(tmp_path, name, conform)
    assert streets[0].startswith("CAFÉ") and not any(REPLACEMENT in s for s in streets)
    assert state.text_values_recoded == 0 and warnings == []
