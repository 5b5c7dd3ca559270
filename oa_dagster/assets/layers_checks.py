"""Asset checks of the layer assets, evaluated per entry from the stats gathered while publishing.

Two checks per entry, not one per condition: every evaluation is an event-log write (as costly as processing a
small source: figures in docs/platform.md), and a set writes one per check per entry. The ERROR check holds what
makes an output wrong, the WARN check what makes it suspicious; each condition's verdict is in the
evaluation's metadata and the failed ones are named in its description.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dagster as dg

from oa_dagster.platform.entry_processing import EntryResult
from oa_dagster.platform.quality_gate import drop_share

MIN_ADDRESS_QUALITY = 0.5  # share of addresses with a plausible number and a street
OUTPUT_VALID, OUTPUT_QUALITY = "output_valid", "output_quality"


def check_specs(layer: str) -> list[dg.AssetCheckSpec]:
    quality = (
        "feature count not down 10% or more from the previous materialization; the quality gate "
        "promoted the run to latest good (else it is held until an operator runs accept_held_run_job)"
    )
    if layer == "addresses":
        quality += "; at least half of the features have a plausible house number and a street"
    return [
        dg.AssetCheckSpec(
            OUTPUT_VALID,
            asset=layer,
            description="ERROR: the output has at least one feature, and "
            "every geometry is well formed and inside lon/lat bounds",
        ),
        dg.AssetCheckSpec(OUTPUT_QUALITY, asset=layer, description="WARN: " + quality),
    ]


@dataclass(frozen=True)
class Condition:
    name: str
    passed: bool
    problem: str  # said when it fails


def _evaluation(
    layer: str,
    key: str,
    check_name: str,
    severity: dg.AssetCheckSeverity,
    conditions: list[Condition],
    metadata: dict[str, Any],
) -> dg.AssetCheckEvaluation:
    failed = [c for c in conditions if not c.passed]
    return dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey(layer),
        check_name=check_name,
        passed=not failed,
        severity=severity,
        partition=key,
        description="; ".join(c.problem for c in failed) or "all conditions hold",
        metadata={"entry": key, **{c.name: c.passed for c in conditions}, **metadata},
    )


def evaluate_checks(result: EntryResult, previous: int | None, warn_drop: float) -> list[dg.AssetCheckEvaluation]:
    """Both checks for an entry with output (a failed entry has no output to check).

    `previous` is the feature count of the entry's latest materialization, None for its first: then the
    evaluation has no `previous` (as the materialization has no `previous_feature_count`), not a made-up 0.
    """
    layer, key, published = result.layer, result.key, result.published
    assert published is not None, "only an entry with output is checked"
    stats = published.manifest.get("stats") or {}
    count = int(stats.get("features") or 0)
    bad = int(stats.get("bad_geometry") or 0)
    example = stats.get("bad_geometry_example") or ""
    valid = [
        Condition("features_present", count > 0, "the output has no features"),
        Condition("geometry_valid", bad == 0, f"{bad:,} bad or out-of-bounds geometries, e.g. {example}"),
    ]
    drop = drop_share(previous, count)
    decision = published.decision.describe() if published.decision else "no decision"
    quality = [
        Condition(
            "count_not_down",
            drop is None or drop < warn_drop,
            f"feature count down {drop or 0:.0%} from the previous materialization ({previous or 0:,})",
        ),
        Condition("promoted", published.promoted, f"quality gate {decision}"),
    ]
    metadata: dict[str, Any] = {
        "current": count,
        "drop": f"{drop:.1%}" if drop is not None else "n/a",
        "decision": decision,
    }
    if previous is not None:
        metadata["previous"] = previous
    if layer == "addresses":
        good = int(stats.get("number_and_street") or 0)
        share = good / count if count else 0.0
        quality.append(
            Condition(
                "address_quality",
                share >= MIN_ADDRESS_QUALITY,
                f"only {share:.0%} of the features have a plausible number and a street",
            )
        )
        metadata.update(
            plausible_numbers=int(stats.get("plausible_numbers") or 0),
            streets=int(stats.get("streets") or 0),
            number_and_street_share=round(share, 3),
        )
    ERROR, WARN = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN
    return [
        _evaluation(
            layer,
            key,
            OUTPUT_VALID,
            ERROR,
            valid,
            {"feature_count": count, "bad_geometries": bad, "bad_geometry_example": example},
        ),
        _evaluation(layer, key, OUTPUT_QUALITY, WARN, quality, metadata),
    ]
