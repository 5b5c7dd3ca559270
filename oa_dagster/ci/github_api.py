"""A small GitHub REST client for CI jobs: changed files, file contents at a commit, statuses, one comment.

Plain `requests`, no Dagster, so the sensor, the assets and the tests share it. Every call goes through one
retry loop: connection errors, 5xx, 429 and exhausted rate limits (403 with `x-ratelimit-remaining: 0`, or a
secondary limit) are retried, waiting `Retry-After` seconds or until `x-ratelimit-reset`, else with exponential
backoff; a wait beyond `max_wait` raises `GitHubUnavailable` at once rather than blocking a sensor tick. Other
4xx raise `GitHubError` with GitHub's own `message`. The token is sent only in the `Authorization` header and
is never part of a message, a repr or a log line.

Paths come partly from untrusted text (a pull request's file names): an API path with an empty, `.` or `..`
segment is refused before any request (`RefusedPath`), since a server or proxy removing dot segments would send
the token to another endpoint. Calls may run from several threads at once (the planner fetches files
concurrently); the session's connection pool holds `POOL_SIZE` connections.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter

from oa_dagster.fetch.http import retry_after_seconds

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.github.com"
DEFAULT_STATUS_CONTEXT = "oa-dagster"
RESULTS_MARKER = "<!-- oa-dagster:results -->"
STATUS_DESCRIPTION_LIMIT = 140  # GitHub refuses longer commit status descriptions
STATUS_STATES = ("error", "failure", "pending", "success")
MAX_PR_FILES = 3000  # GitHub lists at most this many files of a pull request
MAX_FILE_BYTES = 5 * 1024 * 1024  # a source file is a few kB; anything this big is not one
PER_PAGE = 100
API_VERSION = "2022-11-28"
SECONDARY_LIMIT_WAIT = 60.0  # GitHub: wait at least a minute on a secondary rate limit without headers
POOL_SIZE = 16  # connections kept per host: more than the planner's concurrent calls

TokenSource = Callable[[], str]  # called before each request: a token that may change (`github_auth.py`)


class GitHubError(Exception):
    """GitHub answered with an error we do not retry (4xx), with GitHub's `message`; `status` is the HTTP code."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(f"GitHub API error {status}: {message}" if status else f"GitHub API error: {message}")
        self.status = status
        self.message = message


class GitHubUnavailable(GitHubError):
    """GitHub stayed unavailable or rate limited past our retries or `max_wait`; `reason` says which."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(status, reason)
        self.reason = reason


class RefusedPath(GitHubError):
    """An API path we never send: an empty, `.` or `..` segment (after dot-segment removal it names another
    endpoint), or text that is not UTF-8."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(None, f"refused API path {path!r}: {reason}")


def path_problem(path: str) -> str | None:
    """Why a repository or API path must not be used (None: it may): empty, `.` or `..` segments, or text that
    cannot be UTF-8 (a lone surrogate)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "it is not valid UTF-8 text"
    if any(segment in ("", ".", "..") for segment in path.split("/")):
        return "it has an empty, '.' or '..' segment"
    return None


@dataclass(frozen=True)
class ChangedFile:
    """One file of a pull request or comparison; `status` is added, modified, removed, renamed, copied, ..."""

    filename: str
    status: str
    previous_filename: str | None = None


@dataclass(frozen=True)
class GitHubSettings:
    """The CI jobs' GitHub settings from the environment; the token stays out of the repr."""

    api_url: str = DEFAULT_API_URL
    token: str | TokenSource | None = field(default=None, repr=False)  # a source: GitHub App tokens
    status_context: str = DEFAULT_STATUS_CONTEXT
    ui_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> GitHubSettings:
        """`OA_GITHUB_API_URL`, `GITHUB_TOKEN`, `OA_STATUS_CONTEXT`, `OA_DAGSTER_UI_URL` (empty = unset) of `env`:
        a mapping given, never `os.environ` read here (only `resources/deployments.py` reads the environment)."""
        return cls(
            api_url=env.get("OA_GITHUB_API_URL") or DEFAULT_API_URL,
            token=env.get("GITHUB_TOKEN") or None,
            status_context=env.get("OA_STATUS_CONTEXT") or DEFAULT_STATUS_CONTEXT,
            ui_url=env.get("OA_DAGSTER_UI_URL") or None,
        )

    def run_url(self, run_id: str) -> str | None:
        """The run's page in the Dagster UI, the statuses' target URL (None without `OA_DAGSTER_UI_URL`)."""
        return f"{self.ui_url.rstrip('/')}/runs/{run_id}" if self.ui_url else None

    def client(self, **options: Any) -> GitHubClient:
        return GitHubClient(self.api_url, self.token, **options)


