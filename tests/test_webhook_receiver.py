"""The GitHub webhook receiver over real HTTP: uvicorn in a thread, deliveries signed for real, stored in SQLite
and in PostgreSQL over TCP, read back from the database."""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import sqlalchemy as sa
import yaml

from oa_dagster.cli.hooks import add_hook_commands
from oa_dagster.platform.store import LocalStore
from oa_dagster.webhook.app import create_app
from oa_dagster.webhook.deliveries import DeliveryFields, DeliveryStore
from oa_dagster.webhook.hooks import DEFAULT_MAX_BODY_BYTES, hook_routes
from oa_dagster.webhook.settings import PG_ENV, PG_PORT, default_database_url, hook_settings_from_env
from oa_dagster.webhook.signatures import parse_secrets, sign, verify
from tests.ci_deliveries import BASE, BEFORE, HEAD, REPO, SECRET, Receiver, comment_payload, pr_payload, push_payload
from tests.platform_helpers import ROOT, postgres_or_skip
from tests.servers.apps import AppServers


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh deliveries database: a SQLite file in a folder not created yet, or a throwaway Postgres database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/dagster_home/webhook.db"
    else:
        with postgres_or_skip("oa_webhook") as url:
            yield url


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Receiver]]:
    """Start the web app (downloads and `/hook`) on a free port; servers stop and stores close at the end."""
    servers = AppServers()
    stores: list[DeliveryStore] = []

    def run(url: str | None, secrets: list[str] | None = None, **options: Any) -> Receiver:
        store = DeliveryStore(url, maintenance_cache_seconds=0) if url else None
        stores.extend([store] if store else [])
        hooks = hook_routes(store, [SECRET] if secrets is None else secrets, **options)
        app = create_app(LocalStore(tmp_path / "data"), hooks=hooks)
        return Receiver(servers.start(app), store)  # type: ignore[arg-type]

    yield run
    servers.stop_all()
    for store in stores:
        store.close()


def hooks_cli(*argv: str) -> int:
    """`oa-dagster hooks ...` through the parser the CLI registers (no environment: `--db` names the database)."""
    parser = argparse.ArgumentParser(prog="oa-dagster")
    add_hook_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args, env={}))


# -- recording -------------------------------------------------------------------------------------------------


