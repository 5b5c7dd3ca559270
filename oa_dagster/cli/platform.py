"""The platform's commands for `oa-dagster`: `quickstart` (Dagster runs of the examples), `ui`, `download`, `serve`,
`cleanup`.

Local commands find the store by one rule (`resources/deployments.py: local_data_dir`): `$OA_DATA_DIR`, else
`$DAGSTER_HOME/oa-data`, else `./.oa-dagster/data`, where `quickstart` writes by default.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path
from typing import Any

from oa_dagster.local_home import DEFAULT_DOWNLOAD_PORT, DEFAULT_HOME, LOCAL_HOST, instance_dir
from oa_dagster.sources.model import LAYERS


def add_platform_commands(subparsers: argparse._SubParsersAction) -> None:
    quick = subparsers.add_parser(
        "quickstart",
        help="materialize the catalog and every example entry on a local Dagster instance",
        description="Runs the source catalog and every layer entry through the code location's jobs, in this "
        "process, on a persistent instance; prints a line per entry as it finishes and a summary. "
        "Exit code 1 when an entry failed or a source is invalid.",
    )
    quick.add_argument(
        "--home",
        metavar="DIR",
        default=None,
        help=f"where the Dagster instance (DIR/dagster_home) and outputs (DIR/data) go "
        f"(default {DEFAULT_HOME}, where the other commands look)",
    )
    quick.add_argument("--sources", metavar="DIR", help="a sources directory instead of the bundled examples")
    quick.add_argument(
        "--download-port",
        type=int,
        default=DEFAULT_DOWNLOAD_PORT,
        metavar="PORT",
        help="the port `oa-dagster ui` serves downloads on: the metadata links point there "
        f"(default {DEFAULT_DOWNLOAD_PORT})",
    )
    quick.set_defaults(func=cmd_quickstart)

    ui = subparsers.add_parser(
        "ui",
        help="the Dagster UI on the quickstart's instance, with the download app its links point at",
        description="Starts `dagster dev` (webserver and daemon) on DIR/dagster_home with the outputs in DIR/data, "
        "and the download app those outputs' links point at; Ctrl-C stops both.",
    )
    ui.add_argument(
        "--home", metavar="DIR", default=str(DEFAULT_HOME), help=f"the quickstart's home (default {DEFAULT_HOME})"
    )
    ui.add_argument(
        "--host", default=LOCAL_HOST, help=f"the address the UI and the download app listen on (default {LOCAL_HOST})"
    )
    ui.add_argument("--port", type=int, default=3000, help="the Dagster UI's port (default 3000)")
    ui.add_argument(
        "--download-port",
        type=int,
        default=None,
        metavar="PORT",
        help="the download app's port (default: the one the quickstart's links point at, "
        f"else {DEFAULT_DOWNLOAD_PORT})",
    )
    ui.set_defaults(func=cmd_ui)

    download = subparsers.add_parser(
        "download",
        help="fetch the latest good output of an entry from the store",
        description="Copies the latest good output and state of an entry from the store ($OA_DATA_DIR, else "
        "$DAGSTER_HOME/oa-data, else ./.oa-dagster/data, where the quickstart writes; OA_ENV=production: S3) to "
        "DEST/<layer>/<source key>/<name>/, the folder `process` writes. Exit code 2 for a source, layer or entry "
        "the catalog does not have, 1 when the entry has no good output yet.",
    )
    download.add_argument("source", metavar="SOURCE_KEY", help="e.g. us/ca/alameda")
    download.add_argument("--layer", required=True, choices=LAYERS)
    download.add_argument("--name", help="entry name; required when the source has several entries in the layer")
    download.add_argument(
        "--dest",
        default=".",
        metavar="DIR",
        help="files go to DIR/<layer>/<source key>/<name>/ (default ., the current directory)",
    )
    download.add_argument("--all-files", action="store_true", help="also the cache, log, sample and preview")
    download.set_defaults(func=cmd_download)

    serve = subparsers.add_parser(
        "serve",
        help="serve stable download URLs for the configured store (web app)",
        description="Runs the web app until interrupted: /download/<key> (a local store's file, or a redirect to "
        "a fresh presigned S3 URL), /latest/<layer>/<entry>, the results page at /, and POST /hook, the GitHub "
        "webhook receiver (503 until OA_WEBHOOK_SECRET is set). The store: $OA_DATA_DIR, else "
        "$DAGSTER_HOME/oa-data, else ./.oa-dagster/data (OA_ENV=production: S3).",
    )
    serve.add_argument("--host", default=LOCAL_HOST, help=f"the address to listen on (default {LOCAL_HOST})")
    serve.add_argument(
        "--port", type=int, default=DEFAULT_DOWNLOAD_PORT, help=f"the port (default {DEFAULT_DOWNLOAD_PORT})"
    )
    serve.add_argument(
        "--presign-seconds",
        type=int,
        default=3600,
        metavar="N",
        help="how long the presigned S3 URLs that /download redirects to stay valid (default 3600, max 7 days)",
    )
    serve.set_defaults(func=cmd_serve)

    clean = subparsers.add_parser(
        "cleanup",
        help="remove what killed runs leave behind: store debris, stale work folders, stuck runs",
        description="Removes half-written store files, run folders without a manifest and oa-run-* work folders "
        "(under OA_WORK_DIR) that nothing changed for the grace period, and fails runs left STARTED by "
        "a killed process in the Dagster instance ($DAGSTER_HOME, else ./.oa-dagster/dagster_home). The store: "
        "$OA_DATA_DIR, else $DAGSTER_HOME/oa-data, else ./.oa-dagster/data (OA_ENV=production: S3). "
        "Same as `cleanup_job`.",
    )
    clean.add_argument(
        "--grace",
        type=float,
        default=None,
        metavar="HOURS",
        help="leave anything changed more recently than this (default 24)",
    )
    clean.add_argument("--dry-run", action="store_true", help="only report what would be removed")
    clean.add_argument("--no-runs", action="store_true", help="do not look at the Dagster instance's runs")
    clean.set_defaults(func=cmd_cleanup)


def cmd_quickstart(args: argparse.Namespace) -> int:
    from oa_dagster.cli.quickstart import cmd_quickstart as run

    return run(args)


def cmd_ui(args: argparse.Namespace) -> int:
    from oa_dagster.cli.ui import cmd_ui as run

    return run(args)


def _names_with_output(store: Any, layer: str, source: str) -> list[str]:
    prefix = f"latest/{layer}/{source}/"
    return sorted(
        {
            k[len(prefix) : -len(".json")]
            for k in store.list(prefix)
            if k.endswith(".json") and "/" not in k[len(prefix) :]
        }
    )


def _catalog_names(catalog: dict[str, Any] | None, layer: str, source: str) -> list[str]:
    """The source's entry names in `layer` in the stored catalog (not those of a source below it, `us/ca` vs
    `us/ca/alameda`)."""
    entries = ((catalog or {}).get("entries") or {}).get(layer, {})
    prefix = source + "/"
    return sorted(k[len(prefix) :] for k in entries if k.startswith(prefix) and "/" not in k[len(prefix) :])


def why_no_output(store: Any, layer: str, source: str, name: str | None) -> tuple[str, int]:
    """Why there is nothing to download, from the current catalog: an unknown source, a layer the source does
    not have, an unknown entry name, or an entry without a good output yet. Returns (message, exit code)."""
    from oa_dagster.platform.catalog import load_stored_catalog

    catalog = load_stored_catalog(store)
    if catalog is None:
        return (
            f"no source catalog in {store.describe()}: nothing was processed there (run `oa-dagster quickstart` "
            "in this directory, or set OA_DATA_DIR to the store's directory)",
            1,
        )
    sources = catalog.get("sources") or {}
    if source not in sources:
        close = difflib.get_close_matches(source, list(sources), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return (
            f"{source}: unknown source: it is not in the current catalog ({catalog.get('id')}, "
            f"{len(sources):,} sources){hint}",
            2,
        )
    entries = catalog.get("entries") or {}
    names = _catalog_names(catalog, layer, source)
    if not names:
        has = sorted(other for other in LAYERS if _catalog_names(catalog, other, source))
        return f"{source} has no {layer} entries (its layers: {', '.join(has) or 'none'})", 2
    name = name or names[0]  # `download` asks for --name when there are several
    if name not in names:
        return f"{source} has no {layer} entry named {name!r} (its {layer} entries: {', '.join(names)})", 2
    if (entries[layer].get(f"{source}/{name}") or {}).get("skip"):
        return f"{source}/{name} {layer}: the source marks it skip: true, so it has no output", 1
    return f"{source}/{name} {layer}: no good output yet in {store.describe()}", 1


def cmd_download(args: argparse.Namespace, store: Any = None) -> int:
    """The latest good output of an entry, to `<dest>/<layer>/<source key>/<name>/`: entries never share a folder,
    so downloading another layer or entry never overwrites a file downloaded before."""
    from oa_dagster.cli.entry_folders import entry_folder, plain_key, refusal
    from oa_dagster.cli.progress import Progress
    from oa_dagster.platform.catalog import load_stored_catalog
    from oa_dagster.platform.publishing import latest_good

    if store is None:
        from oa_dagster.resources.deployments import deployment

        store = deployment().resources["store"].get_store()
    if not plain_key(args.source) or (args.name is not None and not plain_key(args.name, segments=1)):
        print(
            "error: a source key is segments like us/ca/alameda and an entry name one segment, without empty, "
            f"'.' or '..' parts (got {args.source!r}" + (f", --name {args.name!r})" if args.name else ")"),
            file=sys.stderr,
        )
        return 2
    name = args.name
    if name is None:  # as `process`: the one entry of the layer, else the choices
        names = sorted(
            {*_names_with_output(store, args.layer, args.source)}
            | {*_catalog_names(load_stored_catalog(store), args.layer, args.source)}
        )
        if len(names) > 1:
            print(
                f"error: {args.source}: layer {args.layer} has several entries, choose one with --name "
                f"({', '.join(names)})",
                file=sys.stderr,
            )
            return 2
        name = names[0] if names else None
    pointer = latest_good(store, args.layer, f"{args.source}/{name}") if name else None
    if pointer is None:
        message, status = why_no_output(store, args.layer, args.source, name)
        print(f"error: {message}", file=sys.stderr)
        return status
    dest = entry_folder(Path(args.dest), args.layer, args.source, name)
    if refused := refusal(dest, args.layer, args.source, name):
        print(refused, file=sys.stderr)
        return 2
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


def _hook_routes() -> tuple[list[Any], str]:
    """The webhook receiver's routes as the deployment configures them, and a line saying what `/hook` does
    (the database described without its password; never the secrets)."""
    from oa_dagster.resources.deployments import webhook_settings
    from oa_dagster.webhook.deliveries import DeliveryStore
    from oa_dagster.webhook.hooks import hook_routes

    settings = webhook_settings()
    if not settings.secrets or not settings.database_url:
        return hook_routes(None, []), "answers 503 (set OA_WEBHOOK_SECRET to receive GitHub deliveries)"
    deliveries = DeliveryStore(settings.database_url)
    return hook_routes(deliveries, settings.secrets), f"recording signed deliveries in {deliveries.describe()}"


def cmd_serve(args: argparse.Namespace, store: Any = None) -> int:
    """Run the web app with uvicorn until interrupted; imports stay here so other commands start fast."""
    from oa_dagster.webhook.app import create_app
    from oa_dagster.webhook.server import bounded_server

    if store is None:
        from oa_dagster.resources.deployments import deployment

        store = deployment().resources["store"].get_store()
    try:
        hooks, hooks_line = _hook_routes()
        app = create_app(store, presign_seconds=args.presign_seconds, hooks=hooks)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"serving {store.describe()} on http://{args.host}:{args.port}/download/<key>", flush=True)
    print(f"POST http://{args.host}:{args.port}/hook: {hooks_line}", flush=True)
    _log_to_stderr()
    bounded_server(app, host=args.host, port=args.port).run()
    return 0


def _log_to_stderr() -> None:
    """The app's INFO lines on stderr beside uvicorn's: what became of each delivery (recorded, already recorded,
    ignored, refused for maintenance) is what an operator reads after an outage. Without a handler Python prints
    WARNING and above only. None of them carries a secret or a body (`webhook/hooks.py`)."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
    logger = logging.getLogger("oa_dagster")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    logger.propagate = False


