"""Which CI jobs' folders (`jobs/<key>/`) the daily cleanup may remove, and removing them (no Dagster here).

A job's folder holds its plan, outputs and result; the pull request's results comment links into it. So only a
job nobody looks at any more goes, once `retention_days` have passed since it last mattered:
- superseded by a newer head (`superseded.json`): since its newest file;
- of a pull request that is closed (its last opening or closing delivery closed it): since the later of its
  newest file and the closing;
- a push job that finished (`result.json`; pushes get a status, no comment): since its newest file.
An open pull request's current job stays however old, and nothing outside `jobs/` is ever touched: production
outputs, pointers, catalogs and set history are not CI's.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from oa_dagster.platform.store import LocalStore, OutputStore, StoredObject

DEFAULT_RETENTION_DAYS = 14.0
SUPERSEDED = "superseded.json"
RESULT = "result.json"
_PR_JOB = re.compile(r"^pr-(?P<number>[0-9]+)-[0-9a-f]+$")


@dataclass(frozen=True)
class ExpiredJob:
    key: str
    why: str  # "superseded", "pull request closed", "push job finished"
    objects: list[StoredObject]

    @property
    def size(self) -> int:
        return sum(item.size for item in self.objects)


def job_folders(store: OutputStore) -> dict[str, list[StoredObject]]:
    """Every job's objects, by job key."""
    folders: dict[str, list[StoredObject]] = defaultdict(list)
    for item in store.list_objects("jobs/"):
        parts = item.key.split("/", 2)
        if len(parts) == 3:
            folders[parts[1]].append(item)
    return folders


def expired_jobs(store: OutputStore, *, older_than: float, closed: Mapping[int, float]) -> list[ExpiredJob]:
    """The jobs whose folder may go: see the module docstring. `older_than` and `closed` (pull request number ->
    when it was closed) are seconds since the epoch."""
    expired = []
    for key, objects in sorted(job_folders(store).items()):
        names = {item.key.split("/", 2)[2] for item in objects}
        newest = max(item.modified for item in objects)
        pull = _PR_JOB.match(key)
        if SUPERSEDED in names:
            why, since = "superseded", newest
        elif pull and int(pull["number"]) in closed:
            why, since = "pull request closed", max(newest, closed[int(pull["number"])])
        elif key.startswith("push-") and RESULT in names:
            why, since = "push job finished", newest
        else:
            continue  # an open pull request's job, or one still running
        if since < older_than:
            expired.append(ExpiredJob(key, why, objects))
    return expired


def remove_job_folder(store: OutputStore, job: ExpiredJob) -> None:
    """Delete the job's objects (its result last: a half-removed folder still says how the job ended)."""
    for item in sorted(job.objects, key=lambda item: item.key.endswith("/" + RESULT)):
        store.delete(item.key)
    if isinstance(store, LocalStore):  # folders are a local store's own: S3 has none to leave behind
        for folder in sorted({item.key.rsplit("/", 1)[0] for item in job.objects}, key=len, reverse=True):
            store.prune_empty(folder)
