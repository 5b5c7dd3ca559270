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
    upstreams = UpstreamsProcess(tmp_path, entries=4, rows=6, latency=0.0)
    try:
        assert upstreams.process.pid is not None and upstreams.process.is_alive()
        csv_url, layer_url, *_ = _data_urls(upstreams.sources)
        first = requests.get(csv_url, timeout=10)
        assert first.status_code == 200 and first.text.startswith("lon,lat,num,street")
        assert upstreams.bytes_sent() == len(first.content)

        metadata = requests.get(layer_url, params={"f": "json"}, timeout=10).json()
        edited = metadata["editingInfo"]["lastEditDate"]
        assert upstreams.change(0.5) == [0, 3]  # one CSV and one layer in every two entries
        assert (
            requests.get(layer_url.replace("s0001", "s0003"), params={"f": "json"}, timeout=10).json()["editingInfo"][
                "lastEditDate"
            ]
            == edited + 1
        )
        again = requests.get(csv_url, headers={"If-Modified-Since": first.headers["Last-Modified"]}, timeout=10)
        assert again.status_code == 200 and again.content != first.content  # a new Last-Modified, new rows
    finally:
        upstreams.stop()
    assert not upstreams.process.is_alive()
