"""Every acceptance test embedded in the real sources snapshot passes through `evaluate_row`.

The reference processor crashes on two of these sources (`us/tx/galveston`: inputs in another case than the
conform; `us/pa/philadelphia`: a chain step reads its bare variable after an empty step); here all pass.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from oa_dagster.conform.functions import evaluate_row
from tests.sources_snapshot import require_snapshot

CASES_IN_SNAPSHOT = 132
LAYERS_IN_SNAPSHOT = 25


def _cases(sources: Path) -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(where, layer, conform, case) for every enabled case of every layer entry of the snapshot."""
    found = []
    for path in sorted(sources.rglob("*.json")):
        with path.open(encoding="utf-8") as handle:
            source = json.load(handle)
        for layer, entries in (source.get("layers") or {}).items():
            for entry in entries:
                test = entry.get("test") or {}
                if test.get("enabled", True) is False or not test.get("acceptance-tests"):
                    continue
                where = f"{path.relative_to(sources).with_suffix('')}#{layer}/{entry.get('name')}"
                found.extend((where, layer, entry.get("conform") or {}, case) for case in test["acceptance-tests"])
    return found


def test_every_acceptance_case_of_the_snapshot_passes() -> None:
    cases = _cases(require_snapshot())
    failures = []
    for where, layer, conform, case in cases:
        output = evaluate_row(case.get("inputs") or {}, conform, layer)
        actual = {key: output.get(key) for key in case["expected"]}
        if actual != case["expected"]:
            failures.append(f"{where} {case.get('description')!r}: expected {case['expected']}, got {actual}")
    layers = {where for where, *_ in cases}
    print(f"{len(cases)} acceptance cases in {len(layers)} layers, {len(failures)} failed")
    assert not failures, "\n".join(failures)
    assert (len(cases), len(layers)) == (CASES_IN_SNAPSHOT, LAYERS_IN_SNAPSHOT)
    assert {"us/tx/galveston#addresses/county", "us/pa/philadelphia#addresses/county"} <= layers
