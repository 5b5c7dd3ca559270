"""`oa-dagster ui`: the Dagster UI on the quickstart's instance and the download app, started and stopped together.

The metadata of a local store's entries links to the download app (`http://127.0.0.1:<port>/download/<key>`,
which the quickstart wrote); without the app those links lead nowhere, and `file://` links are refused by
browsers from an http page. So one command serves both.

`dagster dev` (webserver + daemon, what a developer expects from the UI) runs as `python -m dagster dev` with
this interpreter, so no activated virtualenv is needed, in a process group of its own: Ctrl-C reaches this
process only, which then stops the download app and asks `dagster dev` to shut its services down (SIGINT, as a
terminal would), killing the group only if it does not finish in time. The download app runs in a thread here
on a socket bound before anything starts, so a port in use is reported at once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from typing import Any

from oa_dagster.local_home import LocalHome, download_url

STOP_SECONDS = 60  # dagster dev waits up to 30 s for each of its services
# `dagster dev` warns that `dg dev` supersedes it; `dg` (dagster-dg-cli, with a project layout of its own) is not
# part of this project, so it is a warning a user cannot act on: that one is filtered by its message, no other
# (a -W category other than the builtins is imported before site-packages are on the path, so it cannot be named)
DEV_SUPERSEDED = "ignore:Function `dev_command` is superseded"


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket, or OSError naming the port."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def _port_free(host: str, port: int) -> bool:
    try:
        _bind(host, port).close()
    except OSError:
        return False
    return True


def child_environment(home: LocalHome, download_base: str, sources: str | None) -> dict[str, str]:
    """The environment of `dagster dev` and its runs: the local deployment on the quickstart's folders."""
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home.dagster_home),
        "OA_ENV": "local",
        "OA_DATA_DIR": str(home.data),
        "OA_DOWNLOAD_URL": download_base,
    }
    if sources:
        env["OA_SOURCES_DIR"] = sources
    else:
        env.pop("OA_SOURCES_DIR", None)  # the quickstart read the bundled examples: so do the UI's runs
    return env


def _download_server(home: LocalHome, sock: socket.socket) -> tuple[Any, threading.Thread]:
    from oa_dagster.platform.store import LocalStore
    from oa_dagster.webhook.app import create_app
    from oa_dagster.webhook.server import bounded_server

    server = bounded_server(create_app(LocalStore(home.data)), log_level="warning")
    # uvicorn only installs signal handlers on the main thread: in this one it leaves them to `cmd_ui`
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="oa-download-app", daemon=True)
    thread.start()
    return server, thread


def _stop(dev: subprocess.Popen[bytes]) -> None:
    """Ask `dagster dev` to stop its services (it waits for them); kill its process group if it does not in time."""
    if dev.poll() is None:
        dev.send_signal(signal.SIGINT)
        try:
            dev.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            print("dagster dev did not stop in time: killing it and its services", file=sys.stderr)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(dev.pid, signal.SIGKILL)  # its group is its own (start_new_session)
    dev.wait()


def cmd_ui(args: argparse.Namespace) -> int:
    home = LocalHome.at(args.home)
    if not home.dagster_home.is_dir():
        print(
            f"note: no instance in {home.root} yet: run `oa-dagster quickstart` first to see its runs; starting "
            "on an empty one",
            file=sys.stderr,
        )
    home.create()
    settings = home.load_settings()
    download_port = args.download_port or settings.download_port
    try:
        sock = _bind(args.host, download_port)
    except OSError as exc:
        print(
            f"error: cannot serve downloads on {args.host}:{download_port}: {exc.strerror or exc} "
            "(choose another with --download-port; the quickstart's links use "
            f"{download_url(settings.download_port)})",
            file=sys.stderr,
        )
        return 2
    if not _port_free(args.host, args.port):
        sock.close()
        print(f"error: port {args.port} on {args.host} is in use: choose another with --port", file=sys.stderr)
        return 2
    base = download_url(download_port, args.host)
    stop = threading.Event()
    # installed before `dagster dev` starts: a child inherits an ignored SIGINT (a background job's), not a handler
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    dev: subprocess.Popen[bytes] | None = None
    server = thread = None
    died = ""
    try:
        server, thread = _download_server(home, sock)
        dev = subprocess.Popen(
            [sys.executable, "-W", DEV_SUPERSEDED, "-m", "dagster", "dev", "-w", str(home.workspace)]
            + ["-h", args.host, "-p", str(args.port)],
            env=child_environment(home, base, settings.sources),
            start_new_session=True,
        )
        print(
            f"Dagster UI: http://{args.host}:{args.port} (instance {home.dagster_home}, outputs {home.data})\n"
            f"Downloads: {base}/<key>\nCtrl-C stops both.",
            flush=True,
        )
        while not stop.wait(0.5):
            if dev.poll() is not None:
                died = f"dagster dev stopped (exit code {dev.returncode})"
                break
            if not thread.is_alive():
                died = "the download app stopped"
                break
    finally:
        if server is not None:
            server.should_exit = True
        if dev is not None:
            _stop(dev)
        if thread is not None:
            thread.join(10)
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if died:
        print(f"error: {died}; everything is stopped", file=sys.stderr)
        return 1
    return 0