def test_pull_request_delivery_is_recorded_with_its_fields(db_url: str, start: Callable[..., Receiver]) -> None:
    receiver = start(db_url)
    payload = pr_payload("synchronize")
    before = datetime.now(UTC)
    response = receiver.post("pull_request", payload, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "recorded" and answer["delivery"] == "72d3162e-cc78-11e3-81ab-4c9367dc0958"

    [row] = DeliveryStore(db_url).deliveries_after(0, 10)
    assert row.id == answer["id"] and row.delivery_id == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert (row.event, row.action, row.repository, row.pr_number) == ("pull_request", "synchronize", REPO, 42)
    assert (row.head_sha, row.base_sha, row.ref) == (HEAD, BASE, "add-berkeley")
    assert (row.head_repository, row.merged, row.sender) == ("someone/openaddresses", False, "someone")
    assert before <= row.received_at <= datetime.now(UTC) and row.received_at.tzinfo is not None
    assert row.payload == json.dumps(payload)  # the raw body, byte for byte
    assert receiver.store.count() == 1


def test_push_and_comment_deliveries_keep_what_the_sensor_needs(db_url: str, start: Callable[..., Receiver]) -> None:
    receiver = start(db_url)
    # NUL and an unpaired surrogate are valid JSON escapes; Postgres text takes neither, so they are replaced
    odd_body = "re-run this, please \u0000 \ud800 ok"
    for event, payload in [
        ("push", push_payload()),
        ("push", push_payload(deleted=True)),
        ("issue_comment", comment_payload(odd_body)),
        ("ping", {"zen": "Keep it simple.", "hook_id": 7}),
    ]:
        response = receiver.post(event, payload)
        assert response.status_code == 200 and response.json()["status"] == "recorded", response.text

    push, deletion, comment, ping = receiver.store.deliveries_after(0, 10)
    assert (push.event, push.ref, push.before_sha, push.head_sha, push.deleted) == (
        "push",
        "refs/heads/add-berkeley",
        BEFORE,
        HEAD,
        False,
    )
    assert (push.repository, push.pr_number, push.action) == (REPO, None, None)
    assert (deletion.deleted, deletion.head_sha) == (True, "0" * 40)
    assert (comment.event, comment.action, comment.pr_number, comment.head_sha) == (
        "issue_comment",
        "created",
        42,
        None,
    )
    assert (comment.comment_author, comment.author_association) == ("maintainer", "MEMBER")
    assert comment.comment_body == "re-run this, please \ufffd ? ok"
    assert json.loads(comment.payload or "")["comment"]["body"] == odd_body  # the raw payload keeps the escapes
    assert (ping.event, ping.repository) == ("ping", None)  # pings are recorded: proof the hook works end to end


def test_redelivery_is_recorded_once(db_url: str, start: Callable[..., Receiver]) -> None:
    receiver = start(db_url)
    first = receiver.post("pull_request", pr_payload(), delivery="d-1")
    again = receiver.post("pull_request", pr_payload(), delivery="d-1")
    assert first.status_code == 200 and first.json()["status"] == "recorded"
    assert again.status_code == 200 and again.json() == {
        "status": "already recorded",
        "delivery": "d-1",
        "id": first.json()["id"],
    }
    assert receiver.store.count() == 1


def test_concurrent_deliveries_are_recorded_exactly_once(db_url: str, start: Callable[..., Receiver]) -> None:
    """50 deliveries at once, 10 of them redeliveries racing their original; a reader paging with an id cursor
    meanwhile (as the sensor does) sees every delivery exactly once: no id becomes visible before a smaller one."""
    receiver = start(db_url)
    ids = [f"delivery-{i}" for i in range(40)]
    sent = ids + ids[:10]
    barrier = threading.Barrier(len(sent))

    def deliver(delivery: str) -> requests.Response:
        barrier.wait()
        return receiver.post("pull_request", pr_payload(number=int(delivery.split("-")[1]) + 1), delivery=delivery)

    reader, seen, stop = DeliveryStore(db_url), [], threading.Event()

    def follow() -> None:
        cursor = 0
        while True:
            done = stop.is_set()  # read before the page, so the last page is taken after every answer
            page = reader.deliveries_after(cursor, 7, with_payload=False)
            seen.extend(row.delivery_id for row in page)
            cursor = page[-1].id if page else cursor
            if done and not page:
                return

    follower = threading.Thread(target=follow)
    follower.start()
    with ThreadPoolExecutor(len(sent)) as pool:
        answers = list(pool.map(deliver, sent))
    stop.set()
    follower.join(timeout=60)
    reader.close()

    assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200]
    statuses = [a.json()["status"] for a in answers]
    assert statuses.count("recorded") == 40 and statuses.count("already recorded") == 10
    assert receiver.store.count() == 40
    assert sorted(seen) == sorted(ids)  # each once, none skipped by the cursor
    by_delivery = {a.json()["delivery"]: a.json()["id"] for a in answers if a.json()["status"] == "recorded"}
    assert all(a.json()["id"] == by_delivery[a.json()["delivery"]] for a in answers)


def test_the_cursor_pages_through_deliveries_in_id_order(tmp_path: Path) -> None:
    store = DeliveryStore(f"sqlite:///{tmp_path}/webhook.db")
    for i in range(7):
        store.record(DeliveryFields(delivery_id=f"d{i}", event="push"), payload=f'{{"n": {i}}}')
    pages, cursor = [], 0
    while page := store.deliveries_after(cursor, 3):
        pages.append([row.delivery_id for row in page])
        cursor = page[-1].id
    assert pages == [["d0", "d1", "d2"], ["d3", "d4", "d5"], ["d6"]]
    light = store.deliveries_after(0, 1, with_payload=False)[0]
    assert light.payload is None and store.payload(light.id) == '{"n": 0}'
    assert [row.delivery_id for row in store.recent(2)] == ["d6", "d5"]
    with pytest.raises(ValueError, match="limit"):
        store.deliveries_after(0, 0)
    store.close()


