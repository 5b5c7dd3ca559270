"""The two per-entry checks: which condition fails which check, with what severity and description."""

from __future__ import annotations

from typing import Any

import dagster as dg

from oa_dagster.assets.layers_checks import OUTPUT_QUALITY, OUTPUT_VALID, check_specs, evaluate_checks
from oa_dagster.platform.entry_processing import EntryResult
from oa_dagster.platform.publishing import PublishedRun
from oa_dagster.platform.quality_gate import GateDecision


def _evaluate(
    layer: str, stats: dict[str, Any], previous: int | None = None, decision: GateDecision | None = None
) -> dict[str, dg.AssetCheckEvaluation]:
    published = PublishedRun("runs/x", {"stats": stats}, decision or GateDecision(True), None, {"output": "x"})
    out = evaluate_checks(EntryResult(layer, "us/xx/a/city", published=published), previous, 0.1)
    assert [e.partition for e in out] == ["us/xx/a/city"] * 2
    return {e.check_name: e for e in out}


def test_good_addresses_pass_both_checks() -> None:
    checks = _evaluate("addresses", {"features": 100, "number_and_street": 90}, previous=95)
    assert checks[OUTPUT_VALID].passed and checks[OUTPUT_QUALITY].passed
    assert checks[OUTPUT_QUALITY].metadata["drop"].value == "-5.3%"


def test_bad_geometry_or_no_features_fail_the_error_check() -> None:
    checks = _evaluate("parcels", {"features": 10, "bad_geometry": 2, "bad_geometry_example": "POINT (200 95)"})
    valid = checks[OUTPUT_VALID]
    assert not valid.passed and valid.severity == dg.AssetCheckSeverity.ERROR
    assert valid.description == "2 bad or out-of-bounds geometries, e.g. POINT (200 95)"
    assert valid.metadata["features_present"].value and not valid.metadata["geometry_valid"].value
    empty = _evaluate("parcels", {"features": 0})[OUTPUT_VALID]
    assert not empty.passed and empty.description == "the output has no features"
    assert "address_quality" not in checks[OUTPUT_QUALITY].metadata


def test_a_drop_or_poor_addresses_only_warn() -> None:
    checks = _evaluate("addresses", {"features": 80, "number_and_street": 20}, previous=100)
    quality = checks[OUTPUT_QUALITY]
    assert checks[OUTPUT_VALID].passed
    assert not quality.passed and quality.severity == dg.AssetCheckSeverity.WARN
    assert not quality.metadata["count_not_down"].value and not quality.metadata["address_quality"].value
    assert quality.metadata["promoted"].value
    assert quality.description == (
        "feature count down 20% from the previous materialization (100); "
        "only 25% of the features have a plausible number and a street"
    )
    held = _evaluate("buildings", {"features": 100}, decision=GateDecision(False, ["lost field(s): street"]))
    assert not held[OUTPUT_QUALITY].passed
    assert held[OUTPUT_QUALITY].description == "quality gate held: lost field(s): street"


def test_every_layer_has_the_same_two_checks() -> None:
    for layer in ("addresses", "parcels", "buildings", "centerlines"):
        assert [s.name for s in check_specs(layer)] == [OUTPUT_VALID, OUTPUT_QUALITY]
    assert "house number" in check_specs("addresses")[1].description
