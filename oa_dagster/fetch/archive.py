"""Safe extraction of zip and gzip downloads.

Archives come from thousands of third-party servers, so extraction is defensive: every member path is
checked to stay inside the destination (no absolute paths, no `..`), symlinks are refused, and both the
total unpacked size and each member's compression ratio are capped (zip and gzip bombs). The byte count
is enforced while writing, so a lying zip header does not get past the cap. Each refusal is a
`DownloadError` whose detail names the cause.
"""

from __future__ import annotations

import gzip
import shutil
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from oa_dagster.errors import DownloadError
from oa_dagster.fetch.filetype import suffix_from_magic
from oa_dagster.fetch.options import FetchOptions

SHAPEFILE_SIDECARS = (".shx", ".dbf", ".prj", ".cpg")
MAX_NESTING = 3
BOMB_MIN_BYTES = 16 << 20  # a high ratio on a small member is harmless (e.g. a file of spaces)
CHUNK = 1 << 20


def expands_like_bomb(unpacked: int, packed: int, ratio: float) -> bool:
    """The bomb rule of archive members and `Content-Encoding` alike: past `BOMB_MIN_BYTES`, more than `ratio`x."""
    return unpacked > BOMB_MIN_BYTES and unpacked > ratio * max(packed, 1)


class _Budget:
    """The unpacked bytes allowed for one `unpack` call, shared by nested archives."""

    def __init__(self, limits: FetchOptions) -> None:
        self.left = limits.max_unpacked_bytes
        self.cap = limits.max_unpacked_bytes
        self.ratio = limits.max_unpack_ratio

    def spend(self, n: int, what: str) -> None:
        self.left -= n
        if self.left < 0:
            raise DownloadError(f"decompressed size cap: unpacking {what} passes the cap of {self.cap:,} bytes")

    def check_ratio(self, unpacked: int, packed: int, what: str) -> None:
        if expands_like_bomb(unpacked, packed, self.ratio):
            raise DownloadError(
                f"decompression bomb: {what} expands {packed:,} bytes to more than "
                f"{unpacked:,} (ratio over {self.ratio:.0f})"
            )


def _magic(path: Path) -> str:
    with path.open("rb") as f:
        return suffix_from_magic(f.read(64))


def safe_member_path(name: str, dest: Path) -> Path:
    """The extraction target of an archive member, refusing anything that could land outside `dest`."""
    normalised = name.replace("\\", "/")
    pure = PurePosixPath(normalised)
    if normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":") or ".." in pure.parts:
        raise DownloadError(f"unsafe archive member path: {name!r} would be written outside the work directory")
    target = (dest / pure).resolve()
    root = dest.resolve()
    if target != root and root not in target.parents:
        raise DownloadError(f"unsafe archive member path: {name!r} resolves outside the work directory")
    return target


def _wanted_names(conform_file: str) -> list[str]:
    wanted = conform_file.replace("\\", "/").strip("/").lower()
    names = [wanted]
    if wanted.endswith(".shp"):
        names += [wanted[:-4] + ext for ext in SHAPEFILE_SIDECARS]
    return names


def member_matches(member: str, conform_file: str) -> bool:
    """Spec §3.3 plus leniency: the member path or an enclosing directory ends with `file` (case-insensitive),
    or, when `file` has no match by path, the bare file names are equal."""
    path = member.replace("\\", "/").strip("/").lower()
    for wanted in _wanted_names(conform_file):
        if path == wanted or path.endswith("/" + wanted):
            return True
        if path.startswith(wanted + "/") or f"/{wanted}/" in path:
            return True
        if PurePosixPath(path).name == PurePosixPath(wanted).name:
            return True
    return False


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


# What reading a damaged member raises: a cut or shifted archive sends zipfile seeking before the start of
# the file (OSError) or reading a short header (struct.error); cut data ends the stream (EOFError); damaged
# data fails to inflate (zlib.error) or its CRC (BadZipFile).
_DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, OSError, struct.error, ValueError)


def _damage(exc: BaseException, info: zipfile.ZipInfo, archive_name: str) -> DownloadError:
    member = f"zip member {info.filename!r} in {archive_name}"
    if isinstance(exc, EOFError):
        cause = "its compressed data ends early (truncated archive)"
    elif isinstance(exc, zipfile.BadZipFile) and "CRC" in str(exc):
        cause = "its data fails the CRC check (corrupt or truncated archive)"
    elif isinstance(exc, OSError | struct.error):
        cause = "its data is not where the archive directory says (truncated or damaged archive)"
    else:
        cause = f"its data cannot be read (truncated or corrupt archive): {exc}"
    return DownloadError(f"corrupt {member}: {cause}")


def _member_chunks(archive: zipfile.ZipFile, info: zipfile.ZipInfo, archive_name: str) -> Iterator[bytes]:
    """The member's bytes; any failure to read them is a `DownloadError` naming the member."""
    try:
        src = archive.open(info)
    except (RuntimeError, NotImplementedError) as exc:  # encrypted members, unsupported compression
        raise DownloadError(f"cannot extract zip member {info.filename!r} in {archive_name}: {exc}") from exc
    except _DAMAGED as exc:
        raise _damage(exc, info, archive_name) from exc
    with src:
        while True:
            try:
                chunk = src.read(CHUNK)
            except _DAMAGED as exc:
                raise _damage(exc, info, archive_name) from exc
            if not chunk:
                return
            yield chunk


