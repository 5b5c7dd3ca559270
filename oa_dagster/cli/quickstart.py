"""`oa-dagster quickstart`: the catalog, every layer's entries, then what data users download (the collections of
every area and layer with entries, coverage, maps and the results index), through the named jobs on a local
instance.

The runs execute in this process (no daemon to start) but as the code location's own jobs (`source_catalog_job`,
`<layer>_job`), so the UI shows them under those names with the same tags a set run would carry. What they
print comes from a Dagster logger fed to `quickstart_report.Report` (one line per entry as it finishes, warnings
once, a summary table), not from the console logger.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from oa_dagster.cli.quickstart_report import Report
from oa_dagster.local_home import DEFAULT_HOME, LocalHome, Settings, download_url
from oa_dagster.run_tags import MAX_RETRIES_TAG, RANGE_END_TAG, RANGE_START_TAG
from oa_dagster.sources.model import LAYERS

LOGGER = "oa_quickstart"


class ReportHandler(logging.Handler):
    """Turns the runs' log records (each carries its Dagster event, if any, as `dagster_meta`) into report calls."""

    def __init__(self, report: Report) -> None:
        super().__init__(logging.DEBUG)
        self.report = report

    def emit(self, record: logging.LogRecord) -> None:
        import dagster as dg

        meta = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        if event is None:
            self.report.message(record.levelno, str(meta.get("orig_message", record.getMessage())))
        elif event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            self._asset_event(
                event.asset_key, event.partition, event.step_materialization_data.materialization.metadata
            )
        elif event.event_type == dg.DagsterEventType.ASSET_OBSERVATION:
            self._asset_event(event.asset_key, event.partition, event.asset_observation_data.asset_observation.metadata)
        elif event.event_type == dg.DagsterEventType.STEP_FAILURE:
            data = event.step_failure_data
            if data.user_failure_data is not None:  # a dg.Failure: its description says it all
                self.report.step_failed(event.step_key or "", data.user_failure_data.description or "", True)
            else:
                self.report.step_failed(event.step_key or "", data.error.to_string() if data.error else "", False)

    def _asset_event(self, key: Any, partition: str | None, metadata: dict[str, Any]) -> None:
        values = {name: getattr(value, "value", value) for name, value in metadata.items()}
        layer = key.path[-1] if key is not None else ""
        if layer == "source_catalog":
            self.report.catalog(
                str(values.get("commit")), int(values.get("sources") or 0), dict(values.get("invalid") or {})
            )
        elif layer == "collections" and partition:
            self.report.collection(
                partition,
                int(values.get("entries") or 0),
                int(values.get("features") or 0),
                int(values.get("size") or 0),
            )
        elif layer in ("coverage", "coverage_maps", "results_index"):
            self.report.downloads(layer, values)
        elif layer in LAYERS and partition and "status" in values:
            count = values.get("feature_count")
            self.report.entry(
                layer,
                partition,
                str(values["status"]),
                int(count) if count is not None else None,
                str(values.get("source_problem") or ""),
                str(values.get("problem_detail") or ""),
            )


def _report_logger(report: Report) -> Any:
    import dagster as dg

    @dg.logger(description="oa-dagster quickstart's progress lines")
    def quickstart_logger(_context: dg.InitLoggerContext) -> logging.Logger:
        log = logging.Logger(LOGGER, logging.DEBUG)  # not registered: nothing global changes
        log.propagate = False
        log.addHandler(ReportHandler(report))
        return log

    return quickstart_logger


def ui_command(home: LocalHome, default_home: bool) -> str:
    """How to open the UI, as the user can type it: the venv's `oa-dagster`, relative when it is below here."""
    script = Path(sys.executable).with_name("oa-dagster")
    if script.exists():
        try:
            command = str(script.relative_to(Path.cwd()))
        except ValueError:
            command = str(script)
    else:
        command = "oa-dagster"
    return f"{command} ui" + ("" if default_home else f" --home {home.root}")


