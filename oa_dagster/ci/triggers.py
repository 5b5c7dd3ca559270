"""Which webhook deliveries start CI work, and of what kind: the rules of the CI sensor, without Dagster.

- `pull_request` opened, synchronize, reopened or ready_for_review: a job for the head commit (closed: nothing).
- `push` to a branch: a job for the pushed commit; to the default branch: the production entries it changes
  are run instead (the catalog refreshed at that commit); tags and branch deletions: nothing.
- `issue_comment` created on a pull request asking "re-run this, please" (any case, anywhere in the comment),
  from the pull request's author or someone with write access: a forced re-run of its head. Edited comments and
  our own results comment (which quotes contributor text) never count, so no comment can loop re-runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .github_api import RESULTS_MARKER

PR_ACTIONS = frozenset({"opened", "synchronize", "reopened", "ready_for_review"})
RERUN_PHRASE = re.compile(r"re-?run\s+this,?\s+please", re.IGNORECASE)
WRITE_ASSOCIATIONS = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})
BRANCH_PREFIX = "refs/heads/"
NULL_SHA = "0" * 40


def is_rerun_request(body: str | None, action: str | None = "created") -> bool:
    """Whether a new comment asks for a re-run: "re-run this, please" in any case (also "rerun this please"), not
    an edit, and not our results comment (it may quote a contributor's text asking for one)."""
    if action != "created" or not body or RESULTS_MARKER in body:
        return False
    return bool(RERUN_PHRASE.search(body))


def may_request_rerun(association: str | None, commenter: str | None, pr_author: str | None) -> bool:
    """The pull request's author, or someone with write access to the repository (GitHub's association)."""
    if (association or "").upper() in WRITE_ASSOCIATIONS:
        return True
    return bool(commenter and pr_author and commenter.lower() == pr_author.lower())


@dataclass(frozen=True)
class PushTarget:
    """What a push asks for: `kind` is "branch" (a CI job), "default" (production entries) or "ignored"."""

    kind: str
    branch: str | None = None
    reason: str = ""


def push_target(ref: str | None, after: str | None, deleted: bool | None, default_branch: str | None) -> PushTarget:
    if not ref or not ref.startswith(BRANCH_PREFIX):
        return PushTarget("ignored", reason=f"push of {ref!r}, not a branch")
    branch = ref[len(BRANCH_PREFIX) :]
    if deleted or not after or after.strip("0") == "":
        return PushTarget("ignored", branch, f"branch {branch} deleted")
    if default_branch and branch == default_branch:
        return PushTarget("default", branch)
    return PushTarget("branch", branch)


def is_null_sha(sha: str | None) -> bool:
    """A push's `before` for a new branch (no previous commit)."""
    return not sha or sha.strip("0") == ""
