"""The benchmarks' upstream servers: a static file server with a remote server's latency, and the weekly mix of
CSV files and ArcGIS layers that `bench_set.py --weekly` changes between its sets.

`UpstreamsProcess` runs the weekly mix in a process of its own, as real upstreams are: served from the benchmark's
process, every answer would take the interpreter from the set's catalog run (whose planning asks every upstream)
and count against the set. The process is driven through a pipe (`change`, `bytes_sent`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import multiprocessing
import os
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any


class SlowHandler(SimpleHTTPRequestHandler):
    """Serves the files after `latency` seconds: a remote server's response time (no CPU used meanwhile).

    Like any static file server it sends `Last-Modified` and answers a matching `If-Modified-Since` with 304;
    `bytes_sent` counts the file bodies it sent.
    """

    latency = 0.0
    bytes_sent = 0
    lock = threading.Lock()

    def do_GET(self) -> None:
        time.sleep(self.latency)
        super().do_GET()

    def do_HEAD(self) -> None:  # a set's planning asks a file's size with HEAD: a round trip like any other
        time.sleep(self.latency)
        super().do_HEAD()

    def copyfile(self, source: Any, outputfile: Any) -> None:
        size = os.fstat(source.fileno()).st_size
        with SlowHandler.lock:
            SlowHandler.bytes_sent += size
        super().copyfile(source, outputfile)

    def log_message(self, *args: Any) -> None:
        pass


def serve_files(directory: Path, latency: float = 0.0) -> tuple[ThreadingHTTPServer, str]:
    """A file server for `directory` on a free local port, answering `latency` seconds late (every `SlowHandler`
    shares the latency), serving in a thread of its own; returns it and its URL."""
    SlowHandler.latency = latency
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(SlowHandler, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


def write_csv(path: Path, rows: int, seed: int) -> None:
    lines = ["lon,lat,num,street"] + [
        f"-122.{(seed * rows + r) % 9999:04d},37.{r:04d},{r + 1},MAIN ST" for r in range(rows)
    ]
    path.write_text("\n".join(lines) + "\n")


def entry_json(protocol: str, data: str, conform: dict[str, Any]) -> str:
    layers = {"addresses": [{"name": "main", "protocol": protocol, "data": data, "conform": conform}]}
    coverage = {"ISO 3166": {"alpha2": "US-CA"}, "country": "us"}
    return json.dumps({"schema": 2, "coverage": coverage, "layers": layers})


class WeeklyUpstreams:
    """The weekly mix: every other entry a CSV from an HTTP server, the others ArcGIS layers (fake servers, pages of
    `rows // 3` features, the same latency); every upstream tracks changes (Last-Modified, editingInfo). The entries
    are spread over `HOSTS` servers of each kind, as real ones are over many hosts (a set's planning asks at most a
    few of one host at once)."""

    HOSTS = 4
    CSV_CONFORM = {"format": "csv", "lon": "lon", "lat": "lat", "number": "num", "street": "street"}
    ESRI_CONFORM = {"format": "geojson", "number": "NUMBER", "street": "STREET"}

    def __init__(self, base: Path, entries: int, rows: int, latency: float, http_urls: list[str]) -> None:
        from tests.servers.arcgis import FakeArcGISServer, FakeLayer, point_features

        self.rows, self.latency = rows, latency
        self.www, self.sources = base / "www", base / "sources"
        self.www.mkdir(parents=True)
        self.arcgis = [FakeArcGISServer().start() for _ in range(self.HOSTS)]
        self.features = point_features(rows)  # unchanged layers share their features and cached pages
        self.cache: dict[tuple, bytes] = {}
        self.layers: dict[int, Any] = {}
        self.urls: dict[int, str] = {}
        self._layer, self._points = FakeLayer, point_features
        for i in range(entries):
            path = self.sources / "xx" / f"s{i:04d}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            host = (i // 2) % self.HOSTS
            if i % 2 == 0:
                write_csv(self.www / f"s{i:04d}.csv", rows, i)
                self.urls[i] = f"{http_urls[host % len(http_urls)]}/s{i:04d}.csv"
                path.write_text(entry_json("http", self.urls[i], self.CSV_CONFORM))
            else:
                self.layers[i] = self._new_layer(self.features, self.cache, 1_700_000_000_000)
                self.urls[i] = self.arcgis[host].add_layer(f"s{i:04d}", self.layers[i])
                path.write_text(entry_json("ESRI", self.urls[i], self.ESRI_CONFORM))

    def _new_layer(self, features: list[dict[str, Any]], cache: dict[tuple, bytes], edited: int) -> Any:
        return self._layer(
            features,
            max_record_count=max(1, self.rows // 3),
            latency=self.latency,
            cache_responses=True,
            editing_info={"lastEditDate": edited, "dataLastEditDate": edited},
            _cache=cache,
        )

    def change(self, share: float, grow: bool = False) -> list[int]:
        """Change every 1/share-th entry upstream (new validators and new content: every row edited, or with `grow`
        one row added, which for an ArcGIS layer of exactly three pages means a fourth); returns their numbers.

        The changed layers share one cache of pages, filled here by one dump: every layer's pages are then served
        from a cache, in the incremental set as in the full one (rendering them is the fake server's CPU, taken
        from the runs on this machine, not a cost of the platform)."""
        step = max(1, round(1 / share)) if share > 0 else 0
        count = len(list(self.sources.rglob("*.json")))
        # one CSV and one ArcGIS layer in every 2 * step entries: the mix changes evenly
        changed = [i for i in range(count) if step and i % (2 * step) in (0, step + 1)]
        later = time.time() + 3600
        features = self._points(self.rows + 1) if grow else self._points(self.rows, start=2)
        fresh: dict[tuple, bytes] = {}
        for i in changed:
            if i in self.layers:
                layer = self.layers[i]
                layer.features, layer._cache = features, fresh
                layer.editing_info = {"lastEditDate": 1_700_000_000_001, "dataLastEditDate": 1_700_000_000_001}
            else:
                path = self.www / f"s{i:04d}.csv"
                write_csv(path, self.rows + 1, i) if grow else write_csv(path, self.rows, i + count)
                os.utime(path, (later, later))  # a new Last-Modified
        warm = next((i for i in changed if i in self.layers), None)
        if warm is not None:
            self._dump(self.urls[warm])
        return changed

    def _dump(self, url: str) -> None:
        """One layer dumped as a set's run dumps it (the same queries: its pages are what the runs will ask)."""
        from oa_dagster.fetch import fetch_entry
        from oa_dagster.resources.processing import ProcessingSettings
        from tests.servers.helpers import make_entry

        with tempfile.TemporaryDirectory(prefix="oa-bench-warm-") as tmp:
            entry = make_entry(url, protocol="ESRI", conform=dict(self.ESRI_CONFORM))
            fetch_entry(entry, Path(tmp), ProcessingSettings().fetch_options())

    def bytes_sent(self) -> int:
        return SlowHandler.bytes_sent + sum(layer.bytes_sent for layer in self.layers.values())


