"""HTTP downloads against a local server: retries, timeouts, typing, caching, headers, caps."""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import time
import zipfile
from pathlib import Path

import pytest

from oa_dagster.errors import DownloadError
from oa_dagster.fetch import fetch_entry
from tests.servers.downloads import DownloadServer
from tests.servers.helpers import fast_options, make_entry

CSV = b"NUMBER,STREET\n1,Main St\n2,Oak Ave\n"


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_csv_download_is_named_by_url_extension_and_fingerprinted(
    download_server: DownloadServer, tmp_path: Path
) -> None:
    download_server.route("/data/addresses.csv", body=CSV, content_type="text/plain")
    download = fetch_entry(make_entry(download_server.url("/data/addresses.csv")), tmp_path, fast_options())
    assert download.path == tmp_path / "cache.csv"
    assert download.path.read_bytes() == CSV
    assert download.fingerprint == hashlib.md5(CSV).hexdigest()
    assert download.ext == ".csv" and not download.from_cache


def test_gzip_url_keeps_inner_extension(download_server: DownloadServer, tmp_path: Path) -> None:
    download_server.route("/adresses-83.csv.gz", body=gzip.compress(CSV), content_type="application/gzip")
    download = fetch_entry(make_entry(download_server.url("/adresses-83.csv.gz")), tmp_path, fast_options())
    assert download.path.name == "cache.csv.gz"


def test_type_comes_from_content_disposition_for_script_urls(download_server: DownloadServer, tmp_path: Path) -> None:
    download_server.route(
        "/export.php",
        body=_zip_bytes({"a.csv": CSV}),
        content_type="application/octet-stream",
        headers={"Content-Disposition": 'attachment; filename="parcels.zip"'},
    )
    download = fetch_entry(make_entry(download_server.url("/export.php") + "?id=3"), tmp_path, fast_options())
    assert download.path.name == "cache.zip"


def test_type_comes_from_content_type_when_url_says_nothing(download_server: DownloadServer, tmp_path: Path) -> None:
    download_server.route("/api/rows", body=CSV, content_type="text/csv; charset=utf-8")
    download = fetch_entry(make_entry(download_server.url("/api/rows") + "?format=csv"), tmp_path, fast_options())
    assert download.ext == ".csv"


def test_type_comes_from_magic_bytes_as_last_resort(download_server: DownloadServer, tmp_path: Path) -> None:
    download_server.route("/download", body=_zip_bytes({"a.csv": CSV}), content_type="application/octet-stream")
    download_server.route("/geo", body=b' {"type":"FeatureCollection","features":[]}', content_type=None)
    assert fetch_entry(make_entry(download_server.url("/download")), tmp_path / "a", fast_options()).ext == ".zip"
    assert fetch_entry(make_entry(download_server.url("/geo")), tmp_path / "b", fast_options()).ext == ".json"


def test_redirect_is_followed_and_final_name_used(download_server: DownloadServer, tmp_path: Path) -> None:
    download_server.route("/latest", redirect="/files/v2/addresses.csv")
    target = download_server.route("/files/v2/addresses.csv", body=CSV)
    download = fetch_entry(make_entry(download_server.url("/latest")), tmp_path, fast_options())
    assert download.path.name == "cache.csv" and target.hits == 1


def test_request_headers_and_user_agent_are_sent(download_server: DownloadServer, tmp_path: Path) -> None:
    route = download_server.route("/a.csv", body=CSV)
    fetch_entry(
        make_entry(download_server.url("/a.csv"), headers={"Referer": "https://example.org/"}), tmp_path, fast_options()
    )
    seen = route.seen_headers[0]
    assert seen["Referer"] == "https://example.org/"
    assert seen["User-Agent"].startswith("oa-dagster/")


def test_429_is_retried_after_retry_after(download_server: DownloadServer, tmp_path: Path) -> None:
    route = download_server.route("/a.csv", body=CSV, statuses=[429], retry_after="1")
    started = time.monotonic()
    download = fetch_entry(make_entry(download_server.url("/a.csv")), tmp_path, fast_options())
    assert route.hits == 2 and download.path.read_bytes() == CSV
    assert time.monotonic() - started >= 0.9  # honoured Retry-After rather than the tiny backoff


