"""Safe extraction: member selection, nested zips, gzip, and refusal of archive attacks."""

from __future__ import annotations

import gzip
import io
import stat
import zipfile
from pathlib import Path

import pytest

from oa_dagster.errors import DownloadError
from oa_dagster.fetch import FetchOptions, unpack


def _zip(path: Path, members: dict[str, bytes], *, symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return path


def _names(files: list[Path], root: Path) -> set[str]:
    return {f.relative_to(root).as_posix() for f in files}


def test_zip_without_compression_is_unpacked_by_its_magic_bytes(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "cache.zip", {"a.csv": b"x,y\n"})
    files = unpack(archive, tmp_path / "out", compression=None, conform_file=None)
    assert _names(files, (tmp_path / "out").resolve()) == {"a.csv"}


def test_conform_file_selects_shapefile_and_sidecars(tmp_path: Path) -> None:
    members = {f"data/parcels.{ext}": b"." for ext in ("shp", "shx", "dbf", "prj", "cpg")}
    members |= {"data/other.shp": b".", "readme.txt": b"."}
    archive = _zip(tmp_path / "cache.zip", members)
    files = unpack(archive, tmp_path / "out", compression="zip", conform_file="DATA/Parcels.shp")
    assert _names(files, (tmp_path / "out").resolve()) == {
        f"data/parcels.{e}" for e in ("shp", "shx", "dbf", "prj", "cpg")
    }


def test_conform_file_without_in_zip_directory_still_matches(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "cache.zip", {"export/2024/points.csv": b"a\n", "export/2024/other.csv": b"b\n"})
    files = unpack(archive, tmp_path / "out", compression="zip", conform_file="points.csv")
    assert [f.name for f in files] == ["points.csv"]


def test_gdb_directories_are_returned(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "cache.zip", {"x/Roads.gdb/a00000001.gdbtable": b".", "x/Roads.gdb/gdb": b"."})
    files = unpack(archive, tmp_path / "out", compression="zip", conform_file="Roads.gdb")
    assert any(f.is_dir() and f.name == "Roads.gdb" for f in files)


def test_nested_zip_is_extracted_in_place(tmp_path: Path) -> None:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr("points.csv", b"a\n")
    outer = _zip(tmp_path / "cache.zip", {"bundle/inner.zip": inner.getvalue()})
    files = unpack(outer, tmp_path / "out", compression="zip", conform_file=None)
    assert [f.name for f in files] == ["points.csv"]
    assert not any(f.suffix == ".zip" for f in files)


def test_gzip_is_decompressed_to_its_inner_name(tmp_path: Path) -> None:
    gz = tmp_path / "cache.csv.gz"
    gz.write_bytes(gzip.compress(b"a,b\n1,2\n"))
    files = unpack(gz, tmp_path / "out", compression="gzip", conform_file=None)
    assert [f.name for f in files] == ["cache.csv"] and files[0].read_bytes() == b"a,b\n1,2\n"


def test_gzip_without_compression_and_without_type_is_named_by_its_bytes(tmp_path: Path) -> None:
    gz = tmp_path / "cache.gz"
    gz.write_bytes(gzip.compress(b'{"type":"FeatureCollection","features":[]}'))
    files = unpack(gz, tmp_path / "out", compression=None, conform_file=None)
    assert [f.name for f in files] == ["cache.json"]


def test_plain_file_is_returned_as_is(tmp_path: Path) -> None:
    plain = tmp_path / "cache.csv"
    plain.write_bytes(b"a\n")
    assert unpack(plain, tmp_path / "out", compression=None, conform_file=None) == [plain]


def test_compression_zip_on_a_non_zip_is_refused(tmp_path: Path) -> None:
    html = tmp_path / "cache.zip"
    html.write_bytes(b"<html>Service unavailable</html>")
    with pytest.raises(DownloadError, match="not a zip archive"):
        unpack(html, tmp_path / "out", compression="zip", conform_file=None)


@pytest.mark.parametrize("member", ["../evil.csv", "a/../../evil.csv", "/etc/evil.csv", "C:/evil.csv", "..\\evil.csv"])
def test_zip_member_outside_workdir_is_refused(tmp_path: Path, member: str) -> None:
    archive = _zip(tmp_path / "cache.zip", {"ok.csv": b"a\n", member: b"pwned"})
    with pytest.raises(DownloadError, match="unsafe archive member path"):
        unpack(archive, tmp_path / "work" / "out", compression="zip", conform_file=None)
    assert not (tmp_path / "evil.csv").exists() and not (tmp_path / "work" / "evil.csv").exists()
    assert not (tmp_path / "work" / "out" / "ok.csv").exists()  # refused whole, before writing anything


def test_zip_symlink_member_is_refused(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "cache.zip", {"a.csv": b"a\n"}, symlinks={"link.csv": "/etc/passwd"})
    with pytest.raises(DownloadError, match="symlink"):
        unpack(archive, tmp_path / "out", compression="zip", conform_file=None)


def test_zip_bomb_is_refused_by_ratio(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "cache.zip", {"bomb.csv": b"\0" * (64 << 20)})
    with pytest.raises(DownloadError, match="decompression bomb"):
        unpack(archive, tmp_path / "out", compression="zip", conform_file=None)


def test_zip_over_the_unpacked_size_cap_is_refused(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "cache.zip", {"a.csv": b"1234567890" * 1000})
    with pytest.raises(DownloadError, match="decompressed size cap"):
        unpack(
            archive,
            tmp_path / "out",
            compression="zip",
            conform_file=None,
            limits=FetchOptions(max_unpacked_bytes=5000),
        )


def test_zip_with_lying_size_header_is_stopped_while_writing(tmp_path: Path) -> None:
    path = _zip(tmp_path / "cache.zip", {"a.csv": b"1234567890" * 1000})
    data = bytearray(path.read_bytes())
    # rewrite the central directory's uncompressed size (offset 24 in the entry) to claim 10 bytes
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = (10).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(DownloadError):
        unpack(
            path, tmp_path / "out", compression="zip", conform_file=None, limits=FetchOptions(max_unpacked_bytes=5000)
        )


def test_gzip_bomb_is_refused(tmp_path: Path) -> None:
    gz = tmp_path / "cache.csv.gz"
    gz.write_bytes(gzip.compress(b"\0" * (64 << 20)))
    with pytest.raises(DownloadError, match="decompression bomb") as caught:
        unpack(gz, tmp_path / "out", compression="gzip", conform_file=None)
    assert caught.value.problem == "Could not download source data"
