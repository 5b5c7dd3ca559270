"""GitHub and CI job settings as Dagster resources: the CI sensor and the `ci_job` asset receive them.

Plain values only (filled by `deployments.py`, the one module reading the environment); the GitHub client and
its rules live in `ci/github_api.py`, without Dagster.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

from oa_dagster.ci.github_api import (
    DEFAULT_API_URL,
    DEFAULT_STATUS_CONTEXT,
    GitHubClient,
    GitHubSettings,
    TokenSource,
)
from oa_dagster.ci.retention import DEFAULT_RETENTION_DAYS
from oa_dagster.fetch.hosts import parse_allowed_hosts

if TYPE_CHECKING:
    from oa_dagster.ci.outbox import ReportOutbox
    from oa_dagster.ci.report_sender import ReportSender

DEFAULT_SOURCES_REPO = "openaddresses/openaddresses"
DEFAULT_JOB_MAX_RUNTIME_SECONDS = 3600  # a pull request waits on the job: an hour is already long


class GitHubCredentials(dg.ConfigurableResource):
    """How we sign in to GitHub's API at `api_url`: a token, or a GitHub App (its id, private key and installation)
    whose installation tokens are fetched and refreshed before they expire (`ci/github_auth.py`). The App wins
    when both are set. Give the token and the key as `EnvVar`s: the UI shows a resource's plain values."""

    api_url: str = DEFAULT_API_URL
    token: str | None = None
    app_id: str | None = None
    app_private_key: str | None = None  # PEM
    app_installation_id: int | None = None

    def has_credentials(self) -> bool:
        return bool(self.token or self.app_id)

    def credentials(self) -> str | TokenSource | None:
        """The token, or the App's token source (one per process and installation), or None."""
        if self.app_id:
            if not self.app_private_key or not self.app_installation_id:
                raise ValueError(f"GitHub App {self.app_id}: its private key and installation id are both needed")
            from oa_dagster.ci.github_auth import installation_tokens

            return installation_tokens(self.api_url, self.app_id, self.app_private_key, self.app_installation_id)
        return self.token

    def current_token(self) -> str | None:
        """A token for one request now (an App's: valid for minutes at least)."""
        credentials = self.credentials()
        return credentials() if callable(credentials) else credentials


class GitHubResource(GitHubCredentials):
    """Where CI jobs read pull requests and report statuses and the results comment; without credentials the CI
    sensor skips (statuses cannot be written anonymously)."""

    status_context: str = DEFAULT_STATUS_CONTEXT
    ui_url: str | None = None  # the Dagster UI's base URL, for links to runs
    repo: str = DEFAULT_SOURCES_REPO  # the sources repository whose pull requests are checked
    retries: int = 4  # retries of a call on 5xx and rate limits (what is still refused waits in the outbox)

    def settings(self) -> GitHubSettings:
        return GitHubSettings(self.api_url, self.credentials(), self.status_context, self.ui_url)

    def client(self) -> GitHubClient:
        return self.settings().client(retries=self.retries)

    def context_for(self, job_key: str) -> str:
        """The status context of a job: `<context>` for a pull request's, `<context>/push` for a pushed branch's,
        so a push job and the pull request job on the same commit never overwrite each other's status."""
        return f"{self.status_context}/push" if job_key.startswith("push-") else self.status_context

    def pull_request_url(self, repo: str, number: int) -> str:
        """The pull request's page: github.com, or an Enterprise server's UI (its API is under `/api/v3`)."""
        api = self.api_url.rstrip("/")
        web = "https://github.com" if api == DEFAULT_API_URL else api.removesuffix("/api/v3")
        return f"{web}/{repo}/pull/{number}"


class CiSettings(dg.ConfigurableResource):
    """CI jobs' own knobs: where deliveries are read, which private hosts downloads may reach, the time cap, how
    long what they leave is kept (`jobs/cleanup.py`)."""

    deliveries_url: str | None = None  # the webhook deliveries database; None: webhooks are off (no secret)
    allowed_hosts: str = ""  # `OA_CI_ALLOW_HOSTS`: exceptions to the public-addresses-only rule
    job_max_runtime_seconds: int = DEFAULT_JOB_MAX_RUNTIME_SECONDS  # the job's wall-clock cap
    report_backoff_seconds: float = 30.0  # the first wait before a report GitHub refused is sent again
    retention_days: float = DEFAULT_RETENTION_DAYS  # `OA_CI_RETENTION_DAYS`: closed jobs, deliveries, sent reports

    def outbox(self) -> ReportOutbox | None:
        """Where reports wait for GitHub: the deliveries database (None: webhooks are off)."""
        if not self.deliveries_url:
            return None
        from oa_dagster.ci.outbox import ReportOutbox  # SQLAlchemy: imported by CI work only

        return ReportOutbox(self.deliveries_url, backoff_seconds=self.report_backoff_seconds)

    def report_sender(self, client: GitHubClient) -> ReportSender:
        """Reports sent with `client` through the outbox (re-sent when GitHub is back) when webhooks are on; close
        it when done."""
        from oa_dagster.ci.report_sender import ReportSender

        return ReportSender(client, self.outbox())

    def allowed(self) -> frozenset[str]:
        """The allowlist entries; a malformed one raises ValueError naming it."""
        return parse_allowed_hosts(self.allowed_hosts)
