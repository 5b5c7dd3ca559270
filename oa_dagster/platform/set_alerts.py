"""Set alerts: a short Slack-compatible message to a webhook when a set finishes with newly broken entries, or
when a set has not finished within its expected time (a stalled set once went unnoticed for weeks).

The messages are built from the plain values the set sensors report (`set_report`, `set_progress` metadata) and
posted as JSON (`{"text": ..., "blocks": [...]}`: what Slack's incoming webhooks take; Mattermost, Rocket.Chat and
most chat bridges take the same `text`). No Dagster here: `sensors/set_alerts.py` decides when to post.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import requests

LISTED_ENTRIES = 10  # entries named in a message; the report has the rest


class AlertNotDelivered(Exception):
    """The webhook did not take the message (an error status, a timeout): the sensor tries again next tick."""


def message(text: str, details: Sequence[str] = ()) -> dict[str, Any]:
    """A Slack-compatible payload: `text` (also the notification line) and a section per block of details."""
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    if details:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(details)[:2900]}})
    return {"text": text, "blocks": blocks}


def broken_entries_message(report: Mapping[str, Any], report_url: str = "") -> dict[str, Any]:
    """A set finished with entries that were good in the previous set and failed now."""
    broken = list(report.get("newly_broken") or [])
    count = int(report.get("counts", {}).get("newly_broken", len(broken)))
    text = f":rotating_light: {report['set']} finished with {count} newly broken entr{'y' if count == 1 else 'ies'}"
    if report.get("compared_with"):
        text += f" (good in {report['compared_with']})"
    lines = [f"• {row['layer']} `{row['entry']}`: {row.get('problem', '')}"[:300] for row in broken[:LISTED_ENTRIES]]
    if count > len(lines):
        lines.append(f"… and {count - len(lines)} more")
    if report_url:
        lines.append(f"Report: {report_url}")
    return message(text, lines)


def stalled_set_message(set_id: str, hours: float, expected_hours: float, summary: str = "") -> dict[str, Any]:
    """A set still running after its expected time."""
    text = f":hourglass: {set_id} has not finished after {hours:.1f} h (expected within {expected_hours:g} h)"
    return message(text, [summary] if summary else [])


def _where(url: str) -> str:
    """The webhook's host (and port) only: a webhook URL's path and query are its secret (Slack's is a token)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "?", parts.port
    except ValueError:  # a malformed URL or port: still nothing of the path
        return "an invalid URL"
    return f"{host}:{port}" if port else host


def post_alert(url: str, payload: Mapping[str, Any], *, timeout: float = 10.0) -> None:
    """POST the payload as JSON; raises `AlertNotDelivered` unless the webhook answers 2xx.

    The error names the exception type, the host and the HTTP status, never the URL's path or query nor the
    exception's own text (requests puts the whole URL in it): the sensor logs it into the event log. The cause is
    not chained for the same reason.
    """
    try:
        answer = requests.post(url, json=dict(payload), timeout=timeout)
    except requests.RequestException as exc:
        raise AlertNotDelivered(f"alert webhook at {_where(url)} unreachable: {type(exc).__name__}") from None
    if not 200 <= answer.status_code < 300:
        raise AlertNotDelivered(f"alert webhook at {_where(url)} answered HTTP {answer.status_code}")