def test_retry_after_longer_than_allowed_fails_fast(download_server: DownloadServer, tmp_path: Path) -> None:
    download_server.route("/a.csv", body=CSV, statuses=[503], retry_after="3600")
    with pytest.raises(DownloadError, match="Retry-After"):
        fetch_entry(make_entry(download_server.url("/a.csv")), tmp_path, fast_options())


def test_server_errors_are_retried_then_reported(download_server: DownloadServer, tmp_path: Path) -> None:
    route = download_server.route("/a.csv", body=CSV, statuses=[500, 502, 503, 500])
    with pytest.raises(DownloadError, match=r"failed after 3 attempts: HTTP 503"):
        fetch_entry(make_entry(download_server.url("/a.csv")), tmp_path, fast_options())
    assert route.hits == 3
    assert not list(tmp_path.glob("cache*"))


def test_client_error_is_not_retried(download_server: DownloadServer, tmp_path: Path) -> None:
    route = download_server.route("/a.csv", body=b"gone", status=404)
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch_entry(make_entry(download_server.url("/a.csv")), tmp_path, fast_options())
    assert route.hits == 1


def test_truncated_body_is_retried(download_server: DownloadServer, tmp_path: Path) -> None:
    route = download_server.route("/a.csv", body=CSV * 100, truncate=1)
    download = fetch_entry(make_entry(download_server.url("/a.csv")), tmp_path, fast_options())
    assert route.hits == 2 and download.path.read_bytes() == CSV * 100


def test_body_truncated_every_time_is_an_error(download_server: DownloadServer, tmp_path: Path) -> None:
    download_server.route("/a.csv", body=CSV * 100, truncate=10)
    with pytest.raises(DownloadError, match="truncated"):
        fetch_entry(make_entry(download_server.url("/a.csv")), tmp_path, fast_options())


def test_slow_response_hits_the_read_timeout(download_server: DownloadServer, tmp_path: Path) -> None:
    route = download_server.route("/slow.csv", body=CSV, delay=1.0)
    started = time.monotonic()
    with pytest.raises(DownloadError, match="Timeout"):
        fetch_entry(make_entry(download_server.url("/slow.csv")), tmp_path, fast_options(timeout=0.3, retries=1))
    assert route.hits == 2 and time.monotonic() - started < 5


def test_stalled_body_hits_the_read_timeout(download_server: DownloadServer, tmp_path: Path) -> None:
    download_server.route("/stall.csv", body=CSV * 1000, stall=1.0)
    with pytest.raises(DownloadError, match="stalled"):
        fetch_entry(make_entry(download_server.url("/stall.csv")), tmp_path, fast_options(timeout=0.3, retries=0))


def test_download_over_the_size_cap_is_refused(download_server: DownloadServer, tmp_path: Path) -> None:
    download_server.route("/big.csv", body=CSV * 1000)
    with pytest.raises(DownloadError, match="size cap") as caught:
        fetch_entry(make_entry(download_server.url("/big.csv")), tmp_path, fast_options(max_download_bytes=1000))
    assert caught.value.problem == "Could not download source data"
    assert not list(tmp_path.glob("cache*"))


def test_unchanged_source_is_served_from_cache_after_etag_304(download_server: DownloadServer, tmp_path: Path) -> None:
    route = download_server.route("/a.csv", body=CSV, etag='"v1"')
    options = fast_options(cache_dir=tmp_path / "cache")
    first = fetch_entry(make_entry(download_server.url("/a.csv")), tmp_path / "run1", options)
    second = fetch_entry(make_entry(download_server.url("/a.csv")), tmp_path / "run2", options)
    assert not first.from_cache and second.from_cache
    assert route.seen_headers[1]["If-None-Match"] == '"v1"'
    assert second.path.read_bytes() == CSV and second.fingerprint == first.fingerprint


