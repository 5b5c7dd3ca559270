"""FTP downloads against a local pyftpdlib server."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from oa_dagster.errors import DownloadError
from oa_dagster.fetch import fetch_entry
from tests.servers.ftp import PASSWORD, USER, FTPTestServer
from tests.servers.helpers import fast_options, make_entry

CSV = b"NUMBER,STREET\n1,Main St\n" * 1000


def test_anonymous_ftp_download_is_streamed_to_disk(ftp_server: FTPTestServer, ftp_root: Path, tmp_path: Path) -> None:
    (ftp_root / "pub").mkdir()
    (ftp_root / "pub" / "addresses.csv").write_bytes(CSV)
    download = fetch_entry(make_entry(ftp_server.url("pub/addresses.csv"), protocol="ftp"), tmp_path, fast_options())
    assert download.path.name == "cache.csv" and download.path.read_bytes() == CSV
    assert download.fingerprint == hashlib.md5(CSV).hexdigest()


def test_ftp_credentials_from_the_url_are_used(ftp_root: Path, tmp_path: Path) -> None:
    (ftp_root / "private.csv").write_bytes(CSV)
    server = FTPTestServer(ftp_root, anonymous=False).start()
    try:
        with pytest.raises(DownloadError, match="FTP error"):
            fetch_entry(make_entry(server.url("private.csv"), protocol="ftp"), tmp_path / "a", fast_options())
        download = fetch_entry(
            make_entry(server.url("private.csv", user=USER, password=PASSWORD), protocol="ftp"),
            tmp_path / "b",
            fast_options(),
        )
        assert download.path.read_bytes() == CSV
    finally:
        server.stop()


def test_missing_ftp_file_is_a_download_error(ftp_server: FTPTestServer, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="550"):
        fetch_entry(make_entry(ftp_server.url("nope.zip"), protocol="FTP"), tmp_path, fast_options())


def test_ftp_download_over_the_size_cap_is_refused(ftp_server: FTPTestServer, ftp_root: Path, tmp_path: Path) -> None:
    (ftp_root / "big.csv").write_bytes(CSV)
    with pytest.raises(DownloadError, match="size cap"):
        fetch_entry(
            make_entry(ftp_server.url("big.csv"), protocol="ftp"), tmp_path, fast_options(max_download_bytes=100)
        )


def test_unchanged_ftp_file_comes_from_the_cache(ftp_server: FTPTestServer, ftp_root: Path, tmp_path: Path) -> None:
    (ftp_root / "a.csv").write_bytes(CSV)
    options = fast_options(cache_dir=tmp_path / "cache")
    first = fetch_entry(make_entry(ftp_server.url("a.csv"), protocol="ftp"), tmp_path / "r1", options)
    second = fetch_entry(make_entry(ftp_server.url("a.csv"), protocol="ftp"), tmp_path / "r2", options)
    assert not first.from_cache and second.from_cache
    assert second.path.read_bytes() == CSV
