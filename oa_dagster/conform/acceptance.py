"""Embedded acceptance tests (`test.acceptance-tests` of a layer entry), run before any download.

Each case's `inputs` row goes through the full attribute transform; only the keys in `expected` are
compared, exactly. A case that raises is a failed case with its error, never a crash of the run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from oa_dagster.errors import SourceProblem


@dataclass
class CaseResult:
    layer: str
    name: str
    description: str
    passed: bool
    expected: dict[str, Any]
    actual: dict[str, Any]
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def has_tests(test: dict[str, Any] | None) -> bool:
    return bool(test) and test.get("enabled", True) is not False and bool(test.get("acceptance-tests"))


def run_acceptance_tests(
    layer: str, name: str, conform: dict[str, Any] | None, test: dict[str, Any] | None
) -> list[CaseResult]:
    """Results of every enabled case of one entry (empty when it has none)."""
    from oa_dagster.conform.functions import evaluate_row

    if not has_tests(test):
        return []
    results = []
    for case in test["acceptance-tests"]:
        expected = dict(case.get("expected") or {})
        description = str(case.get("description", ""))
        try:
            if not conform:
                raise SourceProblem("the entry has no conform object")
            output = evaluate_row(case.get("inputs") or {}, conform, layer)
        except Exception as exc:  # a broken conform is a failed case, reported with its cause
            detail = exc.detail if isinstance(exc, SourceProblem) else f"{type(exc).__name__}: {exc}"
            results.append(CaseResult(layer, name, description, False, expected, {}, detail))
            continue
        actual = {key: output.get(key) for key in expected}
        results.append(CaseResult(layer, name, description, actual == expected, expected, actual))
    return results


def describe_failure(case: CaseResult) -> str:
    if case.error:
        return f"{case.description!r} raised {case.error}"
    diffs = [
        f"{k}: expected {case.expected[k]!r}, got {case.actual.get(k)!r}"
        for k in case.expected
        if case.expected[k] != case.actual.get(k)
    ]
    return f"{case.description!r}: " + "; ".join(diffs)
