"""Source problems: one exception type per cause, each mapping to one classic problem string.

The classic strings are what the original machine and today's batch service report in `source problem`;
contributors and the results index know them, so they are kept verbatim. `detail` is ours: a specific
message naming the cause (column, member path, size cap, ...).
"""

from __future__ import annotations


class SourceProblem(Exception):
    """Base of every per-run problem. `problem` is the classic string, `detail` the specific cause."""

    problem: str = "Could not conform source data"

    def __init__(
        self, detail: str, *, source: str | None = None, layer: str | None = None, name: str | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.source = source
        self.layer = layer
        self.name = name

    def locate(self, source: str, layer: str, name: str) -> SourceProblem:
        """Attach where the problem happened, keeping what was already known."""
        self.source = self.source or source
        self.layer = self.layer or layer
        self.name = self.name or name
        return self

    def where(self) -> str:
        parts = [p for p in (self.source, self.layer, self.name) if p]
        return " ".join(parts)

    def __str__(self) -> str:
        where = self.where()
        return f"{where}: {self.problem}: {self.detail}" if where else f"{self.problem}: {self.detail}"


class SourceSaysSkip(SourceProblem):
    problem = "Source says to skip"


class AcceptanceTestFailed(SourceProblem):
    problem = "An acceptance test failed"


class MissingConform(SourceProblem):
    problem = "Source is missing a conform object"


class UnknownFormat(SourceProblem):
    problem = "Unknown source conform format"


class DownloadError(SourceProblem):
    problem = "Could not download source data"


class EsriTokenRequired(DownloadError):
    problem = "Missing required ESRI token"


class ConformError(SourceProblem):
    problem = "Could not conform source data"


class NoFeatures(SourceProblem):
    problem = "Found no features in source data"


MISSING_COVERAGE = "Missing or incomplete coverage"
