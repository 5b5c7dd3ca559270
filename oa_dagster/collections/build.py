"""Build the collections of one area and layer (both licence classes), streaming, and publish them atomically.

Per licence class: compare the inputs (partition key -> run id of each entry's latest good pointer) with the
last build's record and stop there when nothing changed (a nightly run over unchanged data costs the pointer
reads). Otherwise read each entry's output once, in blocks: the raw lines go into the zip (on a background
thread, deflate overlapping the parsing), the parsed block into the classic CSV (addresses), the 0.1° summary and
the GeoParquet file. Both files are built in a temporary folder, then published (`publish.py`). Memory is bounded
by the block size, not by the data.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from oa_dagster.platform.store import LocalStore, OutputStore, get_json, put_json

from . import keys
from .classic import CSV_HEADER, SpatialSummary, feature_points, summary_vrt, write_csv_rows
from .features import BLOCK_BYTES, read_blocks
from .geoparquet import GeoParquetWriter
from .inputs import AreaInputs, EntryInput, gather_inputs
from .keys import LICENCES, Licence
from .plan import BUILD_FORMAT, unchanged
from .publish import discard_stale_temporaries, publish_files, remove_collection
from .texts import license_text, readme
from .zip_stream import ZipStream, check_member_name

STALE_TEMPORARY_SECONDS = 6 * 3600
PROGRESS_SECONDS = 30.0

Log = Callable[[str], None]
Status = Literal["built", "unchanged", "empty"]


@dataclass
class BuiltFiles:
    zip_path: Path
    parquet_path: Path
    entries: list[EntryInput] = field(default_factory=list)  # the ones actually in the files
    features: int = 0
    csv_rows: int = 0
    bad_lines: int = 0
    bytes_read: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class CollectionResult:
    layer: str
    area: str
    licence: Licence
    status: Status
    record: dict[str, Any] | None
    missing: list[str]
    problems: list[str]
    seconds: float = 0.0
    bytes_read: int = 0

    @property
    def keys(self) -> dict[str, str]:
        """role (zip, parquet, record) -> store key of what this collection published (nothing when empty)."""
        if self.record is None:
            return {}
        return {
            "zip": self.record["zip"]["key"],
            "parquet": self.record["parquet"]["key"],
            "record": keys.record_key(self.layer, self.area, self.licence),
        }


def _quiet(_: str) -> None:
    pass


class _Progress:
    """Log a line about every `PROGRESS_SECONDS` while a long build runs."""

    def __init__(self, log: Log, what: str, total: int) -> None:
        self.log, self.what, self.total = log, what, total
        self.started = self.last = time.monotonic()

    def tick(self, done: int, features: int, read: int) -> None:
        now = time.monotonic()
        if now - self.last >= PROGRESS_SECONDS:
            self.last = now
            rate = read / max(now - self.started, 1e-9) / 1e6
            self.log(
                f"{self.what}: {done}/{self.total} entries, {features:,} features, {read / 1e6:,.0f} MB read "
                f"({rate:.1f} MB/s)"
            )


def _fetch(store: OutputStore, entry: EntryInput, folder: Path) -> Path:
    """The entry's output as a local file: the store's own file when local, else a download (removed later)."""
    if isinstance(store, LocalStore):
        path = store.path(entry.output_key)
        if not path.is_file():
            raise FileNotFoundError(f"{entry.output_key} is not in the store")
        return path
    target = folder / f"input-{abs(hash(entry.partition_key))}.geojson"
    store.download(entry.output_key, target)
    return target


def _downloads(
    store: OutputStore, entries: list[EntryInput], folder: Path
) -> Iterator[tuple[EntryInput, Path | None, BaseException | None]]:
    """Each entry's local file, the next one downloading while the current one is processed."""
    with ThreadPoolExecutor(1, thread_name_prefix="oa-collection-fetch") as pool:
        pending: Future[Path] | None = pool.submit(_fetch, store, entries[0], folder) if entries else None
        for index, entry in enumerate(entries):
            assert pending is not None
            current = pending
            pending = pool.submit(_fetch, store, entries[index + 1], folder) if index + 1 < len(entries) else None
            try:
                path = current.result()
            except Exception as exc:  # noqa: BLE001 - judged by the caller: a missing output, or a store failure
                yield entry, None, exc
                continue
            try:
                yield entry, path, None
            finally:
                if not isinstance(store, LocalStore):
                    path.unlink(missing_ok=True)


