"""Downloads from untrusted servers (issue 8): Content-Encoding bombs, trickling servers (deadline and minimum
throughput, for HTTP, FTP and ArcGIS pages), request headers with line breaks, bodies and zip members cut short.

Each bad input must end as the classic "Could not download source data" with a detail naming the cause, never
as "unexpected ..." with a traceback.
"""

from __future__ import annotations

import gzip
import io
import json
import struct
import zipfile
from pathlib import Path
from typing import Any

import pytest

from oa_dagster.process import RunState, run_entry
from tests.geofiles import write_source
from tests.servers.arcgis import FakeArcGISServer, FakeLayer, point_features
from tests.servers.downloads import DownloadServer
from tests.servers.ftp import FTPTestServer
from tests.servers.helpers import fast_options, make_entry, run_process_command

DOWNLOAD_PROBLEM = "Could not download source data"
CSV_CONFORM = {"format": "csv", "number": "NUMBER", "street": "STREET", "lon": "LON", "lat": "LAT"}
ESRI_CONFORM = {"format": "geojson", "number": "NUMBER", "street": "STREET"}
ROWS = b"NUMBER,STREET,LON,LAT\n" + b"".join(b"%d,Main St,-122.1,37.5\n" % i for i in range(2000))
# a trickle: the tests' throughput rule asks 1,000 bytes/s over 0.3 s; these servers send far less
SLOW = {"min_throughput": 1000.0, "throughput_window": 0.3}


def run(
    tmp_path: Path, data: str, *, protocol: str = "http", conform: dict[str, Any] | None = None, **options: Any
) -> tuple[RunState, str]:
    """`run_entry` on one entry; returns the state and the run's log.txt."""
    entry = make_entry(
        data, protocol=protocol, conform=conform or dict(CSV_CONFORM), headers=options.pop("headers", None)
    )
    out = tmp_path / "out"
    state = run_entry(entry, out, preview=False, fetch_options=fast_options(**options))
    assert json.loads((out / "state.json").read_text())["problem_detail"] == state.problem_detail
    return state, (out / "log.txt").read_text()


def assert_download_problem(state: RunState, log: str, *fragments: str) -> None:
    assert state.source_problem == DOWNLOAD_PROBLEM, state.problem_detail
    assert not state.has_output
    for fragment in fragments:
        assert fragment in state.problem_detail
    assert "unexpected" not in state.problem_detail and "Traceback" not in log


def process_cli(tmp_path: Path, entry: dict[str, Any]) -> tuple[int, dict, str]:
    """The `oa-dagster process` command on a one-entry source; returns the exit code, state.json and stderr."""
    source = write_source(tmp_path / "sources" / "us" / "or" / "test.json", {"addresses": [{"name": "city", **entry}]})
    result = run_process_command(source, "addresses", tmp_path / "out")
    state = json.loads((tmp_path / "out" / "addresses" / "us/or/test/city" / "state.json").read_text())
    return result.returncode, state, result.stderr


# ------------------------------------------------------------------------ 5. Content-Encoding bombs


def test_gzip_content_encoding_bomb_is_refused_by_the_default_ratio_cap(
    download_server: DownloadServer, tmp_path: Path
) -> None:
    # 48 KiB on the wire that decode to 48 MiB (1,028x): past the 16 MiB floor and the 1,000x default ratio
    bomb = gzip.compress(b"\0" * (48 << 20), 9)
    download_server.route("/addresses.csv", body=bomb, content_type="text/csv", headers={"Content-Encoding": "gzip"})
    state, log = run(tmp_path, download_server.url("/addresses.csv"))
    assert_download_problem(
        state, log, "Content-Encoding gzip", "expands more than 1,000x", "refused as a decompression bomb"
    )
    assert not list((tmp_path / "out").rglob("cache*"))


def test_content_encoding_is_held_to_the_decompressed_size_cap(download_server: DownloadServer, tmp_path: Path) -> None:
    download_server.route(
        "/addresses.csv", body=gzip.compress(ROWS), content_type="text/csv", headers={"Content-Encoding": "gzip"}
    )
    state, log = run(tmp_path, download_server.url("/addresses.csv"), max_unpacked_bytes=10_000)
    assert_download_problem(state, log, "decompressed size cap: Content-Encoding gzip", "10,000 bytes")


def test_ordinary_gzip_content_encoding_is_decoded_and_conformed(
    download_server: DownloadServer, tmp_path: Path
) -> None:
    # highly compressible but small: the ratio rule only applies past 16 MiB decoded
    body = ROWS + b"9999,Main St,-122.1,37.5\n" * 20_000
    download_server.route(
        "/addresses.csv", body=gzip.compress(body), content_type="text/csv", headers={"Content-Encoding": "gzip"}
    )
    state, _ = run(tmp_path, download_server.url("/addresses.csv"))
    assert state.source_problem is None and state.feature_count == 22_000


