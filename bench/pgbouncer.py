"""PgBouncer in front of a benchmark's Postgres database, started and stopped by the benchmark itself.

Dagster's Postgres storage opens a new connection for every statement (`NullPool`): each one costs Postgres a
backend process. PgBouncer keeps a few server connections and hands them out per transaction, so a client
connection costs only PgBouncer's own handshake. `running_pgbouncer` starts Debian's `/usr/sbin/pgbouncer` with
its own ini in a temporary folder, listening on a free loopback port, and yields the same SQLAlchemy URL pointed
at it. The settings are the ones docs/operations.md recommends for production (transaction pooling); only the
authentication differs (trust here, as the benchmark's server allows).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PGBOUNCER = "/usr/sbin/pgbouncer"
# the settings that matter for Dagster, beside the database and auth lines
SETTINGS = {
    "pool_mode": "transaction",  # a server connection per transaction: Dagster holds none between statements
    "default_pool_size": "10",  # server connections per database/user: well under max_connections (100)
    "max_client_conn": "500",  # run workers, the daemon and its code server each open a client connection per statement
    "ignore_startup_parameters": "extra_float_digits,options",  # what psycopg2/SQLAlchemy may send at start
    "server_reset_query": "",  # transaction pooling: nothing session-level survives a transaction anyway
    "unix_socket_dir": "",  # TCP only
}


def pgbouncer_ini(host: str, port: int, database: str, user: str, listen_port: int, folder: Path) -> str:
    """The ini: one database alias (the same name) to `host:port/database`, trust auth for `user`."""
    settings = {
        "listen_addr": "127.0.0.1",
        "listen_port": str(listen_port),
        "auth_type": "trust",
        "auth_file": str(folder / "userlist.txt"),
        "logfile": str(folder / "pgbouncer.log"),
        "pidfile": str(folder / "pgbouncer.pid"),
        **SETTINGS,
    }
    lines = ["[databases]", f"{database} = host={host} port={port} dbname={database} user={user}", "", "[pgbouncer]"]
    lines += [f"{key} = {value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def _run_as() -> list[str]:
    """PgBouncer refuses to run as root: as root, switch to the `postgres` user (`-u`)."""
    return ["-u", "postgres"] if os.geteuid() == 0 else []


def _wait_listening(process: subprocess.Popen[bytes], port: int, log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"pgbouncer exited with {process.returncode}: {log.read_text()[-2000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"pgbouncer did not listen on port {port} within {timeout:.0f} s")


@contextmanager
def running_pgbouncer(postgres_url: str) -> Iterator[str]:
    """PgBouncer (transaction pooling) in front of the database of `postgres_url`: the URL to use instead.

    The process is this context's own: terminated (and its folder removed) at the end.
    """
    from sqlalchemy.engine import make_url

    from tests.platform_helpers import free_port

    url = make_url(postgres_url)
    folder = Path(tempfile.mkdtemp(prefix="oa-pgbouncer-"))
    folder.chmod(0o777)  # pgbouncer, switched to the postgres user, writes its log and pid file here
    port = free_port()
    user = url.username or "postgres"
    (folder / "userlist.txt").write_text(f'"{user}" ""\n')
    ini = folder / "pgbouncer.ini"
    ini.write_text(pgbouncer_ini(url.host or "127.0.0.1", url.port or 5432, str(url.database), user, port, folder))
    process = subprocess.Popen(
        [PGBOUNCER, *_run_as(), str(ini)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder
    )
    try:
        _wait_listening(process, port, folder / "pgbouncer.log")
        yield url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)
