"""Removing what killed runs leave behind: store debris and stale work folders (no Dagster here).

A run killed mid-way (a worker killed, a machine restarted, a run over its time limit) can leave:
- in the store, a file half written (`.tmp-*` on a local store; an unfinished multipart upload on S3, invisible
  but billed) and a run folder without its `manifest.json` (files of a publish that never finished);
- in the work root (`ProcessingSettings.work_root()`, `OA_WORK_DIR`), an `oa-run-<pid>-*` folder with the
  download and conform scratch files of the entry in hand: often the largest leftover.

Readers never see any of it (they follow pointers to complete runs), so it only costs space. Everything is
judged by age: nothing changed within the grace period is touched, since a run may be writing it right now;
nor is a run folder a `latest/` or `held/` pointer names, nor the work folder of a process still alive.
Dagster runs left in STARTED by a killed process are the platform's side (`oa_dagster/jobs/cleanup.py`).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import store_layout as layout
from .store import LocalStore, OutputStore, StoredObject, get_json

DEFAULT_GRACE_HOURS = 24.0  # longer than any run writes one folder (set runs stop at 6 h) with margin
WORK_FOLDER_PREFIX = "oa-run-"  # `oa-run-<pid>-<random>`: what the layer runs create under the work root
# a run folder: [jobs/<job key>/]runs/<layer>/<source key>/<name>/<run id>
RUN_FOLDER = re.compile(r"^(?P<root>(?:jobs/[^/]+/)?)runs/(?P<layer>[^/]+)/(?P<partition>.+/[^/]+)/[^/]+$")


@dataclass(frozen=True)
class Removal:
    kind: str  # "temp file" | "unfinished upload" | "incomplete run" | "work folder" | "stuck run"
    where: str  # store key, run folder, path or run id
    size: int = 0


@dataclass
class CleanupReport:
    dry_run: bool
    grace_seconds: float
    removed: list[Removal] = field(default_factory=list)
    kept_recent: int = 0  # debris younger than the grace period (may be in use): left for a later cleanup
    kept_in_use: int = 0  # work folders of live processes, run folders a pointer names

    def add(self, kind: str, where: str, size: int = 0) -> None:
        self.removed.append(Removal(kind, where, size))

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for item in self.removed:
            counts[item.kind] += 1
        return dict(counts)

    @property
    def bytes_freed(self) -> int:
        return sum(item.size for item in self.removed)

    def summary(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        parts = [f"{n} {kind}{'s' if n != 1 else ''}" for kind, n in sorted(self.counts().items())]
        return (
            f"cleanup {verb} {', '.join(parts) or 'nothing'}; {_human(self.bytes_freed)} freed"
            f"{' (dry run)' if self.dry_run else ''}; left {self.kept_recent} younger than "
            f"{self.grace_seconds / 3600:g} h, {self.kept_in_use} in use"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "grace_hours": self.grace_seconds / 3600,
            "counts": self.counts(),
            "bytes_freed": self.bytes_freed,
            "kept_recent": self.kept_recent,
            "kept_in_use": self.kept_in_use,
            "removed": [vars(item) for item in self.removed],
        }


def _human(size: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1000
    return f"{size:,.1f} TB"


def _run_folders(store: OutputStore) -> dict[str, list[StoredObject]]:
    """Run folders (`[jobs/<job>/]runs/<layer>/<partition key>/<run id>/`) with their objects."""
    folders: dict[str, list[StoredObject]] = defaultdict(list)
    for prefix in ("runs/", "jobs/"):
        for item in store.list_objects(prefix):
            folder = item.key.rsplit("/", 1)[0]
            if RUN_FOLDER.match(folder):
                folders[folder].append(item)
    return folders


def _named_by_a_pointer(store: OutputStore, folder: str) -> bool:
    match = RUN_FOLDER.match(folder)
    assert match is not None
    root, layer, partition_key = match["root"], match["layer"], match["partition"]
    for pointer_key in (layout.latest_key(layer, partition_key), layout.held_key(layer, partition_key)):
        pointer = get_json(store, root + pointer_key)
        if pointer and pointer.get("prefix") == folder:
            return True
    return False


def clean_store(store: OutputStore, report: CleanupReport, *, now: float) -> None:
    """Half-written files and incomplete run folders older than the grace period."""
    old = now - report.grace_seconds
    for item in list(store.in_progress()):
        if item.modified > old:
            report.kept_recent += 1
            continue
        if not report.dry_run:
            store.discard_in_progress(item)
        report.add("unfinished upload" if item.upload_id else "temp file", item.key, item.size)
    for folder, items in sorted(_run_folders(store).items()):
        if any(item.key.endswith("/" + layout.MANIFEST) for item in items):
            continue  # complete
        if max(item.modified for item in items) > old:
            report.kept_recent += 1  # maybe being published right now
            continue
        if _named_by_a_pointer(store, folder):
            report.kept_in_use += 1
            continue
        if not report.dry_run:
            for item in items:
                store.delete(item.key)
            if isinstance(store, LocalStore):
                store.prune_empty(folder)
        report.add("incomplete run", folder, sum(item.size for item in items))


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine (it may be another program that reused the number)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _owner_pid(name: str) -> int | None:
    head = name[len(WORK_FOLDER_PREFIX) :].split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _newest_change_and_size(folder: Path) -> tuple[float, int]:
    newest, size = folder.lstat().st_mtime, 0
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            try:
                stat = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            newest = max(newest, stat.st_mtime)
            size += stat.st_size if name in filenames else 0
    return newest, size


def clean_work_root(root: Path, report: CleanupReport, *, now: float) -> None:
    """`oa-run-*` folders under the work root whose process is gone and that nothing changed for the grace period.

    A download in progress keeps changing its file, so a folder is judged by the newest change inside it.
    """
    if not root.is_dir():
        return
    for folder in sorted(root.iterdir()):
        if not folder.name.startswith(WORK_FOLDER_PREFIX) or folder.is_symlink() or not folder.is_dir():
            continue
        pid = _owner_pid(folder.name)
        if pid is not None and pid_alive(pid):
            report.kept_in_use += 1
            continue
        newest, size = _newest_change_and_size(folder)
        if newest > now - report.grace_seconds:
            report.kept_recent += 1
            continue
        if not report.dry_run:
            shutil.rmtree(folder, ignore_errors=True)
        report.add("work folder", str(folder), size)


def cleanup(
    store: OutputStore,
    work_roots: Iterable[Path],
    *,
    grace_hours: float = DEFAULT_GRACE_HOURS,
    dry_run: bool = False,
    now: float | None = None,
) -> CleanupReport:
    """Clean the store and the work roots; what `cleanup_job` and `oa-dagster cleanup` both run."""
    if grace_hours < 0:
        raise ValueError(f"the grace period must be 0 hours or more, not {grace_hours}")
    report = CleanupReport(dry_run=dry_run, grace_seconds=grace_hours * 3600)
    moment = time.time() if now is None else now
    clean_store(store, report, now=moment)
    for root in work_roots:
        clean_work_root(root, report, now=moment)
    return report
