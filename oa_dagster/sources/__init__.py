"""The source model as a plain library (no Dagster): load, validate, upgrade v1 and list layer entries."""

from .coverage import coverage_problem, has_coverage
from .load import iter_source_files, load_catalog, load_source, source_from_dict, source_key_for
from .model import LAYERS, EntryNotFound, LayerEntry, Source, SourceInvalid
from .validate import validate_v1, validate_v2

__all__ = [
    "LAYERS",
    "EntryNotFound",
    "LayerEntry",
    "Source",
    "SourceInvalid",
    "coverage_problem",
    "has_coverage",
    "iter_source_files",
    "load_catalog",
    "load_source",
    "source_from_dict",
    "source_key_for",
    "validate_v1",
    "validate_v2",
]
