"""A zip (deflate, zip64) written on a background thread, fed through a small bounded queue.

zlib releases the GIL while it compresses, so the thread deflates one block while the caller parses the next (and
writes the CSV and GeoParquet). The queue holds a few blocks, so memory stays flat; an error on the thread is raised
in the caller at its next call.
"""

from __future__ import annotations

import queue
import threading
import time
import unicodedata
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

QUEUE_BLOCKS = 4
_STOP = object()


def check_member_name(name: str) -> str:
    """`name` if it is a relative path every unzip tool keeps inside its target folder; else `ValueError`. Names
    are made of source keys and entry names, which are checked at load: this is the last line if a rule slips."""
    segments = name.split("/")
    problem = (
        "a backslash" if "\\" in name
        else "a control character" if any(unicodedata.category(c) == "Cc" for c in name)
        else "an absolute path" if name.startswith("/") or (len(name) > 1 and name[1] == ":")
        else "an empty, '.' or '..' segment" if any(s in ("", ".", "..") for s in segments)
        else None
    )  # fmt: skip
    if problem is not None:
        raise ValueError(f"zip member name {name!r} refused: it has {problem}")
    return name


class ZipStream:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip = zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, allowZip64=True)  # zlib's default level, 6
        self._queue: queue.Queue[Any] = queue.Queue(QUEUE_BLOCKS)
        self._error: BaseException | None = None
        self._member: IO[bytes] | None = None
        self._thread = threading.Thread(target=self._run, name="oa-collection-zip", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is _STOP:
                return
            if self._error is None:
                try:
                    job()
                except BaseException as exc:  # noqa: BLE001 - handed to the caller, who raises it
                    self._error = exc

    def _submit(self, job: Callable[[], None]) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(job)

    def open_member(self, name: str) -> None:
        # dated now: a bare name would be dated 1980
        info = zipfile.ZipInfo(check_member_name(name), date_time=time.localtime()[:6])
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16

        def job() -> None:
            self._member = self._zip.open(info, "w", force_zip64=True)

        self._submit(job)

    def write(self, data: bytes | memoryview) -> None:
        def job() -> None:
            assert self._member is not None
            self._member.write(data)

        self._submit(job)

    def close_member(self) -> None:
        def job() -> None:
            if self._member is not None:
                self._member.close()
                self._member = None

        self._submit(job)

    def add_bytes(self, name: str, data: bytes) -> None:
        check_member_name(name)
        self._submit(lambda: self._zip.writestr(name, data))

    def add_file(self, name: str, path: Path, *, remove: bool = False) -> None:
        check_member_name(name)

        def job() -> None:
            self._zip.write(path, name)
            if remove:
                path.unlink(missing_ok=True)

        self._submit(job)

    def close(self) -> None:
        """Wait for the thread, then write the central directory; raises the thread's error if it had one."""
        self._queue.put(_STOP)
        self._thread.join()
        if self._error is not None:
            self._zip.close()
            raise self._error
        self._zip.close()

    def abort(self) -> None:
        """Stop the thread and close the file, keeping the first error (a failed build throws the zip away)."""
        self._queue.put(_STOP)
        self._thread.join()
        try:
            if self._member is not None:
                self._member.close()
            self._zip.close()
        except Exception:  # noqa: BLE001 - the build already failed; its error is the one to report
            pass