def status_description(text: str, limit: int = STATUS_DESCRIPTION_LIMIT) -> str:
    """`text` on one line within GitHub's 140 characters, ending with an ellipsis when cut."""
    line = " ".join(text.split())
    if len(line) <= limit:
        return line
    return line[: limit - 1].rstrip() + "…"


def _changed_file(item: Any) -> ChangedFile:
    """One item of a files list, its fields checked: a malformed answer is a `GitHubError` naming the field, not
    an AttributeError deep in the planner."""
    if not isinstance(item, Mapping):
        raise GitHubError(None, f"a changed file is {type(item).__name__}, not an object")
    filename, status, previous = item.get("filename"), item.get("status", "modified"), item.get("previous_filename")
    for name, value, optional in (
        ("filename", filename, False),
        ("status", status, False),
        ("previous_filename", previous, True),
    ):
        if not (isinstance(value, str) and value) and not (optional and value is None):
            raise GitHubError(None, f"a changed file's {name} is {type(value).__name__}, not a non-empty string")
    return ChangedFile(filename, status, previous)


def _pooled_session() -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=POOL_SIZE, pool_maxsize=POOL_SIZE)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class GitHubClient:
    """The GitHub REST API at `api_url` (github.com, an Enterprise server's `/api/v3`, or a test fake).

    `token`: a token, or a source of tokens called before each request (a GitHub App's installation tokens,
    refreshed before they expire).

    `retries` is the number of retries after the first attempt; `backoff` the first backoff in seconds,
    doubled on each retry; `max_wait` the longest single wait we accept; `sleep` and `clock` are injectable so
    tests record waits instead of sleeping.
    """

    def __init__(
        self,
        api_url: str = DEFAULT_API_URL,
        token: str | TokenSource | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 1.0,
        max_wait: float = 120.0,
        user_agent: str = "oa-dagster",
        max_file_bytes: int = MAX_FILE_BYTES,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        session: requests.Session | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._token_source = token if callable(token) else None
        self._token = None if callable(token) else (token or None)
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_wait = max_wait
        self.max_file_bytes = max_file_bytes
        self._sleep = sleep
        self._clock = clock
        self._session = session or _pooled_session()
        self._headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": user_agent,
        }
        if self._token:
            self._headers["Authorization"] = f"Bearer {self._token}"

    def __repr__(self) -> str:
        return f"GitHubClient({self.api_url!r}, token={'set' if self._token or self._token_source else 'none'})"

    # ---- reading a pull request -------------------------------------------------------------------------

    def pull_request(self, repo: str, number: int) -> dict[str, Any]:
        """The parts of a pull request a CI job needs (head and base, author, state), e.g. for re-run comments."""
        data = self._json("GET", f"/repos/{repo}/pulls/{int(number)}")
        head, base = data.get("head") or {}, data.get("base") or {}
        return {
            "number": data.get("number", number),
            "state": data.get("state"),
            "merged": bool(data.get("merged")),
            "author": (data.get("user") or {}).get("login"),
            "head_sha": head.get("sha"),
            "head_ref": head.get("ref"),
            "head_repo": (head.get("repo") or {}).get("full_name"),
            "base_sha": base.get("sha"),
            "base_ref": base.get("ref"),
        }

    def pull_request_files(self, repo: str, number: int) -> list[ChangedFile]:
        """Every file a pull request changes, page by page (GitHub stops at 3,000 files)."""
        items = self._paginated(f"/repos/{repo}/pulls/{int(number)}/files", limit=MAX_PR_FILES)
        return [_changed_file(item) for item in items]

    def compare_files(self, repo: str, base: str, head: str) -> list[ChangedFile]:
        """The files changed between two commits (a push); GitHub lists at most 300 files here."""
        path = f"/repos/{repo}/compare/{quote(base, safe='/')}...{quote(head, safe='/')}"
        files = self._json("GET", path).get("files") or []
        if len(files) >= 300:
            log.warning("compare %s...%s of %s lists %d files: GitHub may have cut the list", base, head, repo, 300)
        return [_changed_file(item) for item in files]

    def file_at(self, repo: str, path: str, ref: str) -> bytes | None:
        """A file's bytes at `ref`, None when it does not exist there; bigger than `max_file_bytes` raises."""
        if problem := path_problem(path):
            raise RefusedPath(path, problem)
        url_path = f"/repos/{repo}/contents/{quote(path, safe='/')}"
        try:
            response = self._request(
                "GET", url_path, params={"ref": ref}, accept="application/vnd.github.raw+json", stream=True
            )
        except GitHubError as error:
            if error.status == 404:
                return None
            raise
        with response:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > self.max_file_bytes:
                raise GitHubError(None, f"{path} at {ref} is {int(declared)} bytes, over {self.max_file_bytes}")
            body = bytearray()
            for chunk in response.iter_content(64 * 1024):
                body += chunk
                if len(body) > self.max_file_bytes:
                    raise GitHubError(None, f"{path} at {ref} is over {self.max_file_bytes} bytes")
        return bytes(body)

    def collaborator_permission(self, repo: str, login: str) -> str:
        """`admin`, `maintain`, `write`, `triage`, `read` or `none`: may `login` ask for a re-run?"""
        try:
            data = self._json("GET", f"/repos/{repo}/collaborators/{quote(login, safe='')}/permission")
        except GitHubError as error:
            if error.status == 404:
                return "none"
            raise
        return str(data.get("role_name") or data.get("permission") or "none")

    # ---- reporting back ---------------------------------------------------------------------------------

    def set_status(
        self,
        repo: str,
        sha: str,
        state: str,
        description: str,
        context: str = DEFAULT_STATUS_CONTEXT,
        target_url: str | None = None,
    ) -> None:
        """One commit status on `sha`; the description is trimmed to GitHub's 140 characters."""
        if state not in STATUS_STATES:
            raise ValueError(f"commit status state {state!r} is not one of {', '.join(STATUS_STATES)}")
        body: dict[str, Any] = {"state": state, "description": status_description(description), "context": context}
        if target_url:
            body["target_url"] = target_url
        self._request("POST", f"/repos/{repo}/statuses/{quote(sha, safe='')}", json=body).close()

    def upsert_comment(
        self, repo: str, number: int, body: str, marker: str = RESULTS_MARKER, *, author: str | None = None
    ) -> int:
        """Edit our results comment (found by its hidden `marker`) or post it once; returns its id.

        `author` (the bot's login), when given, only matches comments it wrote. Without it, a marked comment we
        may not edit (403: someone else's, quoting the marker) is passed over for the next one, so nobody can
        keep our results from being posted by writing the marker first.
        """
        if marker not in body:
            body = f"{marker}\n{body}"
        for comment in self._paginated(f"/repos/{repo}/issues/{int(number)}/comments"):
            if marker not in (comment.get("body") or ""):
                continue
            if author and (comment.get("user") or {}).get("login") != author:
                continue
            try:
                self._request("PATCH", f"/repos/{repo}/issues/comments/{int(comment['id'])}", json={"body": body})
                return int(comment["id"])
            except GitHubError as error:
                if error.status == 403:  # not ours to edit: look further
                    continue
                if error.status != 404:  # deleted since we listed it: post a new one
                    raise
            break
        created = self._json("POST", f"/repos/{repo}/issues/{int(number)}/comments", json={"body": body})
        return int(created["id"])

    # ---- plumbing ---------------------------------------------------------------------------------------

    def _paginated(self, path: str, *, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """The items of a list endpoint, `PER_PAGE` at a time, until a short page (or `limit` items)."""
        seen = 0
        page = 1
        while True:
            items = self._json("GET", path, params={"per_page": PER_PAGE, "page": page})
            if not isinstance(items, list):
                raise GitHubError(None, f"{path} did not answer a list")
            for item in items:
                yield item
                seen += 1
                if limit is not None and seen >= limit:
                    return
            if len(items) < PER_PAGE:
                return
            page += 1

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise GitHubError(response.status_code, f"{method} {path} did not answer JSON") from None
        finally:
            response.close()

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        accept: str | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """One API call with the retry rules; returns a 2xx/3xx response, raises `GitHubError` otherwise."""
        if problem := path_problem(path.removeprefix("/")):
            raise RefusedPath(path, problem)
        headers = dict(self._headers)
        if accept:
            headers["Accept"] = accept
        if self._token_source is not None:
            self._token = self._token_source()  # the same one until it nears its expiry
            headers["Authorization"] = f"Bearer {self._token}"
        url = self.api_url + path
        for attempt in range(self.retries + 1):
            try:
                response = self._session.request(
                    method, url, params=params, json=json, headers=headers, timeout=self.timeout, stream=stream
                )
            except requests.RequestException as error:  # connection refused, reset, timeout
                status, reason, wait = None, f"{type(error).__name__} on {method} {path}", None
            else:
                if response.status_code < 400:
                    return response
                status = response.status_code
                message = self._message(response)
                limited, wait = self._rate_limit(response, message)
                response.close()
                if status < 500 and not limited:
                    raise GitHubError(status, message)
                reason = f"{status} on {method} {path}: {message}"
            if wait is None:
                wait = self.backoff * (2**attempt)
            if attempt == self.retries:
                raise GitHubUnavailable(f"{reason} (gave up after {attempt + 1} attempts)", status)
            if wait > self.max_wait:
                raise GitHubUnavailable(f"{reason} (would wait {wait:.0f}s, over {self.max_wait:.0f}s)", status)
            log.info("GitHub: %s; retrying in %.1fs", reason, wait)
            self._sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _rate_limit(self, response: requests.Response, message: str) -> tuple[bool, float | None]:
        """Is `response` a rate limit, and how long it asks us to wait (None: our own backoff)."""
        headers = response.headers
        retry_after = retry_after_seconds(headers.get("Retry-After"))
        exhausted = headers.get("x-ratelimit-remaining") == "0"
        secondary = "secondary rate limit" in message.lower()
        if response.status_code != 429 and not (
            response.status_code == 403 and (retry_after is not None or exhausted or secondary)
        ):
            return False, None
        if retry_after is not None:
            return True, retry_after
        reset = headers.get("x-ratelimit-reset") or ""
        if exhausted and reset.isdigit():
            return True, max(0.0, int(reset) - self._clock()) + 1.0  # a second past the reset
        return True, SECONDARY_LIMIT_WAIT if secondary else None

    def _message(self, response: requests.Response) -> str:
        """GitHub's `message` (or the start of the body), with the token masked should it ever echo it."""
        try:
            data = response.json()
            message = str(data.get("message")) if isinstance(data, dict) and data.get("message") else ""
        except ValueError:
            message = ""
        if not message:
            message = (response.text or response.reason or "").strip()[:200] or "no message"
        if self._token:
            message = message.replace(self._token, "***")
        return message
