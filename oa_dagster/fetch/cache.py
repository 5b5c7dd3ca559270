"""Fingerprints and the local content cache keyed by URL.

The cache lets a re-run skip a download that has not changed: it remembers each URL's validators
(`ETag`, `Last-Modified`, or an FTP size + modification time) next to a copy of the bytes, so the next
request can be conditional. Entries are written with atomic renames so concurrent runs sharing one cache
directory never see half an entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

CHUNK = 1 << 20


def md5_file(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def conditional_headers(etag: object, last_modified: object) -> dict[str, str]:
    """The headers that make a GET conditional on the validators given (none for a missing one)."""
    headers: dict[str, str] = {}
    if etag:
        headers["If-None-Match"] = str(etag)
    if last_modified:
        headers["If-Modified-Since"] = str(last_modified)
    return headers


@dataclass
class CacheEntry:
    """What is known about the last download of one URL; `path` holds its bytes."""

    url: str
    ext: str
    md5: str
    size: int
    etag: str | None = None
    last_modified: str | None = None
    validator: str | None = None  # protocol-specific, e.g. FTP "size mtime"
    path: Path | None = None

    def conditional_headers(self) -> dict[str, str]:
        return conditional_headers(self.etag, self.last_modified)


class ContentCache:
    """A directory of `<sha1(url + headers)>/{meta.json,data}` entries."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _dir(self, url: str, headers: dict[str, str] | None) -> Path:
        key = url + "\n" + json.dumps(sorted((headers or {}).items()))
        digest = hashlib.sha1(key.encode("utf-8")).hexdigest()
        return self.root / digest[:2] / digest

    def get(self, url: str, headers: dict[str, str] | None = None) -> CacheEntry | None:
        folder = self._dir(url, headers)
        try:
            meta = json.loads((folder / "meta.json").read_text("utf-8"))
            entry = CacheEntry(**{k: v for k, v in meta.items() if k != "path"})
        except (OSError, ValueError, TypeError):
            return None
        entry.path = folder / "data"
        if entry.url != url or not entry.path.is_file() or entry.path.stat().st_size != entry.size:
            return None
        return entry

    def put(self, entry: CacheEntry, source: Path, headers: dict[str, str] | None = None) -> None:
        """Store a copy of `source` (hard-linked when possible) with its validators."""
        folder = self._dir(entry.url, headers)
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=".data-")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            tmp.unlink()
            try:
                os.link(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)
            tmp.replace(folder / "data")
            meta = {k: v for k, v in asdict(entry).items() if k != "path"}
            meta_tmp = folder / f".meta-{os.getpid()}.json"
            meta_tmp.write_text(json.dumps(meta), "utf-8")
            meta_tmp.replace(folder / "meta.json")
        finally:
            tmp.unlink(missing_ok=True)

    @staticmethod
    def restore(entry: CacheEntry, target: Path) -> None:
        """Copy the cached bytes to `target` (a copy, so the run may move or delete it freely)."""
        assert entry.path is not None
        shutil.copyfile(entry.path, target)


def open_cache(cache_dir: Path | None) -> ContentCache | None:
    return ContentCache(cache_dir) if cache_dir is not None else None


class SizeCapExceeded(Exception):
    """Raised by `Sink` when a download passes `max_download_bytes`; turned into a DownloadError."""


class Sink:
    """Writes a stream to disk while hashing it, counting it, enforcing the size cap and keeping the head.

    One pass over the bytes gives the file, its md5 fingerprint and the magic bytes for typing. With
    `hash_behind`, each chunk is hashed on a helper thread while it is written (md5 and file writes release
    the GIL): a local file's copy then takes the longer of the two, not their sum, on the run's serial path.
    """

    HEAD = 8192

    def __init__(
        self, path: Path, cap: int, progress: Callable[..., None] | None = None, hash_behind: bool = False
    ) -> None:
        self.path = path
        self.cap = cap
        self.progress = progress
        self.digest = hashlib.md5()
        self.size = 0
        self.head = b""
        self.file = path.open("wb")
        self._hasher = ThreadPoolExecutor(1, thread_name_prefix="sink-md5") if hash_behind else None
        self._hashing: Future[None] | None = None

    def write(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.size += len(chunk)
        if self.size > self.cap:
            raise SizeCapExceeded(f"download exceeds the size cap of {self.cap:,} bytes")
        if len(self.head) < self.HEAD:
            self.head += chunk[: self.HEAD - len(self.head)]
        if self._hasher is None:
            self.digest.update(chunk)
        else:
            self._hashed()  # in order: the previous chunk first
            self._hashing = self._hasher.submit(self.digest.update, bytes(chunk))
        self.file.write(chunk)
        if self.progress is not None:
            self.progress(self.size)

    def _hashed(self) -> None:
        """Wait for the chunk being hashed behind, if any."""
        if self._hashing is not None:
            hashing, self._hashing = self._hashing, None
            hashing.result()

    def _stop_hashing(self) -> None:
        try:
            self._hashed()
        finally:
            if self._hasher is not None:
                self._hasher.shutdown()

    def close(self) -> None:
        try:
            self._stop_hashing()
        finally:
            self.file.close()

    def discard(self) -> None:
        try:
            self._stop_hashing()
        finally:
            self.file.close()
            self.path.unlink(missing_ok=True)

    @property
    def md5(self) -> str:
        self._hashed()
        return self.digest.hexdigest()
