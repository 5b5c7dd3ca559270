"""The CI jobs' GitHub client through real HTTP against the fake GitHub API: pagination, contents at a ref,
statuses, the one results comment, retries on 5xx and rate limits, and no token in error messages."""

from __future__ import annotations

import pytest

from oa_dagster.ci.github_api import (
    RESULTS_MARKER,
    ChangedFile,
    GitHubClient,
    GitHubError,
    GitHubSettings,
    GitHubUnavailable,
    RefusedPath,
    status_description,
)
from tests.servers.fixtures import GITHUB_TOKEN
from tests.servers.github import FakeGitHubServer, file_entry

REPO = "openaddresses/openaddresses"
HEAD = "1" * 40


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def client(github_server: FakeGitHubServer, waits: list[float]) -> GitHubClient:
    return GitHubClient(
        github_server.url(), GITHUB_TOKEN, timeout=10, retries=3, backoff=0.5, max_wait=60, sleep=waits.append
    )


def test_pull_request_files_are_read_page_by_page(github_server: FakeGitHubServer, client: GitHubClient) -> None:
    files = [file_entry(f"sources/us/ca/city_{i:03}.json", "added") for i in range(249)]
    files.append(file_entry("sources/us/ca/new.json", "renamed", previous_filename="sources/us/ca/old.json"))
    github_server.add_pull(REPO, 7, files, head_sha=HEAD)

    changed = client.pull_request_files(REPO, 7)

    assert len(changed) == 250
    assert changed[0] == ChangedFile("sources/us/ca/city_000.json", "added")
    assert changed[-1] == ChangedFile("sources/us/ca/new.json", "renamed", "sources/us/ca/old.json")
    pages = [path for method, path, _ in github_server.received if path.endswith("/pulls/7/files")]
    assert len(pages) == 3


def test_a_full_last_page_costs_one_empty_page(github_server: FakeGitHubServer, client: GitHubClient) -> None:
    github_server.add_pull(REPO, 8, [file_entry(f"sources/x{i}.json") for i in range(200)])
    assert len(client.pull_request_files(REPO, 8)) == 200
    assert sum(path.endswith("/pulls/8/files") for _, path, _ in github_server.received) == 3


def test_pull_request_summary(github_server: FakeGitHubServer, client: GitHubClient) -> None:
    github_server.add_pull(REPO, 9, [], head_sha=HEAD, base_sha="2" * 40, author="alice", head_ref="fix-ca")
    pull = client.pull_request(REPO, 9)
    assert pull["head_sha"] == HEAD
    assert pull["base_sha"] == "2" * 40
    assert (pull["base_ref"], pull["head_ref"], pull["author"], pull["state"]) == ("master", "fix-ca", "alice", "open")
    assert pull["head_repo"] == REPO


def test_compare_lists_the_files_between_two_commits(github_server: FakeGitHubServer, client: GitHubClient) -> None:
    github_server.add_compare(
        REPO, "a" * 40, HEAD, [file_entry("sources/us/ny/x.json"), file_entry("README.md", "removed")]
    )
    assert client.compare_files(REPO, "a" * 40, HEAD) == [
        ChangedFile("sources/us/ny/x.json", "modified"),
        ChangedFile("README.md", "removed"),
    ]


def test_file_at_a_ref(github_server: FakeGitHubServer, client: GitHubClient) -> None:
    github_server.add_file(REPO, "sources/us/ca/city.json", HEAD, b'{"schema": 2}')
    github_server.add_file(REPO, "sources/us/ca/city.json", "other", b'{"schema": 1}')

    assert client.file_at(REPO, "sources/us/ca/city.json", HEAD) == b'{"schema": 2}'
    assert client.file_at(REPO, "sources/us/ca/missing.json", HEAD) is None
    assert github_server.seen_headers[0]["Accept"] == "application/vnd.github.raw+json"
    assert github_server.seen_headers[0]["X-GitHub-Api-Version"] == "2022-11-28"


def test_a_file_over_the_cap_is_refused(github_server: FakeGitHubServer) -> None:
    github_server.add_file(REPO, "sources/big.json", HEAD, b"x" * 5000)
    small = GitHubClient(github_server.url(), GITHUB_TOKEN, max_file_bytes=4096, sleep=lambda _: None)
    with pytest.raises(GitHubError, match="over 4096"):
        small.file_at(REPO, "sources/big.json", HEAD)


