"""The platform's commands for `oa-dagster`: `quickstart` (a Dagster run of the examples), `download`, `serve`,
`cleanup`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from oa_dagster.sources.model import LAYERS

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # the summary lines say what happened


def add_platform_commands(subparsers: argparse._SubParsersAction) -> None:
    quick = subparsers.add_parser(
        "quickstart", help="materialize the catalog and every example entry on a local Dagster instance")
    quick.add_argument("--home", metavar="DIR", default=".oa-dagster",
                       help="where the Dagster instance (DIR/dagster_home) and outputs (DIR/data) go")
    quick.add_argument("--sources", metavar="DIR", help="a sources directory instead of the bundled examples")
    quick.set_defaults(func=cmd_quickstart)

    download = subparsers.add_parser("download", help="fetch the latest good output of an entry from the store")
    download.add_argument("source", metavar="SOURCE_KEY", help="e.g. us/ca/alameda")
    download.add_argument("--layer", required=True, choices=LAYERS)
    download.add_argument("--name", help="entry name; optional when the source has one entry in the layer")
    download.add_argument("--dest", default=".", metavar="DIR")
    download.add_argument("--all-files", action="store_true", help="also the cache, log, sample and preview")
    download.set_defaults(func=cmd_download)

    serve = subparsers.add_parser("serve", help="serve stable download URLs for the configured store (web app)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--presign-seconds", type=int, default=3600, metavar="N",
                       help="how long the presigned S3 URLs that /download redirects to stay valid (max 7 days)")
    serve.set_defaults(func=cmd_serve)

    clean = subparsers.add_parser(
        "cleanup", help="remove what killed runs leave behind: store debris, stale work folders, stuck runs",
        description="Removes half-written store files, run folders without a manifest and oa-run-* work folders "
                    "(under OA_WORK_DIR) that nothing changed for the grace period, and fails runs left STARTED by "
                    "a killed process (when DAGSTER_HOME names the instance). Same as the `cleanup` job.")
    clean.add_argument("--grace", type=float, default=None, metavar="HOURS",
                       help="leave anything changed more recently than this (default 24)")
    clean.add_argument("--dry-run", action="store_true", help="only report what would be removed")
    clean.add_argument("--no-runs", action="store_true", help="do not look at the Dagster instance's runs")
    clean.set_defaults(func=cmd_cleanup)


def cmd_quickstart(args: argparse.Namespace) -> int:
    """Run the main job the way the daemon would, but in this process: catalog, then each layer's entries."""
    import dagster as dg

    from oa_dagster.assets.catalog import source_catalog
    from oa_dagster.assets.layers import LAYER_ASSETS
    from oa_dagster.resources.deployments import local_resources

    home = Path(args.home).resolve()
    (home / "dagster_home").mkdir(parents=True, exist_ok=True)
    resources = local_resources(home / "data", args.sources)
    with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
        print(f"Dagster instance: {home / 'dagster_home'}", flush=True)
        catalog = dg.materialize([source_catalog], instance=instance, resources=resources, run_config=QUIET)
        meta = catalog.asset_materializations_for_node("source_catalog")[0].metadata
        print(f"catalog {meta['commit'].value}: {meta['sources'].value} sources, "
              f"{meta['invalid_sources'].value} invalid", flush=True)
        failed = 0
        for layer in LAYERS:
            keys = instance.get_dynamic_partitions(layer)
            if not keys:
                continue
            result = dg.materialize([source_catalog, *LAYER_ASSETS], instance=instance, resources=resources,
                                    selection=[layer], raise_on_error=False, run_config=QUIET,
                                    tags={"dagster/asset_partition_range_start": keys[0],
                                          "dagster/asset_partition_range_end": keys[-1]})
            for event in result.get_asset_materialization_events():
                m = event.event_specific_data.materialization
                print(f"  {layer} {m.partition}: {m.metadata['status'].value}, "
                      f"{m.metadata['feature_count'].value} features")
            for event in result.get_step_failure_events():
                failed += 1
                data = event.step_failure_data.user_failure_data
                print(f"  {layer}: {data.description if data else event.message}", file=sys.stderr)
    print(f"\nOutputs: {home / 'data'} (latest good pointers under latest/, run files under runs/)")
    print(f"Browse the runs: DAGSTER_HOME={home / 'dagster_home'} OA_DATA_DIR={home / 'data'} "
          "dagster dev -w workspace.yaml")
    return 1 if failed else 0


