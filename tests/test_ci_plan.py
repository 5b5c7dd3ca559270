"""A CI job's plan from a pull request's changed files, read over HTTP from the fake GitHub API, and what GitHub is
told about it: status descriptions within 140 characters and the results comment."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from oa_dagster import __version__
from oa_dagster.ci.github_api import (
    RESULTS_MARKER,
    STATUS_DESCRIPTION_LIMIT,
    ChangedFile,
    GitHubClient,
    GitHubUnavailable,
)
from oa_dagster.ci.plan import JobPlan, PlannedEntry, PlanningTimedOut, job_key, plan_job
from oa_dagster.ci.reporting import (
    COMMENT_LIMIT,
    EntryOutcome,
    error_description,
    final_status,
    pending_description,
    results_comment,
)
from oa_dagster.platform.publishing import entry_hash
from tests.servers.fixtures import GITHUB_TOKEN
from tests.servers.github import FakeGitHubServer, file_entry

REPO = "openaddresses/openaddresses"
HEAD = "c0ffee" + "1" * 34
BASE = "ba5e00" + "2" * 34
PATH = "sources/us/ca/berkeley.json"
LICENSE = {"text": "Public domain"}


def source(*, addresses: list[dict[str, Any]] | None = None, parcels: list[dict[str, Any]] | None = None) -> dict:
    """A v2 source shaped like the bundled Berkeley example, with http data URLs."""
    layers: dict[str, Any] = {}
    if addresses is not None:
        layers["addresses"] = addresses
    if parcels is not None:
        layers["parcels"] = parcels
    return {
        "schema": 2,
        "coverage": {"country": "us", "state": "ca", "city": "Berkeley"},
        "layers": layers,
    }


def address_entry(name: str = "city", data: str = "https://data.example.com/addresses.csv") -> dict[str, Any]:
    return {
        "name": name,
        "protocol": "http",
        "data": data,
        "license": LICENSE,
        "conform": {"format": "csv", "lon": "X", "lat": "Y", "number": "NUM", "street": "STREET"},
    }


def parcel_entry(name: str = "county") -> dict[str, Any]:
    return {
        "name": name,
        "protocol": "http",
        "data": "https://data.example.com/parcels.zip",
        "compression": "zip",
        "license": LICENSE,
        "conform": {"format": "shapefile", "file": "Parcels.shp", "pid": "APN"},
    }


@pytest.fixture
def client(github_server: FakeGitHubServer) -> GitHubClient:
    return GitHubClient(github_server.url(), GITHUB_TOKEN, timeout=10, retries=1, backoff=0.01, sleep=lambda _: None)


def put(server: FakeGitHubServer, path: str, ref: str, data: Any) -> None:
    server.add_file(REPO, path, ref, data if isinstance(data, str | bytes) else json.dumps(data, indent=2))


def plan_pull(server: FakeGitHubServer, client: GitHubClient, number: int, files: list[dict[str, Any]]) -> JobPlan:
    """Arrange pull request `number` and plan it the way the sensor will: its files, then the plan."""
    server.add_pull(REPO, number, files, head_sha=HEAD, base_sha=BASE)
    return plan_job(client, REPO, head_sha=HEAD, base_sha=BASE, files=client.pull_request_files(REPO, number))


# ---- job keys -----------------------------------------------------------------------------------------------


def test_job_keys() -> None:
    assert job_key("pr", HEAD, 42) == "pr-42-c0ffee1"
    assert job_key("push", HEAD.upper()) == "push-c0ffee1"


@pytest.mark.parametrize(
    ("kind", "sha", "number"),
    [
        ("pr", HEAD, None),
        ("pr", HEAD, 0),
        ("pr", HEAD, True),
        ("push", HEAD, 3),
        ("merge", HEAD, None),
        ("push", "abc", None),
        ("push", "../../etc", None),
        ("pr", "g" * 40, 1),
    ],
)
def test_bad_job_keys_are_refused(kind: str, sha: str, number: Any) -> None:
    with pytest.raises(ValueError):
        job_key(kind, sha, number)


# ---- planning -----------------------------------------------------------------------------------------------


def test_a_new_source_runs_all_its_entries(github_server: FakeGitHubServer, client: GitHubClient) -> None:
    data = source(addresses=[address_entry()], parcels=[parcel_entry()])
    put(github_server, PATH, HEAD, data)

    plan = plan_pull(github_server, client, 1, [file_entry(PATH, "added"), file_entry("README.md", "modified")])

    assert plan.files == (PATH,)
    assert [(e.layer, e.partition_key, e.source_key) for e in plan.entries] == [
        ("addresses", "us/ca/berkeley/city", "us/ca/berkeley"),
        ("parcels", "us/ca/berkeley/county", "us/ca/berkeley"),
    ]
    assert plan.entries[0].version == entry_hash(data["layers"]["addresses"][0], __version__)
    assert (plan.invalid, plan.removed, plan.unchanged) == ({}, (), 0)
    # an added file is not looked for at the base
    assert sum(path.endswith("/contents/" + PATH) for _, path, _ in github_server.received) == 1
    entry = plan.entries[1].layer_entry()
    assert (entry.layer, entry.key, entry.data) == ("parcels", "us/ca/berkeley/county", parcel_entry()["data"])


def test_only_the_changed_entry_of_a_source_runs(github_server: FakeGitHubServer, client: GitHubClient) -> None:
    before = source(addresses=[address_entry("city"), address_entry("county", "https://data.example.com/c.csv")])
    after = copy.deepcopy(before)
    after["layers"]["addresses"][1]["conform"]["street"] = "STREET_NAME"
    put(github_server, PATH, BASE, before)
    put(github_server, PATH, HEAD, after)

    plan = plan_pull(github_server, client, 2, [file_entry(PATH, "modified")])
    assert sum(path.endswith("/contents/" + PATH) for _, path, _ in github_server.received) == 2

    assert [e.partition_key for e in plan.entries] == ["us/ca/berkeley/county"]
    assert plan.unchanged == 1


def test_reformatting_a_source_changes_nothing(github_server: FakeGitHubServer, client: GitHubClient) -> None:
    data = source(addresses=[address_entry()])
    github_server.add_file(REPO, PATH, BASE, json.dumps(data))
    github_server.add_file(REPO, PATH, HEAD, json.dumps(data, indent=4, sort_keys=True))

    plan = plan_pull(github_server, client, 3, [file_entry(PATH)])

    assert (plan.entries, plan.unchanged, plan.empty) == ((), 1, True)
    assert pending_description(plan) == "Checking 0 entries in sources/us/ca/berkeley.json"
    assert final_status([], plan) == ("success", "No changed entries in sources/us/ca/berkeley.json")


def test_an_invalid_file_is_listed_with_its_schema_error(github_server: FakeGitHubServer, client: GitHubClient) -> None:
    bad = source(addresses=[address_entry()])
    del bad["layers"]["addresses"][0]["conform"]["street"]
    bad["layers"]["addresses"][0]["conform"]["number"] = 7
    good_path = "sources/us/ca/oakland.json"
    put(github_server, PATH, HEAD, bad)
    put(github_server, good_path, HEAD, source(parcels=[parcel_entry()]))
    put(github_server, "sources/us/ca/broken.json", HEAD, '{"schema": 2,')

    plan = plan_pull(
        github_server,
        client,
        4,
        [file_entry(PATH, "added"), file_entry(good_path, "added"), file_entry("sources/us/ca/broken.json", "added")],
    )

    assert set(plan.invalid) == {PATH, "sources/us/ca/broken.json"}
    assert any(error.startswith("$.layers.addresses[0].conform") for error in plan.invalid[PATH])
    assert plan.invalid["sources/us/ca/broken.json"][0].startswith("$: invalid JSON at line 1")
    assert [e.partition_key for e in plan.entries] == ["us/ca/oakland/county"]
    state, description = final_status([EntryOutcome("parcels", "us/ca/oakland/county", 10)], plan)
    assert state == "failure"
    assert description.startswith(f"{PATH}: $.layers.addresses[0].conform")
    assert description.endswith("(and 1 other)")


@pytest.mark.parametrize(
    "data", ["/etc/passwd", "file:///etc/passwd", "../../../../etc/passwd", "data/addresses.csv", "gopher://x/y"]
)
def test_local_or_strange_data_is_refused(github_server: FakeGitHubServer, client: GitHubClient, data: str) -> None:
    put(github_server, PATH, HEAD, source(addresses=[address_entry(data=data)]))

    plan = plan_pull(github_server, client, 5, [file_entry(PATH, "added")])

    assert plan.entries == ()
    assert [error.split(":")[0] for error in plan.invalid[PATH]] == ["$.layers.addresses[0].data"]


def test_removed_files_drop_out_and_are_listed(github_server: FakeGitHubServer, client: GitHubClient) -> None:
    plan = plan_pull(
        github_server,
        client,
        6,
        [
            file_entry(PATH, "removed"),
            file_entry("docs/old.md", "removed"),
            file_entry("attic/us/ca/alameda.json", "renamed", previous_filename="sources/us/ca/alameda.json"),
        ],
    )

    assert plan.removed == (PATH, "sources/us/ca/alameda.json")
    assert (plan.entries, plan.files, plan.empty) == ((), (), True)
    assert not any("/contents/" in path for _, path, _ in github_server.received)
    comment = results_comment("pr-6-c0ffee1", HEAD, plan, [])
    assert "#### Removed source files" in comment and f"- {PATH}" in comment


def test_a_renamed_file_is_compared_with_its_previous_name(
    github_server: FakeGitHubServer, client: GitHubClient
) -> None:
    old = "sources/us/ca/berkely.json"
    before = source(addresses=[address_entry()], parcels=[parcel_entry()])
    after = copy.deepcopy(before)
    after["layers"]["parcels"][0]["conform"]["pid"] = "PARCEL_ID"
    put(github_server, old, BASE, before)
    put(github_server, PATH, HEAD, after)

    plan = plan_pull(github_server, client, 7, [file_entry(PATH, "renamed", previous_filename=old)])

    assert [(e.partition_key, e.source_key) for e in plan.entries] == [("us/ca/berkeley/county", "us/ca/berkeley")]
    assert (plan.unchanged, plan.removed, plan.files) == (1, (), (PATH,))


def test_a_change_without_source_files_is_an_empty_plan(github_server: FakeGitHubServer, client: GitHubClient) -> None:
    files = [file_entry("README.md"), file_entry("schema/source.json", "added"), file_entry("sources/notes.txt")]

    plan = plan_pull(github_server, client, 8, files)

    assert plan == JobPlan(head_sha=HEAD, base_sha=BASE)
    assert plan.empty
    assert pending_description(plan) == "No source changes"
    assert final_status([], plan) == ("success", "No source changes")


def test_push_plans_come_from_the_compare_api(github_server: FakeGitHubServer, client: GitHubClient) -> None:
    put(github_server, PATH, HEAD, source(addresses=[address_entry()]))
    put(github_server, PATH, BASE, source(addresses=[address_entry(data="https://data.example.com/old.csv")]))
    github_server.add_compare(REPO, BASE, HEAD, [file_entry(PATH)])

    plan = plan_job(client, REPO, head_sha=HEAD, base_sha=BASE, files=client.compare_files(REPO, BASE, HEAD))

    assert [e.partition_key for e in plan.entries] == ["us/ca/berkeley/city"]
    assert JobPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


def test_skipped_and_invalid_base_entries(github_server: FakeGitHubServer, client: GitHubClient) -> None:
    skipped = dict(address_entry("legacy"), skip=True)
    put(github_server, PATH, HEAD, source(addresses=[address_entry(), skipped]))
    put(github_server, PATH, BASE, '{"not": "a source"}')

    plan = plan_pull(github_server, client, 9, [file_entry(PATH)])

    assert [e.partition_key for e in plan.entries] == ["us/ca/berkeley/city"]  # invalid base: all new
    assert plan.skipped == ("addresses/us/ca/berkeley/legacy",)


def test_an_oversized_or_missing_file_is_invalid(github_server: FakeGitHubServer) -> None:
    small = GitHubClient(github_server.url(), GITHUB_TOKEN, max_file_bytes=100, retries=0)
    put(github_server, PATH, HEAD, source(addresses=[address_entry()]))

    plan = plan_pull(github_server, small, 10, [file_entry(PATH, "added"), file_entry("sources/gone.json", "added")])

    assert plan.entries == ()
    assert "over 100" in plan.invalid[PATH][0]
    assert "not in commit c0ffee1" in plan.invalid["sources/gone.json"][0]


def test_github_unavailable_is_not_the_files_fault(github_server: FakeGitHubServer) -> None:
    flaky = GitHubClient(github_server.url(), GITHUB_TOKEN, retries=0)
    github_server.fail_next(1, status=503)
    with pytest.raises(GitHubUnavailable):
        plan_job(flaky, REPO, head_sha=HEAD, base_sha=BASE, files=[ChangedFile(PATH, "modified")])


# ---- reporting ----------------------------------------------------------------------------------------------


def planned(n: int, files: int = 1) -> JobPlan:
    data = source(addresses=[address_entry()])
    entries = tuple(
        PlannedEntry("addresses", f"us/ca/s{i}/city", f"us/ca/s{i}", "city", "v", f"sources/us/ca/s{i}.json", data)
        for i in range(n)
    )
    return JobPlan(HEAD, BASE, entries=entries, files=tuple(f"sources/us/ca/s{i}.json" for i in range(files)))


def test_status_descriptions() -> None:
    assert pending_description(planned(1)) == "Checking 1 entry in sources/us/ca/s0.json"
    assert pending_description(planned(3, files=2)) == "Checking 3 entries in 2 files"
    outcomes = [EntryOutcome("addresses", "us/ca/a/city", 1200), EntryOutcome("parcels", "us/ca/a/county", 34)]
    assert final_status(outcomes) == ("success", "2 entries processed: 1,234 features")
    assert final_status(outcomes[:1]) == ("success", "1 entry processed: 1,200 features")
    failing = [*outcomes, EntryOutcome("buildings", "us/ca/a/city", 0, "no features"), EntryOutcome("x", "y", 0, "z")]
    assert final_status(failing) == ("failure", "buildings us/ca/a/city: no features (and 1 other)")
    assert error_description("GitHub unavailable") == "The check could not run: GitHub unavailable"


def test_descriptions_stay_within_140_characters() -> None:
    long_path = "sources/" + "/".join(["very-long-directory-name"] * 12) + ".json"
    plan = JobPlan(HEAD, BASE, files=(long_path,), invalid={long_path: ("$.layers: " + "x" * 500,)})
    problem = "the download failed:\n" + "connection reset " * 40
    outcomes = [EntryOutcome("addresses", "us/" + "k" * 200, None, problem)] * 5
    descriptions = [
        pending_description(plan),
        final_status(outcomes)[1],
        final_status(outcomes, plan)[1],
        error_description("Traceback " * 100),
    ]
    for description in descriptions:
        assert len(description) <= STATUS_DESCRIPTION_LIMIT
        assert "\n" not in description
    assert descriptions[1].endswith("… (and 4 others)")
    assert descriptions[2].endswith("… (and 5 others)")


def test_results_comment_tables() -> None:
    plan = JobPlan(
        HEAD,
        BASE,
        entries=planned(3).entries,
        invalid={"sources/us/ca/bad.json": ("$.layers.addresses[0].data: refused <script>",)},
        removed=("sources/us/ca/old.json",),
        unchanged=2,
        files=("sources/us/ca/s0.json", "sources/us/ca/bad.json"),
    )
    links = {"preview": "https://x/p.png", "sample": "https://x/s.json", "output": "https://x/o.csv.gz"}
    outcomes = [
        EntryOutcome("addresses", "us/ca/s0/city", 12345, None, links),
        EntryOutcome("addresses", "us/ca/s1/city", 0, "no | features\nat all"),
    ]

    comment = results_comment("pr-5-c0ffee1", HEAD, plan, outcomes, "https://dagster.example/runs/abc")

    assert comment.startswith(RESULTS_MARKER + "\n")
    assert comment.count(RESULTS_MARKER) == 1
    assert "pr-5-c0ffee1" in comment and "[run](https://dagster.example/runs/abc)" in comment
    assert "#### addresses" in comment
    assert (
        "| us/ca/s0/city | 12,345 | ✅ | [preview](https://x/p.png) · [sample](https://x/s.json) · "
        "[output](https://x/o.csv.gz) |" in comment
    )
    assert "| us/ca/s1/city | 0 | ❌ no \\| features at all | – |" in comment
    assert "| us/ca/s2/city | – | ❌ no result" in comment
    assert "- sources/us/ca/bad.json\n  - $.layers.addresses\\[0\\].data: refused &lt;script&gt;" in comment
    assert "- sources/us/ca/old.json" in comment
    assert "2 entries unchanged" in comment


def test_contributor_text_makes_no_link_image_or_mention_in_the_comment() -> None:
    plan = JobPlan(head_sha=HEAD, base_sha=BASE, files=("sources/us/ca/s0.json",))
    problem = "see [here](https://evil.example) ![x](https://evil.example/p.png) cc @openaddresses/maintainers"
    comment = results_comment("pr-5-c0ffee1", HEAD, plan, [EntryOutcome("addresses", "us/ca/s0/city", None, problem)])
    assert "\\[here\\](https://evil.example) !\\[x\\](https://evil.example/p.png)" in comment
    assert "@&#8203;openaddresses/maintainers" in comment and "@openaddresses" not in comment


def test_results_comment_is_cut_to_githubs_limit() -> None:
    plan = planned(3000)
    outcomes = [EntryOutcome("addresses", e.partition_key, 1, "p" * 40) for e in plan.entries]

    comment = results_comment("push-c0ffee1", HEAD, plan, outcomes, "https://dagster.example/runs/abc")

    assert len(comment) <= COMMENT_LIMIT
    assert comment.startswith(RESULTS_MARKER)
    assert comment.endswith("see [the run](https://dagster.example/runs/abc) for all of them._\n")
    assert "| us/ca/s0/city |" in comment and "| us/ca/s2999/city |" not in comment


# ---- hostile changes ----------------------------------------------------------------------------------------


def test_paths_that_climb_are_refused_before_any_api_call(
    github_server: FakeGitHubServer, client: GitHubClient
) -> None:
    climbing = "sources/../../x.json"
    files = [
        ChangedFile(climbing, "added"),
        ChangedFile("sources/us/x.json", "renamed", "sources/us/../../../repos/o/r/x.json"),
    ]
    plan = plan_job(client, REPO, head_sha=HEAD, base_sha=BASE, files=files)
    assert plan.invalid == {
        climbing: (f"$: path {climbing!r} refused: it has an empty, '.' or '..' segment",),
        "sources/us/x.json": (
            "$: path 'sources/us/../../../repos/o/r/x.json' refused: it has an empty, '.' or '..' segment",
        ),
    }
    assert not plan.entries and github_server.received == []


def test_every_problem_planning_a_file_is_that_files_error(
    github_server: FakeGitHubServer, client: GitHubClient
) -> None:
    hostile = {
        "sources/us/ca/a.json": source(addresses=[{**address_entry(), "license": {"url": "http://["}}]),
        "sources/us/ca/b.json": source(addresses=[address_entry(data="http://[::1")]),
        "sources/us/ca/c.json": source(addresses=[address_entry(name="ci\ud800ty")]),  # a lone surrogate, as \ud800
    }
    for path, data in hostile.items():
        put(github_server, path, HEAD, data)
    put(github_server, PATH, HEAD, source(addresses=[address_entry()]))
    plan = plan_pull(github_server, client, 9, [file_entry(path, "added") for path in [*hostile, PATH]])
    assert sorted(plan.invalid) == sorted(hostile)
    assert [entry.partition_key for entry in plan.entries] == ["us/ca/berkeley/city"]
    for path, errors in plan.invalid.items():
        assert errors and errors[0].startswith("$"), (path, errors)
    assert "Invalid IPv6 URL" in plan.invalid["sources/us/ca/b.json"][0]
    state, description = final_status([], plan)
    assert state == "failure" and description.startswith("sources/us/ca/a.json: $")


def test_files_are_read_concurrently_within_a_bound_and_planning_stops_at_its_deadline(
    github_server: FakeGitHubServer, client: GitHubClient
) -> None:
    paths = [f"sources/us/ca/city{n}.json" for n in range(12)]
    for path in paths:
        put(github_server, path, HEAD, source(addresses=[address_entry()]))
    github_server.delay = 0.2
    files = [ChangedFile(path, "added") for path in paths]
    plan = plan_job(client, REPO, head_sha=HEAD, base_sha=BASE, files=files, concurrency=4)
    assert len(plan.entries) == 12 and 1 < github_server.most_at_once <= 4
    with pytest.raises(PlanningTimedOut):
        plan_job(client, REPO, head_sha=HEAD, base_sha=BASE, files=files, deadline=0.0)