def _copy_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: _Budget, archive_name: str
) -> None:
    budget.check_ratio(info.file_size, info.compress_size, info.filename)
    written = 0
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as out:
        for chunk in _member_chunks(archive, info, archive_name):
            written += len(chunk)
            budget.spend(len(chunk), info.filename)
            budget.check_ratio(written, info.compress_size, info.filename)
            out.write(chunk)


def _extract_zip(path: Path, dest: Path, conform_file: str | None, budget: _Budget, depth: int) -> list[Path]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DownloadError(f"{path.name} is not a readable zip archive: {exc}") from exc
    with archive:
        infos = archive.infolist()
        for info in infos:  # check every member first: a bad archive is refused whole
            safe_member_path(info.filename, dest)
            if _is_symlink(info):
                raise DownloadError(f"archive member {info.filename!r} is a symlink; symlinks are refused")
        files = [i for i in infos if not i.is_dir()]
        chosen = files
        if conform_file:
            chosen = [
                i for i in files if member_matches(i.filename, conform_file) or i.filename.lower().endswith(".zip")
            ]
            if not any(not i.filename.lower().endswith(".zip") for i in chosen):
                chosen = files  # nothing matched: extract all, so the input selection can list what exists
        declared = sum(i.file_size for i in chosen)
        if declared > budget.left:
            raise DownloadError(
                f"decompressed size cap: {path.name} declares {declared:,} bytes, more than the {budget.cap:,} allowed"
            )
        out: list[Path] = []
        for info in chosen:
            target = safe_member_path(info.filename, dest)
            _copy_member(archive, info, target, budget, path.name)
            out.append(target)
    return _expand_nested(out, conform_file, budget, depth)


def _expand_nested(files: list[Path], conform_file: str | None, budget: _Budget, depth: int) -> list[Path]:
    result: list[Path] = []
    for file in files:
        if file.suffix.lower() == ".zip" and _magic(file) == ".zip":
            if depth >= MAX_NESTING:
                raise DownloadError(f"zip archives nested more than {MAX_NESTING} deep ({file.name})")
            inner = file.parent / file.stem if not (file.parent / file.stem).exists() else file.parent
            inner.mkdir(exist_ok=True)
            result += _extract_zip(file, inner, conform_file, budget, depth + 1)
            file.unlink()
        else:
            result.append(file)
    return result


def _gunzip(path: Path, dest: Path, budget: _Budget) -> Path:
    name = path.name[:-3] if path.name.lower().endswith(".gz") else path.name + ".out"
    target = safe_member_path(name or "data", dest)
    packed = path.stat().st_size
    written = 0
    try:
        with gzip.open(path, "rb") as src, target.open("wb") as out:
            while chunk := src.read(CHUNK):
                written += len(chunk)
                budget.spend(len(chunk), path.name)
                budget.check_ratio(written, packed, path.name)
                out.write(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        target.unlink(missing_ok=True)
        raise DownloadError(f"{path.name} is not a readable gzip file: {exc}") from exc
    if not PurePosixPath(target.name).suffix:  # `cache.gz` of an unknown type: name it by its bytes
        typed = target.with_name(target.name + _magic(target))
        target.replace(typed)
        target = typed
    return target


def _with_gdb_dirs(files: list[Path], dest: Path) -> list[Path]:
    """Extracted files plus each `.gdb` directory (a file geodatabase is read as a directory)."""
    gdbs: dict[Path, None] = {}
    dest = dest.resolve()
    for file in files:
        for parent in file.parents:
            if parent == dest or dest not in parent.parents:
                break
            if parent.suffix.lower() == ".gdb":
                gdbs.setdefault(parent, None)
    return files + list(gdbs)


def unpack(
    path: Path, dest: Path, *, compression: str | None, conform_file: str | None, limits: FetchOptions | None = None
) -> list[Path]:
    """Extract a zip or gzip download into `dest` and list its files (+ `.gdb` dirs); else `[path]`.

    Without `compression` the bytes decide, so `.zip`/`.gz` URLs that forgot `compression` still work.
    """
    budget = _Budget(limits or FetchOptions())
    kind = (compression or "").lower()
    magic = _magic(path)
    if kind == "zip" and magic != ".zip":
        raise DownloadError(f"compression is zip but the download is not a zip archive (looks like {magic})")
    if kind not in ("zip", "gzip", "gz", ""):
        raise DownloadError(f"unknown compression {compression!r}")
    dest.mkdir(parents=True, exist_ok=True)
    if magic == ".zip" and kind in ("zip", ""):
        return _with_gdb_dirs(_extract_zip(path, dest, conform_file, budget, 0), dest)
    if magic == ".gz":
        inner = _gunzip(path, dest, budget)
        if _magic(inner) == ".zip":
            return _with_gdb_dirs(_extract_zip(inner, dest / inner.stem, conform_file, budget, 1), dest)
        return [inner]
    if kind in ("gzip", "gz") and path.name.lower().endswith(".gz"):
        # already decoded in transit (Content-Encoding): just drop the .gz from the name
        plain = dest / path.name[:-3]
        shutil.copyfile(path, plain)
        return [plain]
    return [path]
