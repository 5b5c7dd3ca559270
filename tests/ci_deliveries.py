"""GitHub webhook deliveries as GitHub sends them (the fields the receiver and the CI sensor read), signed and
posted over real HTTP to a running web app: shared by the receiver's tests and the CI scenarios."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import requests

from oa_dagster.webhook.deliveries import DeliveryStore
from oa_dagster.webhook.signatures import sign

SECRET = "s3cret-for-tests"
REPO = "openaddresses/openaddresses"
HEAD, BASE, BEFORE = "a" * 40, "b" * 40, "c" * 40
DEFAULT_BRANCH = "master"


def pr_payload(
    action: str = "opened", number: int = 42, head: str = HEAD, base: str = BASE, author: str = "someone"
) -> dict[str, Any]:
    return {
        "action": action,
        "number": number,
        "pull_request": {
            "number": number,
            "merged": False,
            "user": {"login": author},
            "head": {"sha": head, "ref": "add-berkeley", "repo": {"full_name": f"{author}/openaddresses"}},
            "base": {"sha": base, "ref": DEFAULT_BRANCH, "repo": {"full_name": REPO}},
        },
        "repository": {"full_name": REPO, "name": "openaddresses", "default_branch": DEFAULT_BRANCH},
        "sender": {"login": author},
    }


def push_payload(
    deleted: bool = False, *, ref: str = "refs/heads/add-berkeley", before: str = BEFORE, after: str = HEAD
) -> dict[str, Any]:
    return {
        "ref": ref,
        "before": before,
        "after": "0" * 40 if deleted else after,
        "deleted": deleted,
        "created": before.strip("0") == "",
        "forced": False,
        "commits": [],
        "head_commit": None,
        "repository": {"full_name": REPO, "default_branch": DEFAULT_BRANCH},
        "sender": {"login": "someone"},
    }


def comment_payload(
    body: str = "re-run this, please",
    on_pr: bool = True,
    *,
    number: int = 42,
    author: str = "maintainer",
    association: str = "MEMBER",
) -> dict[str, Any]:
    issue: dict[str, Any] = {"number": number, "title": "Add Berkeley", "user": {"login": "someone"}}
    if on_pr:
        issue["pull_request"] = {"url": f"https://api.github.com/repos/{REPO}/pulls/{number}"}
    return {
        "action": "created",
        "issue": issue,
        "repository": {"full_name": REPO},
        "sender": {"login": author},
        "comment": {"body": body, "user": {"login": author}, "author_association": association},
    }


@dataclass
class Receiver:
    """A running web app's `/hook`, and the deliveries store it writes (None when it has none)."""

    base: str
    store: DeliveryStore | None

    def post(
        self,
        event: str | None,
        body: bytes | dict[str, Any],
        *,
        delivery: str | None = None,
        secret: str | None = SECRET,
        signature: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        """A delivery as GitHub sends it; `delivery=None` makes a new delivery id, `secret=None` leaves it unsigned."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = {
            "Content-Type": "application/json",
            "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "User-Agent": "GitHub-Hookshot/test",
        }
        if event is not None:
            sent["X-GitHub-Event"] = event
        if signature is not None or secret is not None:
            sent["X-Hub-Signature-256"] = signature or sign(secret or "", raw)
        return requests.post(f"{self.base}/hook", data=raw, headers={**sent, **(headers or {})}, timeout=30)
