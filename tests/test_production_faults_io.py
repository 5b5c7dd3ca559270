"""Faults of issue 18 that hit the platform's I/O, with the real servers: S3 answering 503 (a fault-injecting proxy
in front of moto, `tests/servers/s3_faults.py`) while a layer run publishes through the production S3 store, and
`oa-dagster serve` killed and restarted during a burst of deliveries that a client redelivers as GitHub does."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import pytest
import requests

from oa_dagster.platform import store_layout as layout
from oa_dagster.platform.store import S3Store, get_json
from oa_dagster.resources.deployments import S3_RETRIES, s3_resources
from oa_dagster.webhook.deliveries import DeliveryStore
from tests.ci_deliveries import SECRET, Receiver, pr_payload
from tests.platform_helpers import (
    city_sources,
    local,
    materialize_catalog,
    materialize_range,
    partition_status,
    postgres_or_skip,
    serve_process,
    wait_for,
    write_csv,
)
from tests.servers.fixtures import MOTO_CREDS, moto_bucket
from tests.servers.s3_faults import WRITES, Outage, S3FaultProxy

KEY = "us/xx/city/city"
ATTEMPTS = S3_RETRIES + 1  # what the client makes of one request before it gives up


@pytest.fixture
def proxy(moto_url: str) -> Iterator[S3FaultProxy]:
    server = S3FaultProxy(moto_url).start()
    yield server
    server.stop()


def production_store(tmp_path: Path, proxy: S3FaultProxy, bucket: str) -> tuple[dict[str, Any], S3Store]:
    """The production S3 store resources pointed at the proxy (one entry, `KEY`), and a store reading moto directly
    (what a downloader sees, whatever the proxy does)."""
    direct = moto_bucket(f"http://{proxy.upstream.netloc}", bucket)
    write_csv(tmp_path / "city.csv", 40)
    sources = city_sources(tmp_path, {"us/xx/city": "city.csv"})
    s3 = s3_resources(bucket, prefix="oa", endpoint_url=proxy.url, region_name="us-east-1", s3_kwargs=MOTO_CREDS)
    return {**local(tmp_path, sources), **s3}, direct


def assert_published_keys_whole(store: S3Store) -> dict[str, dict[str, Any]]:
    """Every published key (`latest/`, `held/`, the current catalog) is complete JSON, and names a run whose
    manifest and files all exist with the sizes it states: what a reader following them finds. Returns the
    pointers by key."""
    assert get_json(store, layout.CURRENT_CATALOG)["entries"]
    sizes = {item.key: item.size for item in store.list_objects("runs/")}
    pointers = {}
    for key in [*store.list("latest/"), *store.list("held/")]:
        pointer = get_json(store, key)
        assert f"{pointer['prefix']}/{layout.MANIFEST}" in sizes, f"{key} names a run without a manifest"
        for role, file_key in pointer["files"].items():
            assert file_key in sizes, f"{key} names {file_key}, which is not there"
            if role in pointer["sizes"]:
                assert sizes[file_key] == pointer["sizes"][role], f"{file_key} is not the file {key} describes"
        pointers[key] = pointer
    return pointers


def failure_description(result: dg.ExecuteInProcessResult) -> str:
    return result.get_step_failure_events()[0].step_failure_data.user_failure_data.description


def test_a_short_s3_outage_is_ridden_out_by_the_client_retries(tmp_path: Path, proxy: S3FaultProxy) -> None:
    resources, store = production_store(tmp_path, proxy, "short-outage")
    with dg.instance_for_test() as instance:
        materialize_catalog(instance, resources)
        # shorter than the retry budget: the next S3_RETRIES writes fail (a count, not seconds: the client's
        # backoff is random, so only a count makes "shorter" hold under any load)
        mark = len(proxy.seen)
        outage = proxy.fail(Outage(methods=WRITES, requests=S3_RETRIES, code="SlowDown"))
        result = materialize_range(instance, resources, "addresses", KEY, KEY)
        assert result.success
        run_id = result.run_id
    assert outage.over() and outage.failed == S3_RETRIES
    first_write = next(seen for seen in proxy.seen[mark:] if seen.method in WRITES)
    assert proxy.statuses(first_write.method, first_write.path) == [503] * S3_RETRIES + [200]
    pointers = assert_published_keys_whole(store)
    assert pointers[layout.latest_key("addresses", KEY)]["run_id"] == run_id


def test_a_60_second_s3_outage_fails_the_entry_clearly_and_never_exposes_a_half_published_run(
    tmp_path: Path, proxy: S3FaultProxy
) -> None:
    resources, store = production_store(tmp_path, proxy, "long-outage")
    latest = layout.latest_key("addresses", KEY)
    with dg.instance_for_test() as instance:
        materialize_catalog(instance, resources)
        assert materialize_range(instance, resources, "addresses", KEY, KEY).success
        before = assert_published_keys_whole(store)[latest]

        write_csv(tmp_path / "city.csv", 45)  # a new output to publish; S3 goes down in the middle of it
        outage = proxy.fail(Outage(methods=WRITES, seconds=60, starts_at=r"/runs/addresses/.*/state\.json$"))
        result = materialize_range(instance, resources, "addresses", KEY, KEY)
        assert not result.success
        failed_run = result.run_id
        description = failure_description(result)
        assert f"{KEY}: Output store unavailable: S3 unavailable: writing s3://long-outage/oa/runs/addresses/" in (
            description
        )
        assert f"answered 503 ServiceUnavailable after {ATTEMPTS} attempts" in description
        assert "1 of 1 addresses entry failed" in description
        assert partition_status(instance, "addresses", [KEY]) == {KEY: dg.AssetPartitionStatus.FAILED}

        # the run's data went up before the outage, under its own run id; nothing published names it
        run_keys = f"/runs/addresses/{KEY}/{failed_run}/"
        assert proxy.statuses("PUT", run_keys + r"state\.json$") == [503] * ATTEMPTS, "the client did not retry"
        # the entry's second attempt at the end of the run: its first upload fails as long
        assert proxy.statuses("PUT", run_keys + r"cache\.csv$") == [200] + [503] * ATTEMPTS
        debris = list(store.list(layout.run_prefix("addresses", KEY, failed_run) + "/"))
        assert debris and not any(key.endswith(layout.MANIFEST) for key in debris)
        assert assert_published_keys_whole(store) == {latest: before}

        # once S3 is back, the next run publishes as usual
        while not outage.over():
            time.sleep(1)
        write_csv(tmp_path / "city.csv", 46)
        recovered = materialize_range(instance, resources, "addresses", KEY, KEY)
        assert recovered.success
        pointer = assert_published_keys_whole(store)[latest]
        assert pointer["run_id"] == recovered.run_id and pointer["feature_count"] == 46


def test_the_store_failing_after_the_held_run_is_dropped_leaves_the_old_latest_pointer(
    tmp_path: Path, proxy: S3FaultProxy
) -> None:
    """The last two writes of a promotion: dropping the held run, then the pointer. S3 failing between them must not
    leave a promoted pointer behind an entry reported failed (nor a held run older than the latest one)."""
    resources, store = production_store(tmp_path, proxy, "held-order")
    with dg.instance_for_test() as instance:
        materialize_catalog(instance, resources)
        proxy.fail(Outage(methods=frozenset({"DELETE"}), path=r"/held/", requests=1000))
        result = materialize_range(instance, resources, "addresses", KEY, KEY)
    assert not result.success
    assert f"{KEY}: Output store unavailable: S3 unavailable: deleting" in failure_description(result)
    assert get_json(store, layout.latest_key("addresses", KEY)) is None
    assert assert_published_keys_whole(store) == {}


def test_serve_answers_downloads_502_while_s3_is_down_and_serves_them_again_after(
    tmp_path: Path, proxy: S3FaultProxy
) -> None:
    """What a user of `/download` sees during an S3 outage: a 502 naming the cause once the client's retries are
    spent (not a 500, nor a 404 that would say the file is gone), then the file again once S3 answers."""
    resources, store = production_store(tmp_path, proxy, "downloads-outage")
    with dg.instance_for_test() as instance:
        materialize_catalog(instance, resources)
        assert materialize_range(instance, resources, "addresses", KEY, KEY).success
    output = get_json(store, layout.latest_key("addresses", KEY))["files"]["output"]
    env = {
        "OA_ENV": "production",
        "OA_S3_BUCKET": "downloads-outage",
        "OA_S3_PREFIX": "oa",
        "OA_S3_ENDPOINT_URL": proxy.url,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": MOTO_CREDS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": MOTO_CREDS["aws_secret_access_key"],
    }
    with serve_process(env, tmp_path / "serve.log") as (base, _):
        outage = proxy.fail(Outage(requests=10 * ATTEMPTS))
        down = requests.get(f"{base}/download/{output}", allow_redirects=False, timeout=120)
        assert down.status_code == 502 and "the store could not answer (503)" in down.text
        assert outage.failed == ATTEMPTS  # one request, retried by the client
        proxy.fail(Outage(requests=0))
        back = requests.get(f"{base}/download/{output}", allow_redirects=False, timeout=120)
        assert back.status_code in (302, 307) and "downloads-outage/oa/runs/addresses/" in back.headers["location"]


# -- `oa-dagster serve` killed during a burst of deliveries -------------------------------------------------------

BURST = 200
HELD_BACK = 150  # deliveries from this one on wait for the kill: the burst goes on while serve is down


def redeliver(receiver: Receiver, delivery: str, payload: dict[str, Any], deadline: float) -> list[str]:
    """One delivery as GitHub's redelivery treats it: sent again under the same delivery id after a 5xx, a refused
    or dropped connection or a timeout, with backoff, until a 2xx or 4xx. Returns what each attempt got."""
    attempts: list[str] = []
    pause = 0.2
    while True:
        try:
            answer = receiver.post("pull_request", payload, delivery=delivery)
        except requests.ConnectionError as exc:  # refused, reset, closed before the answer
            attempts.append(f"connection: {type(exc).__name__}")
        except requests.Timeout:
            attempts.append("timeout")
        else:
            if answer.status_code < 500:
                attempts.append(f"{answer.status_code} {answer.json().get('status')}")
                return attempts
            attempts.append(str(answer.status_code))
        assert time.monotonic() < deadline, f"delivery {delivery} never accepted: {attempts}"
        time.sleep(pause)
        pause = min(2 * pause, 2.0)


@contextmanager
def deliveries_database(kind: str, tmp_path: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'webhook.db'}"
    else:
        with postgres_or_skip("oa_faults_burst") as url:
            yield url


def freeze_with_unanswered(serve: subprocess.Popen[bytes], store: DeliveryStore, answered: set[str]) -> set[str]:
    """Stop `serve` (SIGSTOP) at a moment when it has recorded deliveries it has not answered yet: the ones whose
    2xx a kill now loses. Tries again (SIGCONT, a moment of work, SIGSTOP) until it catches some.

    On a quiet machine serve may answer the whole unheld part of the burst before a stop lands in that window: it is
    then killed stopped all the same (the held-back deliveries still meet a server that is down), and the caller
    is told no delivery was caught unanswered."""
    for _ in range(200):
        os.killpg(serve.pid, signal.SIGSTOP)
        time.sleep(1.0)  # answers already written reach their clients
        unanswered = {d.delivery_id for d in store.deliveries_after(0, 1000, with_payload=False)} - answered
        if unanswered or len(answered) >= HELD_BACK:
            return unanswered
        os.killpg(serve.pid, signal.SIGCONT)
        time.sleep(random.uniform(0.05, 0.3))
    return set()


@pytest.mark.parametrize("database", ["postgres", "sqlite"])
def test_serve_killed_during_a_burst_of_redelivered_deliveries_records_each_exactly_once(
    tmp_path: Path, database: str
) -> None:
    deliveries = {str(uuid.uuid4()): pr_payload(number=n + 1, head=f"{n:040x}") for n in range(BURST)}
    ids = list(deliveries)
    killed = threading.Event()
    answered: set[str] = set()  # deliveries whose 2xx reached the client
    with ExitStack() as stack:
        url = stack.enter_context(deliveries_database(database, tmp_path))
        env = {"OA_WEBHOOK_SECRET": SECRET, "OA_WEBHOOK_DB": url, "OA_DATA_DIR": str(tmp_path / "data")}
        store = DeliveryStore(url)
        stack.callback(store.close)
        base, first = stack.enter_context(serve_process(env, tmp_path / "serve-1.log"))
        receiver = Receiver(base, store)
        deadline = time.monotonic() + 600

        def send(delivery: str) -> list[str]:
            if ids.index(delivery) >= HELD_BACK:
                killed.wait()
            attempts = redeliver(receiver, delivery, deliveries[delivery], deadline)
            answered.add(delivery)
            return attempts

        with ThreadPoolExecutor(max_workers=8) as pool:
            sent = {delivery: pool.submit(send, delivery) for delivery in ids}
            try:
                wait_for("40 deliveries recorded", lambda: store.count() >= 40, 120)
                unanswered = freeze_with_unanswered(first, store, answered)
                os.killpg(first.pid, signal.SIGKILL)  # mid-burst, with recorded deliveries not yet answered
                first.wait()
            finally:
                killed.set()  # never leave the held-back senders waiting (the pool would wait for them forever)
            recorded_by_first = store.count()
            restarted = time.monotonic()
            stack.enter_context(serve_process(env, tmp_path / "serve-2.log", port=urlsplit(base).port))
            back_in = time.monotonic() - restarted
            attempts = {delivery: future.result() for delivery, future in sent.items()}

        # a redelivery of deliveries already answered (GitHub's "Redeliver" button) is acknowledged, not stored again
        again = [redeliver(receiver, delivery, deliveries[delivery], deadline) for delivery in ids[:5]]
        stored = store.deliveries_after(0, 1000)

    assert all(answer[-1] in ("200 recorded", "200 already recorded") for answer in attempts.values()), attempts
    assert sorted(d.delivery_id for d in stored) == sorted(ids), "a delivery lost or recorded twice"
    assert all(d.pr_number == deliveries[d.delivery_id]["number"] for d in stored)
    # recorded by the killed server, never answered by it: redelivered, and deduplicated by the restarted one
    for delivery in unanswered:
        assert attempts[delivery][0].startswith("connection") and attempts[delivery][-1] == "200 already recorded"
    assert again == [["200 already recorded"]] * 5
    # what the operator reads: the restarted serve's log names each redelivery it deduplicated
    log = (tmp_path / "serve-2.log").read_text()
    for delivery in unanswered:
        assert f"webhook delivery {delivery!r} already recorded" in log
    refused = [d for d in ids if any(a.startswith("connection") for a in attempts[d])]
    assert len(refused) > len(unanswered), "no delivery was sent while serve was down"
    print(
        f"{database}: {recorded_by_first} recorded before the kill, {len(unanswered)} of them unanswered, "
        f"{len(refused)} deliveries retried after a connection failure; serve answered again {back_in:.1f} s after "
        f"the restart (load {os.getloadavg()[0]:.1f})"
    )