def _add_entry(
    zip_out: ZipStream,
    parquet: GeoParquetWriter,
    built: BuiltFiles,
    entry: EntryInput,
    path: Path,
    layer: str,
    folder: Path,
    number: int,
) -> None:
    base = entry.partition_key
    summary = SpatialSummary()
    csv_path = folder / f"entry-{number}.csv"
    with ExitStack() as stack:
        source = stack.enter_context(path.open("rb"))
        csv_out = stack.enter_context(csv_path.open("wb")) if layer == "addresses" else None
        if csv_out is not None:
            csv_out.write(CSV_HEADER)
        zip_out.open_member(f"{base}.geojsonl")
        for block in read_blocks(source, layer, BLOCK_BYTES):
            zip_out.write(block.raw)
            lon, lat = feature_points(block)
            summary.add(lon, lat)
            if csv_out is not None:
                built.csv_rows += write_csv_rows(block, csv_out, lon, lat)
            parquet.write(entry.source_key, entry.name, block)
            built.features += block.rows
            built.bad_lines += block.bad_lines
            built.bytes_read += len(block.raw)
        zip_out.close_member()
    if layer == "addresses":
        zip_out.add_file(f"{base}.csv", csv_path, remove=True)
    else:
        csv_path.unlink(missing_ok=True)
    zip_out.add_bytes(f"summary/{base}-summary.csv", summary.csv())
    zip_out.add_bytes(f"summary/{base}-summary.vrt", summary_vrt(f"summary/{base}-summary.csv"))


def write_files(
    store: OutputStore,
    catalog: Mapping[str, Any],
    layer: str,
    area: str,
    licence: Licence,
    entries: list[EntryInput],
    folder: Path,
    *,
    log: Log = _quiet,
    today: dt.date | None = None,
) -> BuiltFiles:
    """The zip and the GeoParquet file of `entries` in `folder`; an entry whose output is gone is left out."""
    built = BuiltFiles(folder / keys.zip_name(area, licence), folder / f"{area}{keys.suffix(licence)}.parquet")
    zip_out = ZipStream(built.zip_path)
    parquet = GeoParquetWriter(built.parquet_path, layer)
    progress = _Progress(log, f"{layer} {area} {licence}", len(entries))
    try:
        zip_out.add_bytes("README.txt", readme(catalog, layer, area, licence, today=today or dt.date.today()))
        for number, (entry, path, error) in enumerate(_downloads(store, entries, folder)):
            if error is not None:
                if store.exists(entry.output_key):
                    raise error  # the store failed (denied, outage): not the entry's fault, so the build stops
                problem = (
                    f"{layer} {entry.partition_key}: output {entry.output_key} of run {entry.run_id} is not in the "
                    "store; left out"
                )
                built.problems.append(problem)
                log(problem)
                continue
            assert path is not None
            try:
                check_member_name(f"{entry.partition_key}.geojsonl")
            except ValueError as exc:  # a catalog from before the source-key rule, or a tampered one
                built.problems.append(f"{layer} {entry.partition_key}: {exc}; left out")
                log(built.problems[-1])
                continue
            _add_entry(zip_out, parquet, built, entry, path, layer, folder, number)
            built.entries.append(entry)
            progress.tick(len(built.entries), built.features, built.bytes_read)
        zip_out.add_bytes("LICENSE.txt", license_text(built.entries))
        zip_out.close()
        parquet.close()
    except BaseException:
        zip_out.abort()
        parquet.abort()
        raise
    return built


