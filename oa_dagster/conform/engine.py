"""The conform step: read a source file in batches, evaluate the conform, write `out.geojson`.

Streaming end to end, as a bounded pipeline (`conform.pipeline`): a thread reads the next batches while this one
has its geometry reprojected and its attributes evaluated, a third hashes the batch before and a fourth writes
its lines. The queues between them hold two batches each, so memory depends on the batch size, not on the source
size; every stage keeps the batches in order, so the output and the errors are those of a sequential run. On a
machine without an idle core the stages run inline (`pipeline.use_threads`).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from oa_dagster.conform.fields import OUTPUT_ATTRIBUTES
from oa_dagster.conform.geometry import BatchGeometry, Bounds, Reprojector, point_geometry, wkb_geometry
from oa_dagster.conform.limits import ConformLimits
from oa_dagster.conform.pipeline import ReadAhead, WriteBehind, use_threads
from oa_dagster.conform.preview import PreviewData
from oa_dagster.conform.readers import OpenedSource, SourceBatch, open_source_file
from oa_dagster.conform.writer import feature_hashes, feature_lines, open_output, point_geometry_json, write_lines
from oa_dagster.errors import ConformError, MissingConform, NoFeatures, UnknownFormat

SAMPLE_ROWS = 10


@dataclass
class ConformResult:
    """What the conform step produced; the caller turns it into `state.json` fields."""

    feature_count: int = 0
    features_without_geometry: int = 0
    features_out_of_range: int = 0  # a geometry, but outside lon/lat range once in WGS84 (or not finite)
    bbox: list[float] | None = None
    sample: list[list[str]] = field(default_factory=list)  # header row, then the first source rows
    preview: PreviewData = field(default_factory=PreviewData)
    skipped_rows: int = 0
    text_values_recoded: int = 0  # values (CSV: rows) not valid in the conform's encoding, read with a fallback
    source_crs: str | None = None


def _source_crs(
    fmt: str, conform: dict[str, Any], opened: OpenedSource, protocol: str, log: logging.Logger
) -> tuple[str | None, bool]:
    """The CRS to read coordinates in (None: WGS84), and whether it is only assumed.

    ArcGIS dumps are WGS84 already; `srs` overrides the file's own; GeoJSON is WGS84 by definition. A CSV
    without `srs` and a file stating no projection are assumed WGS84, which their first batch must bear out.
    """
    srs = conform.get("srs")
    if protocol.lower() == "esri":
        if srs and srs.upper() != "EPSG:4326":
            log.info("ignoring conform.srs %s: ArcGIS features are requested in EPSG:4326", srs)
        return None, False
    if srs:
        return str(srs), False
    if opened.crs:
        return opened.crs, False
    return None, fmt != "geojson"


@dataclass
class _RangeCheck:
    """Features outside lon/lat range, counted over the entry; too many of them refuse it."""

    max_share: float
    crs: str | None
    with_geometry: int = 0
    outside: int = 0
    example: tuple[float, float] | None = None

    def add(self, geometry: BatchGeometry) -> None:
        self.with_geometry += int(geometry.keep.sum()) + geometry.out_of_range
        self.outside += geometry.out_of_range
        self.example = self.example or geometry.example

    def example_text(self) -> str:
        x, y = self.example or (float("nan"), float("nan"))
        return f"e.g. x={x:.10g}, y={y:.10g}"

    def describe(self, scope: str = "") -> str:
        return (
            f"{self.outside:,} of {self.with_geometry:,} features{scope} have coordinates outside lon/lat "
            f"range ({self.example_text()})"
        )

    def check(self, scope: str = "", prefix: str = "") -> None:
        if self.outside and self.outside > self.max_share * self.with_geometry:
            advice = (
                f"check `srs` (the data was reprojected from {self.crs})"
                if self.crs
                else "the data looks projected; set `srs` in the conform"
            )
            raise ConformError(f"{prefix}{self.describe(scope)}: {advice}")


def _sample(batch: SourceBatch) -> list[list[str]]:
    head = batch.columns.slice(0, SAMPLE_ROWS)
    names = list(head.column_names)
    rows = [["" if v is None else str(v) for v in row.values()] for row in head.to_pylist()]
    if batch.lon is not None:
        names += ["oa:lon", "oa:lat"]
        for i, row in enumerate(rows):
            row += [str(batch.lon[i]), str(batch.lat[i])]
    return [names, *rows]


def _filter(table_or_array: Any, keep: np.ndarray) -> Any:
    return table_or_array if keep.all() else table_or_array.filter(pa.array(keep))


def _hash_features(
    writer: WriteBehind,
    out: Any,
    fingerprint: str,
    columns: pa.Table,
    geojson: pa.Array,
    values: dict[str, Any],
    attributes: list[str],
) -> None:
    """Hash one batch's features (the hashing stage) and queue its lines for the writing stage."""
    properties = {"hash": feature_hashes(fingerprint, columns, geojson)}
    properties.update((name, values[name]) for name in attributes)
    writer.submit(partial(_write_features, out, properties, geojson))