def test_gzip_arcgis_page_that_expands_like_a_bomb_is_refused(arcgis_server: FakeArcGISServer, tmp_path: Path) -> None:
    layer = FakeLayer(point_features(10), gzip=True, pad_bytes=20 << 20)
    url = arcgis_server.add_layer("bomb", layer)
    state, log = run(tmp_path, url, protocol="ESRI", conform=ESRI_CONFORM, max_unpack_ratio=100)
    assert_download_problem(
        state, log, "Content-Encoding gzip", "expands more than 100x", "refused as a decompression bomb"
    )
    assert len(layer.queries) == 1


def test_arcgis_response_over_the_size_cap_is_refused(arcgis_server: FakeArcGISServer, tmp_path: Path) -> None:
    url = arcgis_server.add_layer("big", FakeLayer(point_features(10), gzip=True, pad_bytes=200_000))
    state, log = run(tmp_path, url, protocol="ESRI", conform=ESRI_CONFORM, esri_max_response_bytes=100_000)
    assert_download_problem(state, log, "ArcGIS response from", "larger than the cap of 100,000 bytes")


def test_gzip_arcgis_pages_are_decoded(arcgis_server: FakeArcGISServer, tmp_path: Path) -> None:
    url = arcgis_server.add_layer("zipped", FakeLayer(point_features(250), max_record_count=100, gzip=True))
    state, _ = run(tmp_path, url, protocol="ESRI", conform=ESRI_CONFORM)
    assert state.source_problem is None and state.feature_count == 250


# ------------------------------------------------------------------- 6. deadline and minimum throughput


def test_http_server_dripping_bytes_fails_as_too_slow_without_retrying(
    download_server: DownloadServer, tmp_path: Path
) -> None:
    route = download_server.route("/addresses.csv", body=ROWS, content_type="text/csv", drip=0.02)
    state, log = run(tmp_path, download_server.url("/addresses.csv"), **SLOW)
    assert_download_problem(state, log, "download of http://", "too slow:", "(minimum 1,000 bytes/s over 0.3 s)")
    assert route.hits == 1  # a trickle is not retried: that would multiply the wait


def test_http_download_past_its_deadline_fails(download_server: DownloadServer, tmp_path: Path) -> None:
    # 25 KB/s passes the throughput rule, but the whole body would take about 2 s
    route = download_server.route("/addresses.csv", body=ROWS * 2, content_type="text/csv", drip=0.02, drip_bytes=500)
    state, log = run(tmp_path, download_server.url("/addresses.csv"), download_deadline=0.4)
    assert_download_problem(state, log, "took longer than the 0.4 s deadline", "bytes received")
    assert route.hits == 1


def test_http_server_that_never_answers_fails_on_the_deadline_not_after_every_read_timeout(
    download_server: DownloadServer, tmp_path: Path
) -> None:
    # accepts the connection, then says nothing: each attempt would wait the whole 20 s read timeout, 3 times
    route = download_server.route("/addresses.csv", body=ROWS, content_type="text/csv", delay=120.0)
    state, log = run(tmp_path, download_server.url("/addresses.csv"), timeout=20.0, download_deadline=2.0)
    assert_download_problem(state, log, "download of http://", "took longer than the 2 s deadline")
    assert route.hits == 1  # the first attempt's read timeout was cut to the deadline; no retry after it


def test_ftp_server_trickling_the_file_fails_as_too_slow(ftp_root: Path, tmp_path: Path) -> None:
    (ftp_root / "addresses.csv").write_bytes(ROWS)
    server = FTPTestServer(ftp_root, write_limit=512).start()  # bursts of 512 bytes about every 2 s
    try:
        state, log = run(tmp_path, server.url("addresses.csv"), protocol="ftp", timeout=10, **SLOW)
    finally:
        server.stop()
    assert_download_problem(state, log, "download of ftp://", "too slow:", "bytes/s over 0.3 s")


def test_arcgis_page_dripping_bytes_fails_as_too_slow(arcgis_server: FakeArcGISServer, tmp_path: Path) -> None:
    layer = FakeLayer(point_features(20), drip=0.02)
    url = arcgis_server.add_layer("drip", layer)
    state, log = run(tmp_path, url, protocol="ESRI", conform=ESRI_CONFORM, **SLOW)
    assert_download_problem(state, log, "ArcGIS page 1 from", "too slow:")
    assert len(layer.queries) == 1  # not asked again in f=json: a trickle is no format problem


def test_arcgis_request_past_its_deadline_fails(arcgis_server: FakeArcGISServer, tmp_path: Path) -> None:
    url = arcgis_server.add_layer("late", FakeLayer(point_features(20), latency=0.5))
    state, log = run(tmp_path, url, protocol="ESRI", conform=ESRI_CONFORM, esri_request_deadline=0.2)
    assert_download_problem(state, log, "ArcGIS metadata from", "took longer than the 0.2 s deadline")