# -- refusals ---------------------------------------------------------------------------------------------------


def test_unsigned_or_wrongly_signed_deliveries_are_refused(db_url: str, start: Callable[..., Receiver]) -> None:
    receiver = start(db_url)
    body = json.dumps(pr_payload()).encode()
    other = json.dumps(pr_payload(number=43)).encode()
    unsigned = receiver.post("pull_request", body, secret=None)
    assert unsigned.status_code == 401 and unsigned.json() == {"error": "missing signature"}
    refused = [
        receiver.post("pull_request", body, secret="not-the-secret"),
        receiver.post("pull_request", body, signature=sign(SECRET, other)),  # right secret, another body
        receiver.post("pull_request", body, signature=sign(SECRET, body).replace("sha256=", "sha1=")),
        receiver.post("pull_request", body, signature=sign(SECRET, body)[:-2]),
        receiver.post("pull_request", body, signature="sha256=" + "é" * 64),
    ]  # not even ASCII
    assert [r.status_code for r in refused] == [401] * 5
    assert all(r.json() == {"error": "signature does not match"} for r in refused)
    assert receiver.store.count() == 0


def test_the_signature_is_checked_before_the_body_is_parsed(tmp_path: Path, start: Callable[..., Receiver]) -> None:
    receiver = start(f"sqlite:///{tmp_path}/webhook.db")
    assert receiver.post("pull_request", b"{not json", secret="wrong").status_code == 401
    assert receiver.post(None, b"{not json", secret="wrong").status_code == 401  # not even the headers
    assert receiver.post("pull_request", b"{not json").status_code == 400  # the same body, well signed


def test_second_secret_of_the_list_verifies(tmp_path: Path, start: Callable[..., Receiver]) -> None:
    """Rotation: GitHub signs with the new secret while the old one is still accepted, then the other way."""
    settings = hook_settings_from_env(
        {"OA_WEBHOOK_SECRET": " old-secret , new-secret,,", "OA_WEBHOOK_DB": f"sqlite:///{tmp_path}/webhook.db"}
    )
    assert settings.secrets == ["old-secret", "new-secret"] and settings.database_url.endswith("/webhook.db")
    receiver = start(settings.database_url, settings.secrets)
    assert receiver.post("push", push_payload(), secret="new-secret").status_code == 200
    assert receiver.post("push", push_payload(), secret="old-secret").status_code == 200
    assert receiver.post("push", push_payload(), secret="old-secret,new-secret").status_code == 401
    assert receiver.store.count() == 2


def test_without_a_secret_nothing_is_accepted(tmp_path: Path, start: Callable[..., Receiver]) -> None:
    assert hook_settings_from_env({"OA_WEBHOOK_SECRET": " , "}) == ([], None)
    url = f"sqlite:///{tmp_path}/webhook.db"
    for receiver in (start(url, []), start(None, [])):
        for secret in (SECRET, "", None):
            response = receiver.post("pull_request", pr_payload(), secret=secret)
            assert response.status_code == 503 and "OA_WEBHOOK_SECRET" in response.json()["error"]
    assert DeliveryStore(url).count() == 0
    assert not verify([], b"{}", sign("", b"{}"))
    with pytest.raises(ValueError, match="may not be empty"):  # it would verify deliveries signed with ""
        hook_routes(None, ["real-secret", ""])


