"""Signed GitHub deliveries posted to the webhook receiver on loopback: deliveries/s, latency, server memory.

    python bench/bench_webhook.py [--count 2000] [--seconds 60] [--clients 8] [--db sqlite|postgres]
                                  [--payload-kb 25] [--maintenance-cache 1.0] [--server bounded|uvicorn]

The server is `oa-dagster serve`'s app (downloads and `/hook`) under the server `serve` runs it with
(`--server bounded`: `webhook/server.py`, uvicorn's h11 protocol with the header, time and connection limits), or
under uvicorn's defaults for comparison (`--server uvicorn`: httptools, no such limits), in its own process so its
peak memory can be read (VmHWM) and the clients do not share its GIL.
Each delivery is a pull_request event padded to `--payload-kb` (GitHub's are tens of KB) with its own delivery
id, signed before the clock starts; clients keep their connection open. The run stops at `--count` deliveries or
after `--seconds`, whichever comes first. At the end the number of rows in the database must equal the number of
deliveries sent (all answered 200), else the exit code is 1. `--db postgres` uses a throwaway database on
127.0.0.1:5432. `--maintenance-cache 0` reads the maintenance switch from the database on every request.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "bench-secret"


def serve(args: argparse.Namespace) -> None:
    """The server process: the web app with the receiver, as `oa-dagster serve` would build it."""
    import uvicorn

    from oa_dagster.platform.store import LocalStore
    from oa_dagster.webhook.app import create_app
    from oa_dagster.webhook.deliveries import DeliveryStore
    from oa_dagster.webhook.hooks import hook_routes
    from oa_dagster.webhook.server import bounded_server

    store = DeliveryStore(args.db_url, maintenance_cache_seconds=args.maintenance_cache)
    app = create_app(LocalStore(args.data), hooks=hook_routes(store, [SECRET]))
    if args.server == "bounded":
        bounded_server(app, host="127.0.0.1", port=args.port).run()
    else:
        uvicorn.run(app, host="127.0.0.1", port=args.port)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def deliveries(count: int, payload_kb: int) -> list[tuple[str, bytes, str]]:
    """(delivery id, body, signature) of `count` pull_request deliveries."""
    from oa_dagster.webhook.signatures import sign

    out = []
    for i in range(count):
        payload = {
            "action": "synchronize",
            "number": i % 5000 + 1,
            "pull_request": {
                "number": i % 5000 + 1,
                "merged": False,
                "head": {"sha": f"{i:040x}", "ref": f"branch-{i}", "repo": {"full_name": "someone/openaddresses"}},
                "base": {"sha": "b" * 40, "ref": "master", "repo": {"full_name": "openaddresses/openaddresses"}},
                "body": "x" * (payload_kb * 1024),
            },
            "repository": {"full_name": "openaddresses/openaddresses"},
            "sender": {"login": "someone"},
        }
        body = json.dumps(payload).encode()
        out.append((str(uuid.uuid4()), body, sign(SECRET, body)))
    return out


def post_all(
    base: str, work: list[tuple[str, bytes, str]], clients: int, seconds: float
) -> tuple[list[float], dict[int, int], float]:
    """Post with `clients` threads until the work or the time runs out: latencies, status counts, wall time."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    items = iter(work)
    deadline = time.monotonic() + seconds

    def client() -> None:
        with requests.Session() as session:
            while time.monotonic() < deadline:
                with lock:
                    item = next(items, None)
                if item is None:
                    return
                delivery, body, signature = item
                headers = {
                    "Content-Type": "application/json",
                    "X-GitHub-Event": "pull_request",
                    "X-GitHub-Delivery": delivery,
                    "X-Hub-Signature-256": signature,
                }
                started = time.perf_counter()
                response = session.post(f"{base}/hook", data=body, headers=headers, timeout=30)
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, statuses, time.perf_counter() - started


def peak_memory(pid: int) -> str:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return f"{int(line.split()[1]) / 1024:.0f} MB"
    return "not measurable here"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--payload-kb", type=int, default=25)
    parser.add_argument("--maintenance-cache", type=float, default=1.0, metavar="SECONDS")
    parser.add_argument("--server", choices=("bounded", "uvicorn"), default="bounded")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--db-url", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args)
        return 0

    from oa_dagster.webhook.deliveries import DeliveryStore

    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="oa-bench-webhook-")))
        if args.db == "postgres":
            from tests.platform_helpers import throwaway_postgres

            url = stack.enter_context(throwaway_postgres("oa_bench_webhook"))
        else:
            url = f"sqlite:///{tmp}/dagster_home/webhook.db"
        port = free_port()
        log = stack.enter_context((tmp / "server.log").open("wb"))
        server = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve",
                "--db-url",
                url,
                "--port",
                str(port),
                "--data",
                str(tmp / "data"),
                "--maintenance-cache",
                str(args.maintenance_cache),
                "--server",
                args.server,
            ],
            stdout=log,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        stack.callback(server.wait, 30)
        stack.callback(server.terminate)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"{base}/health", timeout=5).ok:
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                print(f"the server did not start; its log:\n{(tmp / 'server.log').read_text()}", file=sys.stderr)
                return 1
            time.sleep(0.05)

        work = deliveries(args.count, args.payload_kb)
        latencies, statuses, wall = post_all(base, work, args.clients, args.seconds)
        memory = peak_memory(server.pid)
        store = stack.enter_context(contextlib.closing(DeliveryStore(url)))
        stored = store.count()

    sent = len(latencies)
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else float("nan")
    print(
        f"server: {args.server}; database: {args.db}; {args.clients} clients; payload {len(work[0][1]) / 1024:.0f} KB; "
        f"maintenance cache {args.maintenance_cache:g} s"
    )
    print(f"sent {sent:,} deliveries in {wall:.1f} s: {sent / wall:,.0f} deliveries/s; answers {statuses}")
    print(
        f"latency p50 {statistics.median(ordered) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
        f"max {ordered[-1] * 1000:.1f} ms"
    )
    print(f"server peak memory (VmHWM): {memory}")
    print(f"rows in the database: {stored:,} (sent: {sent:,})")
    if stored != sent or statuses.get(200, 0) != sent:
        print("MISMATCH: every delivery sent must be answered 200 and stored once", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