def _fail_stuck_runs(report: Any) -> int:
    """Add the stuck runs of the instance every command uses (`$DAGSTER_HOME`, else the quickstart's) to `report`,
    failing them unless it is a dry run; 1 when the instance cannot be opened (the files were still cleaned)."""
    import os

    home = instance_dir(os.environ)
    if not home.is_dir():
        print(f"runs: not checked (no Dagster instance in {home}: set DAGSTER_HOME or run `oa-dagster quickstart`)")
        return 0
    import dagster as dg

    from oa_dagster.jobs.cleanup import fail_stuck_runs

    try:
        instance = dg.DagsterInstance.from_config(str(home))
    except Exception as exc:  # an unreadable instance: the files were still cleaned
        print(f"error: runs not checked: cannot open the Dagster instance in {home}: {exc}", file=sys.stderr)
        return 1
    with instance:
        fail_stuck_runs(instance, report)
    print(f"runs: checked in the Dagster instance in {home}")
    return 0


def cmd_cleanup(args: argparse.Namespace) -> int:
    """`cleanup_job`'s work from the command line, on the store and work root `OA_ENV` configures."""
    from oa_dagster.platform.store_cleanup import DEFAULT_GRACE_HOURS, cleanup
    from oa_dagster.resources.deployments import deployment

    grace = DEFAULT_GRACE_HOURS if args.grace is None else args.grace
    if grace < 0:
        print(f"error: --grace must be 0 hours or more, not {grace:g}", file=sys.stderr)
        return 2
    resources = deployment().resources
    store = resources["store"].get_store()
    work_root = resources["processing"].work_root()
    report = cleanup(store, [work_root], grace_hours=grace, dry_run=args.dry_run)
    status = 0 if args.no_runs else _fail_stuck_runs(report)
    verb = "would remove" if args.dry_run else "removed"
    for item in report.removed:
        print(f"{verb} {item.kind}: {item.where} ({item.size:,} bytes)")
    print(f"{report.summary()} (store {store.describe()}, work root {work_root})")
    return status