def _write_features(out: Any, properties: dict[str, pa.Array], geojson: pa.Array) -> None:
    """Assemble and write one batch's feature lines (the writing stage)."""
    write_lines(out, feature_lines(properties, {"accuracy"}, geojson))


def conform_file(path: Path, **kwargs: Any) -> ConformResult:
    """Conform one input file to `out_path` (newline-delimited GeoJSON) and describe the result.

    The cyclic garbage collector is paused meanwhile: readers build millions of short-lived acyclic
    objects, and collections triggered by them cost a third of the run time on large GeoJSON inputs. The pause
    is process-wide (a layer run's step thread meanwhile writes events): it delays collection, it loses nothing.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _conform_file(path, **kwargs)
    finally:
        if was_enabled:
            gc.enable()


def _conform_file(
    path: Path,
    *,
    layer: str,
    conform: dict[str, Any] | None,
    protocol: str,
    fingerprint: str,
    out_path: Path,
    log: logging.Logger,
    progress: Callable[[int], None] | None = None,
    limits: ConformLimits | None = None,
) -> ConformResult:
    if not conform:
        raise MissingConform("the entry has no conform object")
    fmt = conform.get("format")
    if not fmt:
        raise UnknownFormat("conform.format is missing")
    # an ArcGIS dump is GeoJSON whatever `format` the source names
    opened = open_source_file(path, "geojson" if protocol.lower() == "esri" else fmt, conform)
    batches = iter(opened.batches)
    try:
        return _conform_batches(
            batches,
            path,
            opened,
            layer=layer,
            conform=conform,
            protocol=protocol,
            fingerprint=fingerprint,
            out_path=out_path,
            log=log,
            progress=progress,
            limits=limits or ConformLimits(),
        )
    except BaseException:
        out_path.unlink(missing_ok=True)
        raise
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()  # a reader stopped half way releases its file and GDAL dataset now, not at collection


@dataclass
class _BatchStep:
    """The conform of one batch: geometry, range checks, attribute functions; hashing and writing are handed on."""

    result: ConformResult
    fmt: str
    conform: dict[str, Any]
    layer: str
    fingerprint: str
    reproject: Reprojector
    bounds: Bounds
    ranges: _RangeCheck
    patterns: Any
    assumed: bool
    log: logging.Logger
    out: Any
    hasher: WriteBehind
    writer: WriteBehind

    def run(self, batch: SourceBatch, rows_read: int) -> int:
        """Conform `batch` (`rows_read` rows came before it) and queue its writing; returns its rows."""
        from oa_dagster.conform.functions import evaluate_conform

        result = self.result
        if not result.sample:
            result.sample = _sample(batch)
        n = batch.columns.num_rows
        if batch.lon is not None:
            geometry = point_geometry(batch.lon, batch.lat, self.reproject, self.bounds)
        else:
            geoms = batch.wkb if batch.wkb is not None else batch.geoms
            geometry = wkb_geometry(geoms, n, self.layer, self.reproject, self.bounds, self.log)
        self.ranges.add(geometry)
        if self.assumed and not rows_read:  # decided on the first batch, as the reference did for files
            stated = (
                "conform.srs is not set"
                if self.fmt == "csv"
                else "no projection found: the file states none and conform.srs is not set"
            )
            self.ranges.check(" of the first batch", f"{stated}, and ")
            if self.fmt != "csv":
                self.log.warning(
                    "the %s file states no projection and conform.srs is not set; coordinates look "
                    "like lon/lat, so WGS84 is assumed",
                    self.fmt,
                )
        kept = int(geometry.keep.sum())
        result.features_without_geometry += n - kept - geometry.out_of_range
        if kept:
            columns = _filter(batch.columns, geometry.keep)
            values = evaluate_conform(columns, self.conform, self.layer, self.patterns)
            if geometry.geojson is None:
                geojson = point_geometry_json(geometry.lon, geometry.lat)
                result.preview.add_points(geometry.lon, geometry.lat)
            else:
                geojson = pa.array(geometry.geojson, pa.string())
                result.preview.add_shapes(geometry.shapes)
            attributes = OUTPUT_ATTRIBUTES[self.layer]
            job = partial(_hash_features, self.writer, self.out, self.fingerprint, columns, geojson, values, attributes)
            self.hasher.submit(job)
            result.feature_count += kept
        return n


def _conform_batches(
    batches: Any,
    path: Path,
    opened: OpenedSource,
    *,
    layer: str,
    conform: dict[str, Any],
    protocol: str,
    fingerprint: str,
    out_path: Path,
    log: logging.Logger,
    progress: Callable[[int], None] | None,
    limits: ConformLimits,
) -> ConformResult:
    from oa_dagster.conform.patterns import PatternSet

    fmt = str(conform.get("format"))
    result = ConformResult()
    crs, assumed = _source_crs(fmt, conform, opened, protocol, log)
    result.source_crs = crs or "EPSG:4326"
    reproject = Reprojector.for_crs(crs)
    bounds = Bounds()
    ranges = _RangeCheck(limits.max_out_of_range_share, crs)
    patterns = PatternSet(limits)
    rows_read = 0
    threaded = use_threads()
    reader = ReadAhead(batches, depth=2, name="conform-read", threaded=threaded)
    try:
        with open_output(out_path) as out:
            hasher = WriteBehind(depth=2, name="conform-hash", threaded=threaded)
            writer = WriteBehind(depth=2, name="conform-write", threaded=threaded)
            try:
                step = _BatchStep(
                    result, fmt, conform, layer, fingerprint, reproject, bounds, ranges, patterns, assumed, log,
                    out, hasher, writer,
                )  # fmt: skip
                for batch in reader:
                    rows_read += step.run(batch, rows_read)
                    if progress:
                        progress(rows_read)
                hasher.finish()
                writer.finish()
            finally:
                hasher.stop(abandon=True)
                writer.stop(abandon=True)
    finally:
        reader.close()
    result.bbox = bounds.as_list()
    result.features_out_of_range = ranges.outside
    result.skipped_rows = opened.skipped_rows[0]
    if result.skipped_rows:
        log.warning("skipped %d CSV rows with more fields than the header", result.skipped_rows)
    if opened.recoded is not None and opened.recoded.count:
        result.text_values_recoded = opened.recoded.count
        log.warning("%s", opened.recoded.describe(path.name))
    if result.features_without_geometry:
        log.warning("left out %d features without a usable geometry", result.features_without_geometry)
    ranges.check()
    if ranges.outside:
        log.warning(
            "left out %d features with coordinates outside lon/lat range (%s)", ranges.outside, ranges.example_text()
        )
    if result.feature_count == 0:
        raise NoFeatures(
            f"read {rows_read} rows from {path.name}, none with a usable geometry"
            if rows_read
            else f"{path.name} holds no rows"
        )
    return result
