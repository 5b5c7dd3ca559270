"""The weekly benchmark's upstreams in a process of their own (bench/upstreams.py): they serve the sources' data,
change when told, and count what they sent."""

from __future__ import annotations

import json
from pathlib import Path

import requests

from bench.upstreams import UpstreamsProcess


def _data_urls(sources: Path) -> list[str]:
    urls = []
    for path in sorted(sources.rglob("*.json")):
        (entry,) = json.loads(path.read_text())["layers"]["addresses"]
        urls.append(entry["data"])
    return urls


def test_the_upstreams_process_serves_changes_and_counts_its_bytes(tmp_path: Path) -> None:
    upstreams = UpstreamsProcess(tmp_path, entries=8, rows=6, latency=0.0)
    try:
        assert upstreams.process.pid is not None and upstreams.process.is_alive()
        urls = _data_urls(upstreams.sources)
        assert len({url.split("/")[2] for url in urls}) == 8  # four file servers and four ArcGIS servers
        first = requests.get(urls[0], timeout=10)
        assert first.status_code == 200 and first.text.startswith("lon,lat,num,street")
        assert upstreams.bytes_sent() == len(first.content)

        edited = requests.get(urls[3], params={"f": "json"}, timeout=10).json()["editingInfo"]["lastEditDate"]
        sent = upstreams.bytes_sent()
        assert upstreams.change(0.5) == [0, 3, 4, 7]  # one CSV and one layer in every two entries
        assert upstreams.bytes_sent() > sent  # the changed layers' pages, dumped once to fill their cache
        layer = requests.get(urls[3], params={"f": "json"}, timeout=10).json()
        assert layer["editingInfo"]["lastEditDate"] == edited + 1
        again = requests.get(urls[0], headers={"If-Modified-Since": first.headers["Last-Modified"]}, timeout=10)
        assert again.status_code == 200 and again.content != first.content  # a new Last-Modified, new rows
    finally:
        upstreams.stop()
    assert not upstreams.process.is_alive()