def test_statuses_are_recorded_with_trimmed_descriptions(github_server: FakeGitHubServer, client: GitHubClient) -> None:
    long = "3 entries failed: " + ", ".join(f"us/ca/city_{i}" for i in range(40))
    client.set_status(REPO, HEAD, "pending", "Processing 3 entries", "oa-dagster", "http://ui.test/runs/r1")
    client.set_status(REPO, HEAD, "failure", long, "oa-dagster", "http://ui.test/runs/r1")

    pending, failure = github_server.statuses[(REPO, HEAD)]
    assert pending == {
        "state": "pending",
        "description": "Processing 3 entries",
        "context": "oa-dagster",
        "target_url": "http://ui.test/runs/r1",
    }
    assert len(failure["description"]) == 140
    assert failure["description"].endswith("…")
    assert [(method, path) for method, path, _ in github_server.writes()] == [
        ("POST", f"/repos/{REPO}/statuses/{HEAD}"),
        ("POST", f"/repos/{REPO}/statuses/{HEAD}"),
    ]
    with pytest.raises(ValueError):
        client.set_status(REPO, HEAD, "done", "x")


def test_status_description() -> None:
    assert status_description("all  good\n3 entries") == "all good 3 entries"
    assert status_description("x" * 140) == "x" * 140
    trimmed = status_description("y" * 200)
    assert len(trimmed) == 140 and trimmed.endswith("…")


def test_the_results_comment_is_posted_once_then_edited(github_server: FakeGitHubServer, client: GitHubClient) -> None:
    for i in range(120):  # someone else's chatter fills more than one page
        github_server.add_comment(REPO, 7, f"comment {i}")

    first = client.upsert_comment(REPO, 7, "## Results\n1 entry passed", RESULTS_MARKER)
    second = client.upsert_comment(REPO, 7, "## Results\n2 entries passed", RESULTS_MARKER)

    assert first == second
    ours = [c for c in github_server.comments[(REPO, 7)] if RESULTS_MARKER in c["body"]]
    assert len(ours) == 1
    assert ours[0]["body"] == f"{RESULTS_MARKER}\n## Results\n2 entries passed"
    assert [(method, path) for method, path, _ in github_server.writes()] == [
        ("POST", f"/repos/{REPO}/issues/7/comments"),
        ("PATCH", f"/repos/{REPO}/issues/comments/{first}"),
    ]


def test_a_quoted_marker_by_someone_else_is_not_ours(github_server: FakeGitHubServer, client: GitHubClient) -> None:
    github_server.add_comment(REPO, 7, f"look at this {RESULTS_MARKER}", user="mallory")
    ours = client.upsert_comment(REPO, 7, "results", author=github_server.bot_login)
    assert github_server.comments[(REPO, 7)][0]["body"] == f"look at this {RESULTS_MARKER}"
    assert client.upsert_comment(REPO, 7, "results again", author=github_server.bot_login) == ours
    assert len(github_server.comments[(REPO, 7)]) == 2


def test_a_marker_someone_else_wrote_first_never_keeps_our_results_out(
    github_server: FakeGitHubServer, client: GitHubClient, waits: list[float]
) -> None:
    """Without the bot's login: the stranger's marked comment answers 403 to our edit, and ours is posted, then
    edited on the next job (the stranger's first every time)."""
    github_server.add_comment(REPO, 7, f"gotcha {RESULTS_MARKER}", user="mallory")
    ours = client.upsert_comment(REPO, 7, "results")
    assert client.upsert_comment(REPO, 7, "results again") == ours
    bodies = [c["body"] for c in github_server.comments[(REPO, 7)]]
    assert bodies == [f"gotcha {RESULTS_MARKER}", f"{RESULTS_MARKER}\nresults again"]
    assert waits == []  # a 403 that is no rate limit is not retried


def test_retries_on_502(github_server: FakeGitHubServer, client: GitHubClient, waits: list[float]) -> None:
    github_server.add_file(REPO, "sources/a.json", HEAD, b"{}")
    github_server.fail_next(2, status=502)
    assert client.file_at(REPO, "sources/a.json", HEAD) == b"{}"
    assert waits == [0.5, 1.0]
    assert len(github_server.received) == 3


def test_posting_is_retried_too(github_server: FakeGitHubServer, client: GitHubClient, waits: list[float]) -> None:
    github_server.fail_next(1, status=503)
    client.set_status(REPO, HEAD, "success", "ok")
    assert len(github_server.statuses[(REPO, HEAD)]) == 1
    assert waits == [0.5]


def test_retries_after_a_rate_limit_with_retry_after(
    github_server: FakeGitHubServer, client: GitHubClient, waits: list[float]
) -> None:
    github_server.add_pull(REPO, 7, [file_entry("sources/a.json")])
    github_server.rate_limit_next(1, retry_after=7)
    github_server.rate_limit_next(1, retry_after=3, status=429)
    assert client.pull_request_files(REPO, 7) == [ChangedFile("sources/a.json", "modified")]
    assert waits == [7.0, 3.0]


def test_waits_for_the_rate_limit_reset(github_server: FakeGitHubServer, waits: list[float]) -> None:
    github_server.add_pull(REPO, 7, [file_entry("sources/a.json")])
    github_server.rate_limit_next(1, reset=1_000_030)
    client = GitHubClient(github_server.url(), GITHUB_TOKEN, sleep=waits.append, clock=lambda: 1_000_000.0)
    assert len(client.pull_request_files(REPO, 7)) == 1
    assert waits == [31.0]  # until the reset, and a second more