# --------------------------------------------------------------- 9. ordinary bad input, specific details


def test_request_header_with_a_line_break_is_refused_before_any_request(
    download_server: DownloadServer, tmp_path: Path
) -> None:
    route = download_server.route("/addresses.csv", body=ROWS, content_type="text/csv")
    code, state, stderr = process_cli(
        tmp_path,
        {
            "protocol": "http",
            "data": download_server.url("/addresses.csv"),
            "conform": CSV_CONFORM,
            "request": {"headers": {"X-Api-Client": "oa\r\nX-Injected: 1"}},
        },
    )
    assert code == 1 and state["source_problem"] == DOWNLOAD_PROBLEM
    assert "request header 'X-Api-Client' contains a line break" in state["problem_detail"]
    assert "Traceback" not in stderr and "request header 'X-Api-Client'" in stderr
    assert route.hits == 0


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({"Referer": "https://a\0b"}, "request header 'Referer' contains a line break (CR/LF) or NUL"),
        (
            {"Referer": "https://example.org/\u2713"},
            "request header 'Referer' has characters HTTP headers cannot carry",
        ),
        ({"Bad Name": "x"}, "request header name 'Bad Name' is not a valid HTTP header name"),
    ],
)
def test_arcgis_request_header_that_http_cannot_send_is_refused(
    arcgis_server: FakeArcGISServer, tmp_path: Path, headers: dict[str, str], detail: str
) -> None:
    layer = FakeLayer(point_features(5))
    url = arcgis_server.add_layer("hdr", layer)
    state, log = run(tmp_path, url, protocol="ESRI", conform=ESRI_CONFORM, headers=headers)
    assert_download_problem(state, log, detail, "no request was sent")
    assert layer.queries == []


def test_latin1_request_header_is_sent(download_server: DownloadServer, tmp_path: Path) -> None:
    route = download_server.route("/addresses.csv", body=ROWS, content_type="text/csv")
    state, _ = run(tmp_path, download_server.url("/addresses.csv"), headers={"Referer": " https://café.example/ "})
    assert state.source_problem is None and state.feature_count == 2000
    assert route.seen_headers[0]["Referer"] == "https://café.example/"  # the server reads headers as Latin-1


def test_truncated_body_reports_the_bytes_that_arrived(download_server: DownloadServer, tmp_path: Path) -> None:
    body = (ROWS * 50)[:100_000]
    route = download_server.route("/addresses.csv", body=body, content_type="text/csv", truncate=99, cut_at=44)
    state, log = run(tmp_path, download_server.url("/addresses.csv"))
    assert_download_problem(
        state,
        log,
        "failed after 3 attempts",
        "after 44 of 100,000 bytes",
        "connection closed before the end of the body",
    )
    assert route.hits == 3


def _zip_with_member_data_cut(stored: bool) -> bytes:
    """A zip whose first member lost 1,000 bytes of its data in transit; its directory is intact."""
    buffer = io.BytesIO()
    method = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(buffer, "w", method) as archive:
        archive.writestr("export/addresses.csv", ROWS * 5)
    data = buffer.getvalue()
    info = zipfile.ZipFile(io.BytesIO(data)).infolist()[0]
    start = info.header_offset + 30 + len(info.filename.encode())
    cut = data[: start + 2000] + data[start + 3000 :]
    if stored:  # keep the directory's offset right, so the member's data runs into the end of the file
        eocd = cut.rindex(b"PK\x05\x06")
        directory = struct.unpack("<I", cut[eocd + 16 : eocd + 20])[0] - 1000
        cut = cut[: eocd + 16] + struct.pack("<I", directory) + cut[eocd + 20 :]
    return cut


@pytest.mark.parametrize(
    ("stored", "cause"),
    [
        (False, "its data is not where the archive directory says (truncated or damaged archive)"),
        (True, "its compressed data ends early (truncated archive)"),
    ],
)
def test_zip_member_with_data_cut_short_is_a_download_problem_naming_the_member(
    download_server: DownloadServer, tmp_path: Path, stored: bool, cause: str
) -> None:
    download_server.route("/addresses.zip", body=_zip_with_member_data_cut(stored))
    code, state, stderr = process_cli(
        tmp_path,
        {
            "protocol": "http",
            "data": download_server.url("/addresses.zip"),
            "compression": "zip",
            "conform": {**CSV_CONFORM, "file": "addresses.csv"},
        },
    )
    assert code == 1 and state["source_problem"] == DOWNLOAD_PROBLEM
    assert state["problem_detail"] == f"corrupt zip member 'export/addresses.csv' in cache.zip: {cause}"
    assert "Traceback" not in stderr
