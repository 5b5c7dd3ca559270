"""`oa-dagster check` over every real source with embedded acceptance tests (skipped without the snapshot)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from oa_dagster.cli import main
from tests.sources_snapshot import require_snapshot


@pytest.mark.sweep
def test_every_real_acceptance_test_passes_through_the_cli(capsys: pytest.CaptureFixture) -> None:
    snapshot = require_snapshot()
    files = sorted(str(p) for p in snapshot.rglob("*.json") if "acceptance-tests" in p.read_text(encoding="utf-8"))
    code = main(["check", "--json", *files])
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    cases = [case for record in records for case in record["tests"]]
    failed = [case for case in cases if not case["passed"]]
    print(f"{len(records)} sources, {len(cases)} acceptance cases, {len(failed)} failed")
    assert failed == []
    assert code == 0 and all(record["valid"] for record in records)
    assert len(cases) >= 132  # the snapshot's 25 layers hold 132 cases; galveston and philadelphia included
    assert {"us/tx/galveston", "us/pa/philadelphia"} <= {
        Path(r["source"]).relative_to(snapshot).with_suffix("").as_posix() for r in records
    }