def test_a_wait_past_max_wait_gives_up_at_once(github_server: FakeGitHubServer, waits: list[float]) -> None:
    github_server.rate_limit_next(1, reset=1_003_600)
    client = GitHubClient(github_server.url(), GITHUB_TOKEN, max_wait=60, sleep=waits.append, clock=lambda: 1_000_000.0)
    with pytest.raises(GitHubUnavailable, match="rate limit") as raised:
        client.set_status(REPO, HEAD, "pending", "x")
    assert raised.value.status == 403
    assert "over 60s" in raised.value.reason
    assert waits == []
    assert github_server.statuses == {}


def test_persistent_5xx_gives_up_after_the_retries(
    github_server: FakeGitHubServer, client: GitHubClient, waits: list[float]
) -> None:
    github_server.fail_next(10, status=500)
    with pytest.raises(GitHubUnavailable, match="gave up after 4 attempts"):
        client.pull_request(REPO, 1)
    assert waits == [0.5, 1.0, 2.0]


def test_connection_errors_are_retried_then_reported(waits: list[float]) -> None:
    server = FakeGitHubServer()
    url = server.url()
    server.server_close()  # nothing listens on that port any more
    client = GitHubClient(url, "secret-token-x", retries=2, backoff=0.1, sleep=waits.append)
    with pytest.raises(GitHubUnavailable) as raised:
        client.file_at(REPO, "sources/a.json", HEAD)
    assert waits == [0.1, 0.2]
    assert "secret-token-x" not in str(raised.value)


def test_a_wrong_token_is_a_401_without_the_token(github_server: FakeGitHubServer, waits: list[float]) -> None:
    client = GitHubClient(github_server.url(), "ghp_wrong-secret-123", sleep=waits.append)
    with pytest.raises(GitHubError) as raised:
        client.pull_request_files(REPO, 7)
    assert raised.value.status == 401
    assert raised.value.message == "Bad credentials"
    assert "ghp_wrong-secret-123" not in str(raised.value)
    assert "ghp_wrong-secret-123" not in repr(client)
    assert waits == []
    assert github_server.seen_headers[0]["Authorization"] == "Bearer ghp_wrong-secret-123"


def test_other_4xx_are_not_retried(github_server: FakeGitHubServer, client: GitHubClient, waits: list[float]) -> None:
    with pytest.raises(GitHubError) as raised:
        client.pull_request(REPO, 404)
    assert (raised.value.status, raised.value.message) == (404, "Not Found")
    assert waits == []


def test_collaborator_permission(github_server: FakeGitHubServer, client: GitHubClient) -> None:
    github_server.permissions[(REPO, "maintainer")] = "write"
    assert client.collaborator_permission(REPO, "maintainer") == "write"
    assert client.collaborator_permission(REPO, "stranger") == "none"


def test_settings_from_the_environment() -> None:
    settings = GitHubSettings.from_env(
        {"GITHUB_TOKEN": "t0ken", "OA_GITHUB_API_URL": "http://ghe.test/api/v3", "OA_DAGSTER_UI_URL": "http://ui/"}
    )
    assert (settings.api_url, settings.status_context) == ("http://ghe.test/api/v3", "oa-dagster")
    assert settings.run_url("abc") == "http://ui/runs/abc"
    assert "t0ken" not in repr(settings)
    assert GitHubSettings.from_env({}).run_url("abc") is None
    assert settings.client().api_url == "http://ghe.test/api/v3"


@pytest.mark.parametrize(
    "path",
    ["sources/../../x.json", "sources/us/../../../repos/other/repo/x.json", "sources/./x.json", "sources//x.json"],
)
def test_a_path_with_dot_segments_is_refused_before_any_request(
    github_server: FakeGitHubServer, client: GitHubClient, path: str
) -> None:
    with pytest.raises(RefusedPath, match="segment"):
        client.file_at(REPO, path, HEAD)
    with pytest.raises(RefusedPath, match="segment"):  # any API path: the client's own rule, whoever calls it
        client.pull_request_files(f"openaddresses/../{path}", 1)
    with pytest.raises(RefusedPath, match="UTF-8"):
        client.file_at(REPO, "sources/us/\ud800.json", HEAD)
    assert github_server.received == []


def test_a_malformed_changed_file_is_a_github_error_naming_the_field(
    github_server: FakeGitHubServer, client: GitHubClient
) -> None:
    github_server.add_pull(REPO, 7, [{**file_entry("sources/us/x.json", "renamed"), "previous_filename": 5}])
    with pytest.raises(GitHubError, match="previous_filename is int"):
        client.pull_request_files(REPO, 7)
    github_server.add_pull(REPO, 8, ["sources/us/x.json"])  # type: ignore[list-item]
    with pytest.raises(GitHubError, match="a changed file is str"):
        client.pull_request_files(REPO, 8)
