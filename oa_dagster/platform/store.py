"""The output store: where runs, latest-good pointers, catalogs and set summaries live (local dir or S3).

Plain code, no Dagster: the assets, the CLI's `download` and the tests all use the same two classes. Keys
are `/`-separated and identical on both backends (the layout is in `store_layout.py`). Every write is atomic per
key (a temp file renamed on disk; a single PUT on S3), and a run becomes visible to readers only through
its `manifest.json` and the pointers written after it, so a crash never leaves a half output as latest.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .content_types import content_type as guess_content_type
from .store_errors import OutputStoreUnavailable, s3_unavailable_reason

Progress = Callable[[str, int, "int | None"], None]
WRITING_PREFIX = ".tmp-"  # a local file being written: renamed into place when complete, never listed or served


@dataclass(frozen=True)
class StoredObject:
    """A key with its size and last change (what the cleanup needs to judge debris by age)."""

    key: str
    size: int
    modified: float  # seconds since the epoch
    upload_id: str | None = None  # S3: an unfinished multipart upload of `key`


class OutputStore(Protocol):
    """What every store offers; keys never start with `/`.

    Writes take the object's `content_type` (default: from the key, `content_types.py`) and `cache_control`,
    which an S3 bucket serves with it; a local directory has no such metadata and ignores them. `copy` and
    `rename` stay inside the store (no bytes through this process on S3), keeping the source's type.
    """

    def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> None: ...
    def put_bytes(
        self, key: str, data: bytes, *, content_type: str | None = None, cache_control: str | None = None
    ) -> None: ...
    def copy(self, source: str, target: str) -> None: ...
    def rename(self, source: str, target: str) -> None: ...
    def get_bytes(self, key: str) -> bytes | None: ...
    def download(self, key: str, dest: Path, progress: Progress | None = None) -> None: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str) -> Iterator[str]: ...
    def delete(self, key: str) -> None: ...
    def list_objects(self, prefix: str) -> Iterator[StoredObject]: ...
    def in_progress(self) -> Iterator[StoredObject]: ...  # half-written files (what a killed write leaves)
    def discard_in_progress(self, item: StoredObject) -> None: ...
    def url(self, key: str) -> str: ...
    def describe(self) -> str: ...


def put_json(store: OutputStore, key: str, value: Any) -> None:
    store.put_bytes(key, (json.dumps(value, indent=1, ensure_ascii=False, sort_keys=True) + "\n").encode())


def get_json(store: OutputStore, key: str) -> Any | None:
    raw = store.get_bytes(key)
    return None if raw is None else json.loads(raw)


def check_key(key: str) -> str:
    """Refuse keys that could leave the store, or that name one object on disk and another on S3.

    `..`, a leading `/`, empty or `.` segments and NUL bytes are all refused.
    """
    parts = key.split("/")
    if not key or "\x00" in key or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"bad key {key!r}: empty, absolute, or with an empty, '.' or '..' segment")
    return key


class LocalStore:
    """A directory; writes go to a temp file in the same directory and are renamed into place."""

    def __init__(self, root: Path | str, *, base_url: str | None = None) -> None:
        self.root = Path(root).resolve()
        self.base_url = base_url.rstrip("/") if base_url else None

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _atomic(self, key: str, write: Callable[[Path], None]) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=WRITING_PREFIX, dir=target.parent)
        os.close(fd)
        try:
            write(Path(tmp))
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> None:
        self._atomic(key, lambda tmp: shutil.copyfile(path, tmp))

    def put_bytes(
        self, key: str, data: bytes, *, content_type: str | None = None, cache_control: str | None = None
    ) -> None:
        self._atomic(key, lambda tmp: tmp.write_bytes(data))

    def copy(self, source: str, target: str) -> None:
        self.put_file(target, self.path(source))

    def rename(self, source: str, target: str) -> None:
        """One `os.replace`: readers see the old file or the new one, never a part."""
        destination = self.path(target)
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path(source), destination)

    def get_bytes(self, key: str) -> bytes | None:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            return None

    def download(self, key: str, dest: Path, progress: Progress | None = None) -> None:
        source = self.path(key)
        total = source.stat().st_size
        shutil.copyfile(source, dest)
        if progress:
            progress("download", total, total)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def list(self, prefix: str) -> Iterator[str]:
        """Keys starting with `prefix`; a prefix ending in `/` is a folder, and a missing one lists nothing (not its
        parent: for `collections/` before any build that would walk the whole store)."""
        base = self.root / prefix
        if prefix.endswith("/") and not base.is_dir():
            return
        start = base if base.is_dir() else base.parent
        if not start.is_dir():
            return
        for path in sorted(start.rglob("*")):
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and key.startswith(prefix) and not path.name.startswith(WRITING_PREFIX):
                yield key

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def list_objects(self, prefix: str) -> Iterator[StoredObject]:
        for key in self.list(prefix):
            try:
                stat = self.path(key).stat()
            except FileNotFoundError:  # removed since listed
                continue
            yield StoredObject(key, stat.st_size, stat.st_mtime)

    def in_progress(self) -> Iterator[StoredObject]:
        """Files being written (`.tmp-*`), or left half written by a process that was killed."""
        for path in sorted(self.root.rglob(WRITING_PREFIX + "*")):
            try:
                stat = path.stat()
            except FileNotFoundError:  # renamed into place since listed
                continue
            if path.is_file():
                yield StoredObject(path.relative_to(self.root).as_posix(), stat.st_size, stat.st_mtime)

    def discard_in_progress(self, item: StoredObject) -> None:
        (self.root / item.key).unlink(missing_ok=True)

    def prune_empty(self, prefix: str) -> None:
        """Remove the folder of `prefix` and its parents while they are empty (never the root)."""
        folder = self.path(prefix)
        while folder != self.root and self.root in folder.parents:
            try:
                folder.rmdir()  # only ever removes an empty folder: a concurrent writer's is never lost
            except OSError:
                return
            folder = folder.parent

    def url(self, key: str) -> str:
        if self.base_url:
            return f"{self.base_url}/{key}"
        return self.path(key).as_uri()

    def describe(self) -> str:
        return str(self.root)


class S3Store:
    """A bucket (and prefix) on any S3-compatible endpoint, through a boto3 client.

    `public_url` (a public bucket or CDN base) or `download_url` (the webhook app's `/download/<key>`
    redirect to a fresh presigned URL) make the URLs in metadata stable; without either, `url()` gives
    an `s3://` URI, since presigned URLs expire within 7 days and metadata lives forever.
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str = "",
        *,
        public_url: str | None = None,
        download_url: str | None = None,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.public_url = public_url.rstrip("/") if public_url else None
        self.download_url = download_url.rstrip("/") if download_url else None

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    @contextmanager
    def _calling(self, what: str, key: str) -> Iterator[None]:
        """An outage that outlasted the client's retries becomes `OutputStoreUnavailable` naming what and where."""
        try:
            yield
        except Exception as exc:
            reason = s3_unavailable_reason(exc)
            if reason is None:
                raise
            raise OutputStoreUnavailable(
                f"S3 unavailable: {what} s3://{self.bucket}/{self.prefix}{key}: {reason}"
            ) from exc

    def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> None:
        """boto3's managed upload: one PUT, or a multipart upload for big files (invisible until complete)."""
        extra = {"ContentType": content_type or guess_content_type(key)}
        with self._calling("writing", key):
            self.client.upload_file(str(path), self.bucket, self._key(key), ExtraArgs=extra)

    def put_bytes(
        self, key: str, data: bytes, *, content_type: str | None = None, cache_control: str | None = None
    ) -> None:
        extra = {"CacheControl": cache_control} if cache_control else {}
        with self._calling("writing", key):
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=data,
                ContentType=content_type or guess_content_type(key),
                **extra,
            )

    def copy(self, source: str, target: str) -> None:
        """boto3's managed copy, server-side (multipart for big objects); the source's type and headers are kept."""
        with self._calling(f"copying {source} to", target):
            self.client.copy({"Bucket": self.bucket, "Key": self._key(source)}, self.bucket, self._key(target))

    def rename(self, source: str, target: str) -> None:
        """S3 has no rename: a server-side copy (atomic for readers of `target`), then the source is deleted."""
        self.copy(source, target)
        self.delete(source)

    def get_bytes(self, key: str) -> bytes | None:
        with self._calling("reading", key):
            try:
                return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
            except self.client.exceptions.NoSuchKey:
                return None

    def download(self, key: str, dest: Path, progress: Progress | None = None) -> None:
        with self._calling("reading", key):
            total = self.client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"]
        done = 0

        def callback(chunk: int) -> None:
            nonlocal done
            done += chunk
            if progress:
                progress("download", done, total)

        with self._calling("downloading", key):
            self.client.download_file(self.bucket, self._key(key), str(dest), Callback=callback)

    def exists(self, key: str) -> bool:
        with self._calling("looking up", key):
            try:
                self.client.head_object(Bucket=self.bucket, Key=self._key(key))
                return True
            except self.client.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return False
                raise  # denied, throttled, bad credentials: not the same as "not there"

    def _pages(self, operation: str, prefix: str) -> Iterator[dict[str, Any]]:
        with self._calling("listing", prefix or "(everything)"):
            yield from self.client.get_paginator(operation).paginate(Bucket=self.bucket, Prefix=self.prefix + prefix)

    def list(self, prefix: str) -> Iterator[str]:
        for page in self._pages("list_objects_v2", prefix):
            for item in page.get("Contents", []):
                yield item["Key"][len(self.prefix) :]

    def delete(self, key: str) -> None:
        with self._calling("deleting", key):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def list_objects(self, prefix: str) -> Iterator[StoredObject]:
        for page in self._pages("list_objects_v2", prefix):
            for item in page.get("Contents", []):
                yield StoredObject(item["Key"][len(self.prefix) :], int(item["Size"]), item["LastModified"].timestamp())

    def in_progress(self) -> Iterator[StoredObject]:
        """Unfinished multipart uploads (large files): invisible to readers, but billed until aborted."""
        for page in self._pages("list_multipart_uploads", ""):
            for upload in page.get("Uploads", []):
                with self._calling("listing the parts of", upload["Key"]):
                    parts = self.client.list_parts(Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                size = sum(int(part["Size"]) for part in parts.get("Parts", []))
                yield StoredObject(
                    upload["Key"][len(self.prefix) :],
                    size,
                    upload["Initiated"].timestamp(),
                    upload_id=upload["UploadId"],
                )

    def discard_in_progress(self, item: StoredObject) -> None:
        with self._calling("aborting the upload of", item.key):
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.prefix + item.key, UploadId=item.upload_id)

    def url(self, key: str) -> str:
        if self.public_url:
            return f"{self.public_url}/{self._key(key)}"
        if self.download_url:
            return f"{self.download_url}/{key}"
        return f"s3://{self.bucket}/{self._key(key)}"

    def presigned_url(self, key: str, expires: int = 3600) -> str:
        """A fresh, expiring link; what the webhook app's `/download/<key>` redirects to."""
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._key(key)}, ExpiresIn=expires
        )

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"
