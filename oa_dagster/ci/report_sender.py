"""Sending commit statuses and the results comment to GitHub, through the outbox when there is one.

With an outbox (`ci/outbox.py`) every report is recorded first, so one GitHub cannot take now is re-sent later
by `ci_reports_sensor`; without one (no deliveries database) it is sent straight and a failure is only returned.
A failure is never raised: a job's results stand whatever GitHub does. A recorded report is sent only by the
sender that claims it (compare-and-set on its row): a report another sender is sending is left to that one, which
sends the newest version when it is done, so a pull request never gets its results comment twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from oa_dagster.webhook.database import StoreUnavailable

from .github_api import GitHubClient, GitHubError
from .outbox import PendingReport, Report, ReportOutbox

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resent:
    """One re-send attempt of `ci_reports_sensor`: the report and its error (None: sent)."""

    pending: PendingReport
    error: str | None


def _permanent(exc: BaseException) -> bool:
    """A refusal no retry can change: 4xx other than 403 and 429 (rate limits come as those; the client already
    waited them out) and 408 (a timeout)."""
    status = getattr(exc, "status", None)
    return isinstance(exc, GitHubError) and status is not None and 400 <= status < 500 and status not in (403, 408, 429)


def _record(write: Callable[[], None]) -> None:
    try:
        write()
    except StoreUnavailable as exc:
        log.error("could not record a report's outcome: %s", exc)


class ReportSender:
    def __init__(self, client: GitHubClient, outbox: ReportOutbox | None = None) -> None:
        self.client = client
        self.outbox = outbox

    def close(self) -> None:
        if self.outbox is not None:
            self.outbox.close()

    def status(
        self,
        repo: str,
        sha: str,
        job_key: str,
        state: str,
        description: str,
        context: str,
        target_url: str | None = None,
    ) -> str | None:
        """Set a commit status; the error (kept for a re-send when there is an outbox), or None when sent."""
        body = {"state": state, "description": description, "context": context, "target_url": target_url}
        return self.send(Report("status", repo, job_key, body, sha=sha))

    def comment(self, repo: str, number: int, job_key: str, body: str) -> str | None:
        """Post or edit the pull request's results comment; the error, or None when sent."""
        return self.send(Report("comment", repo, job_key, {"body": body}, number=number))

    def send(self, report: Report) -> str | None:
        """Record and send `report`; the error, or None when sent (or left to the sender already sending its
        target, which sends this newer version next)."""
        if self.outbox is None:
            return self._deliver(report)
        try:
            version = self.outbox.want(report)
            claimed = self.outbox.claim(report, version)
        except StoreUnavailable as exc:  # still try GitHub: the report itself matters more than its record
            log.error("could not record the %s for %s before sending it: %s", report.kind, report.job_key, exc)
            return self._deliver(report)
        if not claimed:
            log.info(
                "the %s for %s is being sent by another sender; it sends this one next", report.kind, report.job_key
            )
            return None
        return self._send_claimed(report, version)

    def resend_due(self, limit: int = 100) -> list[Resent]:
        """Send again every report whose backoff has passed (newest state of each target only), each only if this
        sender can claim it."""
        if self.outbox is None:
            return []
        outbox = self.outbox
        return [
            Resent(pending, self._send_claimed(pending.report, pending.version))
            for pending in outbox.due(limit)
            if outbox.claim(pending.report, pending.version)
        ]

    def _send_claimed(self, report: Report, version: int, rounds: int = 3) -> str | None:
        """Send a claimed version; when a newer one was wanted meanwhile, claim and send that too (a few rounds;
        what is left is due for `ci_reports_sensor`)."""
        outbox = self.outbox
        assert outbox is not None
        error = self._deliver(report, version)
        for _ in range(rounds):
            if error is not None:
                return error
            try:
                newer = outbox.sent(report, version)
                if newer is None or not outbox.claim(newer.report, newer.version):
                    return None
            except StoreUnavailable as exc:
                log.error("could not record that the %s for %s was sent: %s", report.kind, report.job_key, exc)
                return None
            report, version = newer.report, newer.version
            error = self._deliver(report, version)
        return error

    def _deliver(self, report: Report, version: int | None = None) -> str | None:
        """Post `report`; record a failure against `version` (when recorded). Success is recorded by the caller."""
        outbox = self.outbox if version is not None else None
        try:
            self._post(report)
        except (GitHubError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            if outbox is not None and version is not None:
                if _permanent(exc):  # sending it again would be refused again
                    _record(lambda: outbox.give_up(report, version, error))
                else:
                    _record(lambda: outbox.failed(report, version, error))
            return error
        return None

    def _post(self, report: Report) -> None:
        body = report.body
        if report.kind == "status":
            self.client.set_status(
                report.repo,
                str(report.sha),
                body["state"],
                body["description"],
                body["context"],
                body.get("target_url"),
            )
        else:
            self.client.upsert_comment(report.repo, int(report.number or 0), body["body"])