def build_collection(
    store: OutputStore,
    catalog: Mapping[str, Any],
    inputs: AreaInputs,
    licence: Licence,
    *,
    force: bool = False,
    work_dir: Path | None = None,
    log: Log = _quiet,
    today: dt.date | None = None,
) -> CollectionResult:
    layer, area = inputs.layer, inputs.area
    started = time.monotonic()
    entries = inputs.entries[licence]
    missing = inputs.missing[licence]
    record_key = keys.record_key(layer, area, licence)
    finals = [keys.zip_key(layer, area, licence), keys.parquet_key(layer, area, licence)]
    classic = keys.classic_keys(layer, area, licence)
    if not entries:
        removed = remove_collection(store, record_key, [*finals, *classic])
        if removed:
            log(f"{layer} {area} {licence}: no entries; removed {', '.join(removed)}")
        return CollectionResult(layer, area, licence, "empty", None, missing, list(inputs.problems))
    previous = get_json(store, record_key)
    current = inputs.inputs(licence)
    if not force and unchanged(store, previous, current, layer):
        assert previous is not None
        if previous.get("missing") != missing or previous.get("catalog") != catalog.get("id"):
            previous = {**previous, "missing": missing, "catalog": catalog.get("id")}
            put_json(store, record_key, previous)  # the files stay; only what the record says about them moved on
        log(f"{layer} {area} {licence}: unchanged since {previous.get('built')}, {len(entries)} entries")
        return CollectionResult(
            layer, area, licence, "unchanged", previous, missing, list(inputs.problems), time.monotonic() - started
        )
    discard_stale_temporaries(store, finals, older_than=time.time() - STALE_TEMPORARY_SECONDS)
    with tempfile.TemporaryDirectory(prefix="oa-collection-", dir=work_dir) as tmp:
        built = write_files(store, catalog, layer, area, licence, entries, Path(tmp), log=log, today=today)
        record = {
            "area": area,
            "layer": layer,
            "licence": licence,
            "zip": {"key": finals[0], "size": built.zip_path.stat().st_size},
            "parquet": {"key": finals[1], "size": built.parquet_path.stat().st_size},
            "entries": len(built.entries),
            "features": built.features,
            "csv_rows": built.csv_rows if layer == "addresses" else None,
            "bad_lines": built.bad_lines,
            "missing": missing,
            "problems": [*inputs.problems, *built.problems],
            # every input considered, so a pointer naming a missing output does not rebuild the area every night;
            # that entry is tried again when its pointer moves (a new good run)
            "inputs": {entry.partition_key: entry.run_id for entry in entries},
            "left_out": sorted({entry.partition_key for entry in entries} - {e.partition_key for e in built.entries}),
            "built": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "catalog": catalog.get("id"),
            "format": BUILD_FORMAT,
        }
        publish_files(
            store,
            {finals[0]: built.zip_path, finals[1]: built.parquet_path},
            {finals[0]: classic},
            record_key,
            record,
        )
    seconds = time.monotonic() - started
    log(
        f"{layer} {area} {licence}: built {len(built.entries)} entries, {built.features:,} features, "
        f"zip {record['zip']['size']:,} B, parquet {record['parquet']['size']:,} B in {seconds:.1f} s"
    )
    return CollectionResult(
        layer, area, licence, "built", record, missing, record["problems"], seconds, built.bytes_read
    )


def build_area(
    store: OutputStore,
    catalog: Mapping[str, Any],
    layer: str,
    area: str,
    *,
    force: bool = False,
    work_dir: Path | None = None,
    log: Log = _quiet,
    today: dt.date | None = None,
) -> tuple[AreaInputs, list[CollectionResult]]:
    """Both licence classes of one area and layer (what one partition of the `collections` asset does)."""
    inputs = gather_inputs(store, catalog, layer, area, log=log)
    results = [
        build_collection(store, catalog, inputs, licence, force=force, work_dir=work_dir, log=log, today=today)
        for licence in LICENCES
    ]
    return inputs, results
