"""What `oa-dagster quickstart` prints while its runs go: a line per entry as it finishes, then a summary table.

Dagster's console logger would print every warning of an entry twice when the entry gets its second download
attempt (both attempts' warnings are kept in the run's log, rightly), and a full stack trace for a step that
fails because a source has a problem. This report is fed the runs' events instead (`quickstart.py:
ReportHandler`): an entry's warnings are held until its outcome arrives (they come just before it) and printed
once under it, and a step failure that only lists the entries already reported is not printed again. A failure
that is not an entry's (a bug, a store that cannot be written) is printed with its stack trace.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from oa_dagster.wording import plural

FAILED = ("failed", "not run", "invalid")
MAX_CELL = 160  # a problem's detail in the table; the per-entry line above it has the whole text


@dataclass
class Outcome:
    layer: str
    key: str
    status: str  # promoted, held, skipped, failed, not run, invalid
    features: int | None = None
    problem: str = ""

    def describe(self) -> str:
        if self.status in ("promoted", "held"):
            return f"{self.status}, {plural(self.features or 0, 'feature')}"
        return f"{self.status}: {self.problem}" if self.problem else self.status


@dataclass
class Report:
    """Receives plain values from the runs (entry outcomes, messages, failures) and prints as they come."""

    outcomes: list[Outcome] = field(default_factory=list)
    run_failures: list[str] = field(default_factory=list)
    _layer: str = ""
    _keys: set[str] = field(default_factory=set)
    _held: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    _entry_failed_in_run: bool = False

    @staticmethod
    def say(line: str) -> None:
        print(line, file=sys.stdout, flush=True)  # the current stdout: tests and embedding replace it

    def start_run(self, layer: str, keys: list[str]) -> None:
        self._layer, self._keys, self._held, self._entry_failed_in_run = layer, set(keys), {}, False

    def catalog(self, commit: str, sources: int, invalid: dict[str, list[str]]) -> None:
        self.say(f"catalog {commit}: {plural(sources, 'source')}, {len(invalid)} invalid")
        for key, errors in invalid.items():
            self.outcomes.append(Outcome("(source)", key, "invalid", problem="; ".join(errors[:3])))

    def message(self, level: int, text: str) -> None:
        """A line the run logged: an entry's (prefixed with its key) waits for the entry's outcome; of the others,
        warnings and the step's own progress lines (prefixed with the layer) are printed."""
        key = text.split(": ", 1)[0]
        if key in self._keys:
            self._held.setdefault(key, []).append((level, text[len(key) + 2 :]))
        elif level >= logging.WARNING:
            self.say(f"  {logging.getLevelName(level).lower()}: {text}")
        elif level >= logging.INFO and text.startswith(f"{self._layer}: "):  # the step's own lines, not Dagster's
            self.say(f"  {text}")

    def entry(self, layer: str, key: str, status: str, features: int | None, problem: str, detail: str) -> None:
        said = f"{problem}: {detail}" if problem and detail else problem or detail
        outcome = Outcome(layer, key, status, features, said if status not in ("promoted", "held") else "")
        if status == "failed":
            self._entry_failed_in_run = True
        self.outcomes.append(outcome)
        self.say(f"  {layer} {key}: {outcome.describe()}")
        lines = self._held.pop(key, [])
        for (level, text), times in Counter(lines).items():
            if text == said:  # the problem, already on the entry's line
                continue
            first, _, rest = text.partition("\n")
            more = " (stack trace in the run's log)" if rest else ""
            again = f" ({times} times)" if times > 1 else ""
            self.say(f"      {logging.getLevelName(level).lower()}: {first}{more}{again}")

    def collection(self, partition: str, entries: int, features: int, size: int) -> None:
        """One collections partition built (or found unchanged)."""
        said = f"{plural(entries, 'entry')}, {plural(features, 'feature')}, {plural(size, 'byte')}"
        self.say(f"  collections {partition}: {said}")

    def downloads(self, asset: str, values: dict[str, Any]) -> None:
        """Coverage, the maps and the results index: one line each."""

        def count(name: str, word: str) -> str:
            return plural(int(values.get(name) or 0), word)

        if asset == "coverage":
            said = f"{count('sources', 'source')} placed in {count('countries', 'country')}"
        elif asset == "coverage_maps":
            said = f"{plural(len([k for k in values if k.startswith('url_')]), 'map')} drawn"
        else:
            said = f"{count('entries', 'entry')}, {count('collections', 'collection')} listed"
        self.say(f"  {asset}: {said}")

    def step_failed(self, layer: str, description: str, user_failure: bool) -> None:
        """A failed step: not printed when it only lists the entries already reported as failed."""
        if user_failure and self._entry_failed_in_run:
            return
        self.run_failures.append(f"{layer}: {description.splitlines()[0] if user_failure else description}")
        self.say(f"  {layer}: the run failed: {description}")

    def end_run(self, layer: str, keys: list[str]) -> None:
        """Entries of the run that reported nothing (the step failed before them) are `not run`."""
        seen = {o.key for o in self.outcomes if o.layer == layer}
        for key in keys:
            if key not in seen:  # with the lines it logged, if any
                self.entry(layer, key, "not run", None, "", "the run ended before it")

    @property
    def failed(self) -> bool:
        return bool(self.run_failures) or any(o.status in FAILED for o in self.outcomes)

    def summary(self) -> None:
        counts = Counter(o.status for o in self.outcomes)
        said = ", ".join(f"{n} {status}" for status, n in counts.items())
        self.say(f"\nSummary: {sum(counts.values())} entries and sources: {said or 'nothing to do'}")
        rows = [("layer", "entry", "result")] + [(o.layer, o.key, _cell(o.describe())) for o in self.outcomes]
        widths = [max(len(row[i]) for row in rows) for i in range(2)]
        for layer, key, result in rows:
            self.say(f"  {layer:<{widths[0]}}  {key:<{widths[1]}}  {result}")
        for failure in self.run_failures:
            self.say(f"  run failed: {failure}")


def _cell(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"
