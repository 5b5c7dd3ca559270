"""Asset checks of the layer assets, evaluated per entry from the stats gathered while publishing."""

from __future__ import annotations

from typing import Any

import dagster as dg

from oa_dagster.platform.gate import drop_share

MIN_ADDRESS_QUALITY = 0.5  # share of addresses with a plausible number and a street


def check_specs(layer: str) -> list[dg.AssetCheckSpec]:
    specs = [
        dg.AssetCheckSpec("features_present", asset=layer, description="the output has at least one feature"),
        dg.AssetCheckSpec("geometry_valid", asset=layer,
                          description="every geometry is well formed and inside lon/lat bounds"),
        dg.AssetCheckSpec("count_not_down", asset=layer,
                          description="feature count is not down 10% or more from the previous materialization"),
        dg.AssetCheckSpec("promoted", asset=layer,
                          description="the quality gate promoted this run to latest good (else it is held "
                                      "until an operator runs accept_held_run)"),
    ]
    if layer == "addresses":
        specs.append(dg.AssetCheckSpec(
            "address_quality", asset=layer,
            description="at least half of the features have a plausible house number and a street"))
    return specs


def evaluate_checks(layer: str, key: str, result: dict[str, Any], previous: int | None,
                    warn_drop: float) -> list[dg.AssetCheckEvaluation]:
    """One evaluation per check for an entry with output (a failed entry has no output to check)."""
    published = result["published"]
    stats = published.manifest.get("stats") or {}
    count = int(stats.get("features") or 0)
    asset = dg.AssetKey(layer)
    WARN, ERROR = dg.AssetCheckSeverity.WARN, dg.AssetCheckSeverity.ERROR

    def evaluation(name: str, passed: bool, severity: dg.AssetCheckSeverity, **metadata: Any
                   ) -> dg.AssetCheckEvaluation:
        return dg.AssetCheckEvaluation(asset_key=asset, check_name=name, passed=passed, severity=severity,
                                       partition=key, metadata={"entry": key, **metadata})

    bad = int(stats.get("bad_geometry") or 0)
    drop = drop_share(previous, count)
    out = [
        evaluation("features_present", count > 0, ERROR, feature_count=count),
        evaluation("geometry_valid", bad == 0, ERROR, bad_geometries=bad,
                   example=stats.get("bad_geometry_example") or ""),
        evaluation("count_not_down", drop is None or drop < warn_drop, WARN, previous=previous or 0,
                   current=count, drop=f"{drop:.1%}" if drop is not None else "n/a"),
        evaluation("promoted", published.promoted, WARN, decision=published.decision.describe()
                   if published.decision else "no decision"),
    ]
    if layer == "addresses":
        good = int(stats.get("number_and_street") or 0)
        share = good / count if count else 0.0
        out.append(evaluation("address_quality", share >= MIN_ADDRESS_QUALITY, WARN,
                              plausible_numbers=int(stats.get("plausible_numbers") or 0),
                              streets=int(stats.get("streets") or 0), share=round(share, 3)))
    return out