def test_body_over_the_cap_is_refused_before_it_is_read(tmp_path: Path, start: Callable[..., Receiver]) -> None:
    default = start(f"sqlite:///{tmp_path}/default.db")
    small = start(f"sqlite:///{tmp_path}/small.db", max_body_bytes=64 * 1024)
    body = json.dumps({**push_payload(), "padding": "x" * 70_000}).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "big-1",
        "X-Hub-Signature-256": sign(SECRET, body),
    }  # well signed: the size is checked first

    # a declared length over the cap: the answer comes before a byte of the body is sent
    status, answer = raw_post(default.base, {**headers, "Content-Length": str(DEFAULT_MAX_BODY_BYTES + 1)}, [])
    assert status == 413 and "10,485,760" in json.loads(answer)["error"]
    status, _ = raw_post(small.base, {**headers, "Content-Length": str(len(body))}, [])
    assert status == 413
    # chunked, no length: refused once the cap is passed, without waiting for the end of the body
    cut = body[: 64 * 1024 + 1]
    status, _ = raw_post(
        small.base,
        {**headers, "Transfer-Encoding": "chunked"},
        [cut[i : i + 1024] for i in range(0, len(cut), 1024)],
        chunked=True,
    )
    assert status == 413
    # the same delivery under the cap goes through, chunked too
    fits = json.dumps(push_payload()).encode()
    fits_headers = {**headers, "X-Hub-Signature-256": sign(SECRET, fits), "Transfer-Encoding": "chunked"}
    status, answer = raw_post(small.base, fits_headers, [fits[:100], fits[100:]], chunked=True, end=True)
    assert status == 200 and json.loads(answer)["status"] == "recorded"
    assert small.store.count() == 1 and default.store.count() == 0


