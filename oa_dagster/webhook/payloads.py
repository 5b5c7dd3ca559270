"""What the CI sensor needs from each GitHub event, taken from a verified payload.

Payloads are GitHub's, but shapes change and hooks get misconfigured: every field is checked (type, length,
hex for commit ids) and a bad one is a `PayloadError` naming its JSON path, which the receiver answers with 400,
never a 500. Strings are made storable everywhere (Postgres text refuses NUL and unpaired surrogates).
The raw payload is stored too, so a field not extracted here can still be read later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .deliveries import DeliveryFields

# The events and actions the CI sensor acts on; other actions of these events (labeled, assigned, deleted...)
# are answered 202 and not stored. `None`: every action.
HANDLED: dict[str, frozenset[str] | None] = {
    "pull_request": frozenset({"opened", "synchronize", "reopened", "ready_for_review", "closed"}),
    "push": None,
    "issue_comment": frozenset({"created", "edited"}),
    "ping": None,
}
SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")  # SHA-1 or SHA-256 object names, as GitHub writes them
MAX_NAME = 255  # repository full names (owner 39 + name 100), logins
MAX_WORD = 64  # actions, author associations
MAX_REF = 1024


class PayloadError(ValueError):
    """A payload field is missing or of the wrong shape; the message names its JSON path."""


@dataclass(frozen=True)
class Ignored:
    """A verified delivery the CI sensor has no use for; `reason` is returned to GitHub (its delivery log)."""

    reason: str


def _storable(text: str) -> str:
    """NUL and unpaired surrogates (`"\\u0000"`, `"\\ud800"` in JSON) replaced, so any database takes the text."""
    text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _get(payload: dict[str, Any], path: str, *, required: bool) -> Any:
    node: Any = payload
    walked: list[str] = []
    for part in path.split("."):
        if not isinstance(node, dict):
            raise PayloadError(f"{'.'.join(walked)}: expected an object, got {type(node).__name__}")
        walked.append(part)
        node = node.get(part)
        if node is None:
            if required:
                raise PayloadError(f"{path}: missing")
            return None
    return node


def _text(payload: dict[str, Any], path: str, *, max_len: int | None = MAX_NAME, required: bool = True) -> str | None:
    value = _get(payload, path, required=required)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadError(f"{path}: expected a string, got {type(value).__name__}")
    if max_len is not None and len(value) > max_len:
        raise PayloadError(f"{path}: {len(value):,} characters, over the limit of {max_len:,}")
    return _storable(value)


def _sha(payload: dict[str, Any], path: str, *, required: bool = True) -> str | None:
    value = _get(payload, path, required=required)
    if value is None:
        return None
    if not isinstance(value, str) or not SHA.fullmatch(value):
        raise PayloadError(f"{path}: expected a commit id (40 or 64 lowercase hex digits), got {value!r:.80}")
    return value


def _number(payload: dict[str, Any], path: str) -> int:
    value = _get(payload, path, required=True)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**31:
        raise PayloadError(f"{path}: expected a positive number, got {value!r:.80}")
    return value


def _flag(payload: dict[str, Any], path: str, *, required: bool = True) -> bool | None:
    value = _get(payload, path, required=required)
    if value is not None and not isinstance(value, bool):
        raise PayloadError(f"{path}: expected true or false, got {value!r:.80}")
    return value


def _pull_request(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "pr_number": _number(payload, "number"),
        "head_sha": _sha(payload, "pull_request.head.sha"),
        "ref": _text(payload, "pull_request.head.ref", max_len=MAX_REF, required=False),
        "head_repository": _text(payload, "pull_request.head.repo.full_name", required=False),  # None: fork gone
        "base_sha": _sha(payload, "pull_request.base.sha"),
        "merged": _flag(payload, "pull_request.merged", required=False),
    }


def _push(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "ref": _text(payload, "ref", max_len=MAX_REF),
        "before_sha": _sha(payload, "before"),
        "head_sha": _sha(payload, "after"),  # all zeros for a deleted branch
        "deleted": _flag(payload, "deleted"),
    }


def _issue_comment(payload: dict[str, Any]) -> dict[str, Any] | Ignored:
    if _get(payload, "issue.pull_request", required=False) is None:
        return Ignored("a comment on an issue, not on a pull request")
    return {
        "pr_number": _number(payload, "issue.number"),
        "comment_body": _text(payload, "comment.body", max_len=None),
        "comment_author": _text(payload, "comment.user.login"),
        "author_association": _text(payload, "comment.author_association", max_len=MAX_WORD),
    }


def extract(event: str, delivery_id: str, payload: dict[str, Any]) -> DeliveryFields | Ignored:
    """The fields to store for a handled event and action, or why the delivery is ignored.

    Raises PayloadError when a field the sensor needs is missing or malformed.
    """
    if event not in HANDLED:
        return Ignored(f"event {event!r:.80} is not used")
    actions = HANDLED[event]
    action = _text(payload, "action", max_len=MAX_WORD, required=actions is not None)
    if actions is not None and action not in actions:
        return Ignored(f"{event} action {action!r:.80} is not used")
    common = {
        "delivery_id": delivery_id,
        "event": event,
        "action": action,
        "repository": _text(payload, "repository.full_name", required=event != "ping"),  # org hooks: none
        "sender": _text(payload, "sender.login", required=False),
    }
    if event == "ping":
        return DeliveryFields(**common)
    specific = {"pull_request": _pull_request, "push": _push, "issue_comment": _issue_comment}[event](payload)
    if isinstance(specific, Ignored):
        return specific
    return DeliveryFields(**common, **specific)