def _build_downloads(
    defs: Any, instance: Any, run_config: dict[str, Any], tags: dict[str, str], catalog: dict[str, Any], report: Report
) -> None:
    """The collections of every area and layer that has entries, in one run (the request the set's sensor would
    make: a partition range with the partitions named in its config), then one `coverage_job` run: coverage, the
    maps and the results index."""
    from oa_dagster.assets.collections import collection_partition_key
    from oa_dagster.collections.areas import areas_of
    from oa_dagster.jobs.collections import collections_job
    from oa_dagster.jobs.coverage import coverage_job
    from oa_dagster.sensors.collections import collections_request

    wanted = sorted(
        {
            collection_partition_key(area, layer)
            for layer, entries in catalog["entries"].items()
            for info in entries.values()
            if not info.get("skip")
            for area in areas_of(info["source"])
        }
    )
    if wanted:
        report.start_run("collections", [])
        request = collections_request("quickstart", tags, wanted)
        defs.resolve_job_def(collections_job.name).execute_in_process(
            instance=instance,
            run_config={**run_config, **request.run_config},
            raise_on_error=False,
            tags=request.tags,
        )
    report.start_run("coverage", [])
    defs.resolve_job_def(coverage_job.name).execute_in_process(
        instance=instance, run_config=run_config, raise_on_error=False, tags=tags
    )


def cmd_quickstart(args: argparse.Namespace) -> int:
    import dagster as dg

    from oa_dagster.definitions import build_definitions
    from oa_dagster.jobs.catalog import source_catalog_job
    from oa_dagster.jobs.layers import LAYER_JOBS
    from oa_dagster.platform.catalog import load_stored_catalog
    from oa_dagster.resources.deployments import local_data_dir, local_resources

    if args.sources and not Path(args.sources).is_dir():
        print(f"error: --sources {args.sources} is not a directory", file=sys.stderr)
        return 2
    home = LocalHome.at(args.home or DEFAULT_HOME)
    home.create()
    sources = str(Path(args.sources).resolve()) if args.sources else None
    home.save_settings(Settings(sources=sources, download_port=args.download_port))
    resources = local_resources(home.data, sources, download_url=download_url(args.download_port))
    report = Report()
    defs = dg.Definitions.merge(build_definitions(resources), dg.Definitions(loggers={LOGGER: _report_logger(report)}))
    run_config = {"loggers": {LOGGER: {}}}  # only ours: no console logger
    # ran here, reported here: the daemon of a later `oa-dagster ui` must not retry them (run_retries is on)
    tags = {MAX_RETRIES_TAG: "0"}
    with dg.DagsterInstance.from_config(str(home.dagster_home)) as instance:
        report.say(f"Dagster instance: {home.dagster_home}")
        report.start_run("source_catalog", [])
        catalog = defs.resolve_job_def(source_catalog_job.name).execute_in_process(
            instance=instance, run_config=run_config, raise_on_error=False, tags=tags
        )
        stored = load_stored_catalog(resources["store"].get_store()) if catalog.success else None
        for layer in LAYERS if stored else ():
            for key, info in stored["entries"].get(layer, {}).items():
                if info.get("skip"):  # not a partition: nothing runs for it
                    report.entry(layer, key, "skipped", None, "", "the source marks it skip: true")
            keys = instance.get_dynamic_partitions(layer)
            if not keys:
                continue
            report.start_run(layer, keys)
            defs.resolve_job_def(LAYER_JOBS[layer].name).execute_in_process(
                instance=instance,
                run_config=run_config,
                raise_on_error=False,
                tags={**tags, RANGE_START_TAG: keys[0], RANGE_END_TAG: keys[-1]},
            )
            report.end_run(layer, keys)
        if stored:
            _build_downloads(defs, instance, run_config, tags, stored, report)
    report.summary()
    report.say(f"\nOutputs: {home.data} (latest good pointers under latest/, run files under runs/)")
    report.say(f"Browse the runs and download the outputs: {ui_command(home, args.home is None)}")
    if (home.data / "index.html").is_file():
        report.say(
            f"The download page: {home.data / 'index.html'}; with the UI running, open "
            f"{download_url(args.download_port)}/index.html"
        )
    found = local_data_dir().resolve()
    if found != home.data:
        report.say(
            f"note: `oa-dagster download` and `serve` read {found} here (OA_DATA_DIR or DAGSTER_HOME is set, "
            f"or --home is not the default); set OA_DATA_DIR={home.data} to read these outputs"
        )
    return 1 if report.failed else 0