def test_changed_source_is_downloaded_again(download_server: DownloadServer, tmp_path: Path) -> None:
    route = download_server.route("/a.csv", body=CSV, last_modified="Mon, 01 Jan 2024 00:00:00 GMT")
    options = fast_options(cache_dir=tmp_path / "cache")
    first = fetch_entry(make_entry(download_server.url("/a.csv")), tmp_path / "run1", options)
    route.body, route.last_modified = CSV + b"3,Elm St\n", "Tue, 02 Jan 2024 00:00:00 GMT"
    second = fetch_entry(make_entry(download_server.url("/a.csv")), tmp_path / "run2", options)
    assert route.seen_headers[1]["If-Modified-Since"] == "Mon, 01 Jan 2024 00:00:00 GMT"
    assert not second.from_cache and second.fingerprint != first.fingerprint
    assert second.path.read_bytes().endswith(b"Elm St\n")


def test_progress_reports_bytes(download_server: DownloadServer, tmp_path: Path) -> None:
    download_server.route("/a.csv", body=CSV)
    calls: list[tuple[str, int, int | None]] = []
    fetch_entry(
        make_entry(download_server.url("/a.csv")), tmp_path, fast_options(progress=lambda *args: calls.append(args))
    )
    assert calls[-1] == ("download", len(CSV), len(CSV))


def test_relative_data_path_is_read_from_the_source_directory(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "points.csv").write_bytes(CSV)
    entry = make_entry("data/points.csv", source_dir=tmp_path)
    download = fetch_entry(entry, tmp_path / "work", fast_options())
    assert download.path.read_bytes() == CSV and download.ext == ".csv"
    file_url = fetch_entry(
        make_entry((tmp_path / "data" / "points.csv").as_uri(), protocol="file", allow_local_files=True),
        tmp_path / "work2",
        fast_options(),
    )
    assert file_url.fingerprint == download.fingerprint


def test_unknown_protocol_is_a_download_error(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="unknown protocol"):
        fetch_entry(make_entry("http://127.0.0.1:9/x.csv", protocol="gopher"), tmp_path, fast_options())


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_untrusted_certificate_fails_and_is_never_retried_unverified(tmp_path: Path) -> None:
    import ssl

    cert, key = _self_signed(tmp_path)
    server = DownloadServer()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    route = server.route("/a.csv", body=CSV)
    server.start()
    try:
        url = server.url("/a.csv").replace("http://", "https://")
        with pytest.raises(DownloadError, match="TLS certificate verification failed"):
            fetch_entry(make_entry(url), tmp_path / "a", fast_options())
        assert route.hits == 0
        download = fetch_entry(make_entry(url), tmp_path / "b", fast_options(verify_tls=str(cert)))
        assert download.path.read_bytes() == CSV
    finally:
        server.stop()


class _Attempts(logging.Handler):
    """Counts the retry warnings a fetcher logs ("... attempt N ... failed ...; retrying")."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.retries: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "retrying" in record.getMessage():
            self.retries.append(record.getMessage())


@pytest.mark.parametrize(
    "protocol, url",
    [
        ("http", "http://no-such-host.invalid/addresses.csv"),
        ("ftp", "ftp://no-such-host.invalid/pub/addresses.csv"),
        ("ESRI", "http://no-such-host.invalid/arcgis/rest/services/Addresses/MapServer/0"),
    ],
    ids=["http", "ftp", "arcgis"],
)
def test_a_host_name_that_does_not_resolve_fails_at_once_without_retries(
    protocol: str, url: str, tmp_path: Path
) -> None:
    """RFC 2606: `.invalid` never resolves. A missing name is no hiccup, so no fetcher retries it."""
    counter = _Attempts()
    log = logging.Logger("dns-test")
    log.addHandler(counter)
    conform = {"format": "geojson", "number": "N", "street": "S"} if protocol == "ESRI" else None
    with pytest.raises(DownloadError) as failure:
        fetch_entry(make_entry(url, protocol=protocol, conform=conform), tmp_path, fast_options(retries=3), log=log)
    assert failure.value.detail == "could not resolve host no-such-host.invalid"
    assert failure.value.problem == "Could not download source data"
    assert counter.retries == []