def raw_post(
    base: str, headers: dict[str, str], parts: list[bytes], *, chunked: bool = False, end: bool = False
) -> tuple[int, bytes]:
    """POST `/hook` sending exactly `parts` (chunk-encoded if `chunked`, with the last chunk if `end`), then read
    the answer: the server must answer without the rest of the body."""
    address = urlsplit(base)
    conn = http.client.HTTPConnection(address.hostname or "", address.port, timeout=30)
    try:
        conn.putrequest("POST", "/hook")
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        for part in parts:
            conn.send(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
        if end:
            conn.send(b"0\r\n\r\n")
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_malformed_deliveries_are_a_400_naming_the_problem(db_url: str, start: Callable[..., Receiver]) -> None:
    receiver = start(db_url)
    no_head = pr_payload()
    del no_head["pull_request"]["head"]["sha"]
    bad_number = {**pr_payload(), "number": "42"}
    bad_sha = pr_payload(head="not-a-sha")
    cases: list[tuple[str | None, bytes | dict[str, Any], dict[str, str], str]] = [
        ("pull_request", b"\xff\xfe{}", {}, "not UTF-8"),
        ("pull_request", b"{not json", {}, "not JSON"),
        ("pull_request", b"[" * 100_000, {}, "not JSON"),  # nested beyond the parser's recursion limit
        ("pull_request", b"1" * 5000, {}, "not JSON"),  # an integer too long to convert
        ("pull_request", b"[1, 2]", {}, "JSON list, not an object"),
        (None, pr_payload(), {}, "missing X-GitHub-Event"),
        ("pull_request", pr_payload(), {"X-GitHub-Delivery": ""}, "X-GitHub-Delivery"),
        ("pull_request", pr_payload(), {"X-GitHub-Delivery": "a b"}, "X-GitHub-Delivery"),
        ("pull_request", no_head, {}, "pull_request payload: pull_request.head.sha: missing"),
        ("pull_request", bad_number, {}, "number: expected a positive number, got '42'"),
        ("pull_request", bad_sha, {}, "pull_request.head.sha: expected a commit id"),
        ("pull_request", {**pr_payload(), "pull_request": []}, {}, "pull_request: expected an object, got list"),
        ("push", {**push_payload(), "deleted": "no"}, {}, "deleted: expected true or false"),
        ("push", {**push_payload(), "ref": "r" * 2000}, {}, "ref: 2,000 characters, over the limit"),
        ("issue_comment", {**comment_payload(), "comment": {"body": 5}}, {}, "comment.body: expected a string"),
        ("pull_request", pr_payload(), {"Content-Type": "application/x-www-form-urlencoded"}, "application/json"),
    ]
    for event, body, headers, message in cases:
        response = receiver.post(event, body, headers=headers)
        assert response.status_code == 400 and message in response.json()["error"], (message, response.text)
    assert receiver.store.count() == 0


def test_unused_events_and_actions_are_accepted_but_not_recorded(
    tmp_path: Path, start: Callable[..., Receiver]
) -> None:
    receiver = start(f"sqlite:///{tmp_path}/webhook.db")
    for event, payload in [
        ("check_run", {"action": "completed"}),
        ("pull_request", pr_payload("labeled")),
        ("issue_comment", {**comment_payload(), "action": "deleted"}),
        ("issue_comment", comment_payload(on_pr=False)),
    ]:
        response = receiver.post(event, payload)
        assert response.status_code == 202 and response.json()["status"] == "ignored", response.text
    assert receiver.post("ping", {"zen": "Design for failure."}).status_code == 200
    assert [row.event for row in receiver.store.recent(10)] == ["ping"]


# -- availability ---------------------------------------------------------------------------------------------


def test_maintenance_refuses_deliveries_until_switched_off(
    db_url: str, start: Callable[..., Receiver], capsys: pytest.CaptureFixture[str]
) -> None:
    receiver = start(db_url)
    assert hooks_cli("hooks", "maintenance", "status", "--db", db_url) == 0
    assert capsys.readouterr().out.startswith("maintenance off")
    assert hooks_cli("hooks", "maintenance", "on", "--db", db_url) == 0  # another process, as an operator would
    assert capsys.readouterr().out.startswith("maintenance on since ")

    refused = receiver.post("pull_request", pr_payload(), delivery="during")
    assert refused.status_code == 503 and refused.json()["error"].startswith("maintenance")
    assert receiver.store.count() == 0

    assert hooks_cli("hooks", "maintenance", "off", "--db", db_url) == 0
    redelivered = receiver.post("pull_request", pr_payload(), delivery="during")
    assert redelivered.status_code == 200 and redelivered.json()["status"] == "recorded"
    assert hooks_cli("hooks", "maintenance", "status", "--db", db_url) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("maintenance off since ")


def test_the_maintenance_switch_is_read_at_most_once_per_cache_period(tmp_path: Path) -> None:
    url, now = f"sqlite:///{tmp_path}/webhook.db", [100.0]
    serving = DeliveryStore(url, maintenance_cache_seconds=1.0, clock=lambda: now[0])
    operator = DeliveryStore(url)
    assert serving.maintenance() is False
    operator.set_maintenance(True)
    now[0] += 0.5
    assert serving.cached_maintenance() is False and serving.maintenance() is False  # still the cached value
    now[0] += 0.5
    assert serving.cached_maintenance() is None and serving.maintenance() is True  # read again
    serving.set_maintenance(False)
    assert serving.cached_maintenance() is False and operator.maintenance_state().on is False
    serving.close()
    operator.close()


def test_an_unreachable_database_is_a_503_and_recovers(
    tmp_path: Path, start: Callable[..., Receiver], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="oa_dagster.webhook")
    nothing_listens = start("postgresql+psycopg2://oa:pg-password@127.0.0.1:1/deliveries")
    response = nothing_listens.post("pull_request", pr_payload())
    assert response.status_code == 503 and "unavailable" in response.json()["error"]
    assert "127.0.0.1:1" in caplog.text and "pg-password" not in caplog.text + response.text

    blocked = tmp_path / "home"
    blocked.write_text("a file where the database's folder should be")
    sqlite = start(f"sqlite:///{blocked}/webhook.db")
    assert sqlite.post("push", push_payload(), delivery="p-1").status_code == 503
    blocked.unlink()  # the folder can be made now: no restart needed
    assert sqlite.post("push", push_payload(), delivery="p-1").status_code == 200
    assert sqlite.store.count() == 1


@pytest.mark.parametrize("damage", ["not a database", "torn pages"])
def test_a_corrupt_deliveries_database_is_a_503_with_one_log_line(
    tmp_path: Path, start: Callable[..., Receiver], caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    """A SQLite file that is no database, or one whose pages were overwritten: every delivery is a 503 with one
    log line naming the file, never a 500 with a traceback."""
    path = tmp_path / "webhook.db"
    healthy = start(f"sqlite:///{path}")
    assert healthy.post("push", push_payload()).status_code == 200
    assert healthy.store is not None
    healthy.store.close()
    if damage == "not a database":
        path.write_bytes(b"these bytes were never a SQLite database" * 200)
    else:
        data = bytearray(path.read_bytes())
        data[100:] = b"\xa5" * (len(data) - 100)  # the header stays, every page after it is garbage
        path.write_bytes(bytes(data))
        for extra in tmp_path.glob("webhook.db-*"):  # the WAL would restore the pages
            extra.unlink()
    caplog.set_level(logging.INFO)
    caplog.clear()
    corrupt = start(f"sqlite:///{path}")
    response = corrupt.post("pull_request", pr_payload(), delivery="after-corruption")
    assert response.status_code == 503 and "unavailable" in response.json()["error"], response.text
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(records) == 1 and records[0].exc_info is None, [r.getMessage() for r in records]
    assert str(path) in records[0].getMessage() and "after-corruption" in records[0].getMessage()


def test_secrets_and_signatures_never_reach_logs_or_answers(
    tmp_path: Path, start: Callable[..., Receiver], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver = start(f"sqlite:///{tmp_path}/webhook.db")
    body = json.dumps(pr_payload()).encode()
    answers = [
        receiver.post("pull_request", body),
        receiver.post("pull_request", body, secret="close-but-no"),
        receiver.post("pull_request", body, secret=None),
        receiver.post("pull_request", b"[]"),
        receiver.post("check_suite", {"action": "requested"}),
    ]
    assert [a.status_code for a in answers] == [200, 401, 401, 400, 202]
    text = caplog.text + "".join(a.text + str(a.headers) for a in answers)
    for secret_thing in (SECRET, "close-but-no", sign(SECRET, body)[7:], sign("close-but-no", body)[7:]):
        assert secret_thing not in text
    assert "refused with 401" in caplog.text  # the refusals are logged, without the secret material


def test_the_app_keeps_its_other_routes(tmp_path: Path, start: Callable[..., Receiver]) -> None:
    receiver = start(f"sqlite:///{tmp_path}/webhook.db")
    assert requests.get(f"{receiver.base}/health", timeout=10).json()["ok"] is True
    assert requests.get(f"{receiver.base}/hook", timeout=10).status_code == 405
    assert "/hook" not in [getattr(r, "path", "") for r in create_app(LocalStore(tmp_path / "d")).routes]


# -- the command line and the configuration ------------------------------------------------------------------


def test_hooks_list_shows_recent_deliveries(
    tmp_path: Path, start: Callable[..., Receiver], capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/webhook.db"
    assert hooks_cli("hooks", "list", "--db", url) == 0
    assert "(no deliveries in sqlite:///" in capsys.readouterr().out
    receiver = start(url)
    receiver.post("pull_request", pr_payload(), delivery="pr-delivery")
    receiver.post("push", push_payload(), delivery="push-delivery")
    assert hooks_cli("hooks", "list", "--limit", "5", "--db", url) == 0
    header, newest, oldest = capsys.readouterr().out.splitlines()
    assert header.split() == ["id", "delivery", "event", "action", "repository", "PR", "sha", "received", "(UTC)"]
    assert newest.split()[:5] == ["2", "push-delivery", "push", REPO, HEAD[:12]]
    assert oldest.split()[:7] == ["1", "pr-delivery", "pull_request", "opened", REPO, "42", HEAD[:12]]
    assert hooks_cli("hooks", "list", "--limit", "0", "--db", url) == 2
    assert hooks_cli("hooks", "list", "--db", "postgresql+psycopg2://oa@127.0.0.1:1/x") == 1
    assert "error: deliveries database" in capsys.readouterr().err


def test_default_database_url_follows_the_deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_database_url({"OA_WEBHOOK_DB": "postgresql+psycopg2://x@db/hooks", "DAGSTER_HOME": "/h"}) == (
        "postgresql+psycopg2://x@db/hooks"
    )
    pg = {
        "DAGSTER_PG_HOST": "db.internal",
        "DAGSTER_PG_USER": "dagster",
        "DAGSTER_PG_PASSWORD": "p@ss:w/rd#1",
        "DAGSTER_PG_DB": "dagster",
        "DAGSTER_HOME": "/h",
    }
    url = sa.make_url(default_database_url(pg))
    assert (url.drivername, url.host, url.port, url.username, url.password, url.database) == (
        "postgresql+psycopg2",
        "db.internal",
        PG_PORT,
        "dagster",
        "p@ss:w/rd#1",
        "dagster",
    )
    with pytest.raises(ValueError, match="DAGSTER_PG_PASSWORD, DAGSTER_PG_DB not set"):
        default_database_url({"DAGSTER_PG_HOST": "db", "DAGSTER_PG_USER": "dagster"})
    with pytest.raises(ValueError, match="OA_ENV=production"):
        default_database_url({"OA_ENV": "production"})
    assert default_database_url({"DAGSTER_HOME": str(tmp_path)}) == f"sqlite:///{tmp_path}/webhook.db"
    monkeypatch.chdir(tmp_path)
    assert default_database_url({}) == f"sqlite:///{Path.cwd()}/.oa-dagster/dagster_home/webhook.db"

    # the same variables and port as the production instance: deliveries share its Postgres
    postgres = yaml.safe_load((ROOT / "deploy/production/dagster.yaml").read_text())["storage"]["postgres"]
    db = postgres["postgres_db"]
    assert [db[k]["env"] for k in ("hostname", "username", "password", "db_name")] == list(PG_ENV)
    assert (db["port"], db["scheme"]) == (PG_PORT, "postgresql+psycopg2")


def test_secret_parsing_and_signing() -> None:
    assert parse_secrets(None) == [] and parse_secrets("a, b ,") == ["a", "b"]
    assert sign("It's a Secret to Everybody", b"Hello, World!") == (  # GitHub's documented example
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )
    assert verify(
        ["x", "It's a Secret to Everybody"],
        b"Hello, World!",
        "sha256=757107EA0EB2509FC211221CCE984B8A37570B6D7586C22C46F4379C8B043E17",
    )


def test_the_hooks_commands_are_part_of_oa_dagster(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`oa-dagster hooks maintenance …` works through the real command line, not only through its own parser."""
    from oa_dagster.cli import main

    db = f"sqlite:///{tmp_path / 'hooks.db'}"
    assert main(["hooks", "maintenance", "on", "--db", db]) == 0
    assert main(["hooks", "maintenance", "status", "--db", db]) == 0
    assert "on" in capsys.readouterr().out
    assert main(["hooks", "list", "--db", db]) == 0


def test_oa_dagster_serve_receives_signed_deliveries_when_a_secret_is_set(tmp_path: Path) -> None:
    """The real command: `oa-dagster serve` with OA_WEBHOOK_SECRET records a signed delivery in OA_WEBHOOK_DB;
    without a secret the same route answers 503."""
    import os
    import socket
    import subprocess
    import sys

    import requests

    from oa_dagster.webhook.deliveries import DeliveryStore
    from oa_dagster.webhook.signatures import sign

    db = f"sqlite:///{tmp_path / 'hooks.db'}"
    body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()

    def serve(extra_env: dict[str, str]) -> tuple[subprocess.Popen, str]:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OA_", "DAGSTER_PG_"))}
        env.update({"OA_ENV": "local", "OA_DATA_DIR": str(tmp_path / "data"), **extra_env})
        proc = subprocess.Popen(
            [sys.executable, "-m", "oa_dagster.cli", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                requests.get(url + "/health", timeout=1)
                return proc, url
            except requests.ConnectionError:
                time.sleep(0.05)
        proc.kill()
        raise AssertionError(proc.communicate()[0])

    def ping(url: str, secret: str) -> requests.Response:
        headers = {
            "X-GitHub-Event": "ping",
            "X-GitHub-Delivery": "d-1",
            "Content-Type": "application/json",
            "X-Hub-Signature-256": sign(secret, body),
        }
        return requests.post(url + "/hook", data=body, headers=headers, timeout=10)

    proc, url = serve({"OA_WEBHOOK_SECRET": "old-secret,new-secret", "OA_WEBHOOK_DB": db})
    try:
        assert ping(url, "new-secret").status_code == 200
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    assert "new-secret" not in output and "/hook" in output
    assert [d.delivery_id for d in DeliveryStore(db).recent(10)] == ["d-1"]

    proc, url = serve({})
    try:
        assert ping(url, "new-secret").status_code == 503
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