def _serve_weekly(conn: Connection, base: str, entries: int, rows: int, latency: float) -> None:
    """The child process: the file servers and the ArcGIS servers, answering the parent's commands until `stop`."""
    www = Path(base) / "www"  # made by WeeklyUpstreams
    servers, urls = zip(*(serve_files(www, latency) for _ in range(WeeklyUpstreams.HOSTS)), strict=True)
    upstreams = WeeklyUpstreams(Path(base), entries, rows, latency, list(urls))
    conn.send(str(upstreams.sources))
    try:
        while True:
            command, params = conn.recv()
            if command == "stop":
                break
            conn.send(upstreams.change(*params) if command == "change" else upstreams.bytes_sent())
    finally:
        for server in servers:
            server.shutdown()
        for arcgis in upstreams.arcgis:
            arcgis.stop()


class UpstreamsProcess:
    """`WeeklyUpstreams` served by a process of its own (started with `spawn`: this process runs Dagster's threads)."""

    def __init__(self, base: Path, entries: int, rows: int, latency: float) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self.process = context.Process(
            target=_serve_weekly, args=(child, str(base), entries, rows, latency), name="oa-bench-upstreams"
        )
        self.process.start()
        deadline = time.monotonic() + 600
        while not self._conn.poll(0.5):
            if not self.process.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the upstream servers did not start (exit code {self.process.exitcode})")
        self.sources = Path(self._conn.recv())

    def change(self, share: float, grow: bool = False) -> list[int]:
        self._conn.send(("change", (share, grow)))
        return list(self._conn.recv())

    def bytes_sent(self) -> int:
        self._conn.send(("bytes_sent", ()))
        return int(self._conn.recv())

    def stop(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(OSError):
                self._conn.send(("stop", ()))
            self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
