"""bench/bench_ui.py at a tiny scale: the history it writes is what the UI's GraphQL then shows (not timed)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from unittest import mock

from bench.bench_ui import local_home, measure_queries, seed
from tests.platform_helpers import postgres_or_skip, running_webserver_url


def test_the_seeded_sets_are_what_the_asset_page_reads(tmp_path: Path) -> None:
    args = argparse.Namespace(
        partitions=20, sets=2, entries_per_run=10, threads=2, layers=["addresses", "parcels"], calls=1
    )
    with postgres_or_skip("oa_bench_ui_test") as url:
        home, env = local_home(tmp_path, url)
        with mock.patch.dict(os.environ, env):
            seeded = seed(home, tmp_path / "seed", args)
            # per set and layer: 2 run events + 19 materializations with 2 check evaluations each + 1 failure
            assert seeded["events"] == 2 * 2 * (2 * 2 + 19 * 3 + 1)
            with running_webserver_url(home, env, tmp_path / "webserver.log") as base:
                answers = measure_queries(base, args)["answers"]
    # set 1 failed entry 1, set 2 materialized it again and failed entry 2: only the latest attempt counts
    assert answers["partitions"] == {
        "materializedPartitions": 19,
        "failedPartitions": 1,
        "unmaterializedPartitions": 0,
        "materializingPartitions": 0,
        "keys": 20,
    }
    assert answers["latest_set"] == "set-02"
    assert answers["latest_metadata_entries"] >= 25  # the real builder's entries: urls, sample, preview, ...
    assert answers["runs_of_set"] == 4  # 20 entries in runs of 10, for each of the two layers