def _choose_name(store: Any, layer: str, source: str, name: str | None) -> str | None:
    if name:
        return name
    prefix = f"latest/{layer}/{source}/"
    names = sorted({k[len(prefix):-len(".json")] for k in store.list(prefix)
                    if k.endswith(".json") and "/" not in k[len(prefix):]})
    if len(names) == 1:
        return names[0]
    listing = ", ".join(names) or "none with a good output"
    print(f"{source} {layer}: choose an entry with --name ({listing})", file=sys.stderr)
    return None


def cmd_download(args: argparse.Namespace, store: Any = None) -> int:
    from oa_dagster.cli import Progress
    from oa_dagster.platform.runs import latest_good

    if store is None:
        from oa_dagster.resources.deployments import deployment

        store = deployment().resources["store"].get_store()
    name = _choose_name(store, args.layer, args.source, args.name)
    if name is None:
        return 2
    pointer = latest_good(store, args.layer, f"{args.source}/{name}")
    if pointer is None:
        print(f"{args.source}/{name} {args.layer}: no good output in {store.describe()}", file=sys.stderr)
        return 1
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    roles = list(pointer["files"]) if args.all_files else ["output", "state"]
    for role in roles:
        key = pointer["files"].get(role)
        if not key:
            continue
        target = dest / key.rsplit("/", 1)[-1]
        progress = Progress()
        store.download(key, target, progress)
        progress.close()
        print(target)
    return 0


def cmd_serve(args: argparse.Namespace, store: Any = None) -> int:
    """Run the web app with uvicorn until interrupted; imports stay here so other commands start fast."""
    import uvicorn

    from oa_dagster.webhook.app import create_app

    if store is None:
        from oa_dagster.resources.deployments import deployment

        store = deployment().resources["store"].get_store()
    try:
        app = create_app(store, presign_seconds=args.presign_seconds)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"serving {store.describe()} on http://{args.host}:{args.port}/download/<key>", flush=True)
    uvicorn.run(app, host=args.host, port=args.port)
    return 0


def cmd_cleanup(args: argparse.Namespace) -> int:
    """The `cleanup` job's work from the command line, on the store and work root `OA_ENV` configures."""
    import os

    from oa_dagster.platform.cleanup import DEFAULT_GRACE_HOURS, cleanup
    from oa_dagster.resources.deployments import deployment

    grace = DEFAULT_GRACE_HOURS if args.grace is None else args.grace
    if grace < 0:
        print(f"error: --grace must be 0 hours or more, not {grace:g}", file=sys.stderr)
        return 2
    resources = deployment().resources
    store = resources["store"].get_store()
    work_root = resources["processing"].work_root()
    report = cleanup(store, [work_root], grace_hours=grace, dry_run=args.dry_run)
    status = 0
    if args.no_runs:
        pass
    elif os.environ.get("DAGSTER_HOME"):
        import dagster as dg

        from oa_dagster.assets.cleanup import fail_stuck_runs

        try:
            instance = dg.DagsterInstance.get()
        except Exception as exc:  # a missing or unreadable DAGSTER_HOME: the files were still cleaned
            print(f"error: runs not checked: cannot open the Dagster instance in DAGSTER_HOME="
                  f"{os.environ['DAGSTER_HOME']}: {exc}", file=sys.stderr)
            status = 1
        else:
            with instance:
                fail_stuck_runs(instance, report)
    else:
        print("runs: not checked (DAGSTER_HOME is not set)")
    verb = "would remove" if args.dry_run else "removed"
    for item in report.removed:
        print(f"{verb} {item.kind}: {item.where} ({item.size:,} bytes)")
    print(f"{report.summary()} (store {store.describe()}, work root {work_root})")
    return status
