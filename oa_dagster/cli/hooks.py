"""`oa-dagster hooks`: the webhook receiver's maintenance switch and its recent deliveries.

The switch lives in the deliveries database, so flipping it here reaches every running `oa-dagster serve`
process within about a second, without a restart. While it is on, `POST /hook` answers 503: GitHub lists those
deliveries as failed, and they can be redelivered from the webhook's "Recent Deliveries" once it is off.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from oa_dagster.webhook.deliveries import DeliveryStore

MAINTENANCE_HELP = "on: refuse new deliveries with 503 (redeliver them from GitHub afterwards); off: accept again"


def add_hook_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `hooks maintenance on|off|status` and `hooks list [--limit N]`."""
    database = argparse.ArgumentParser(add_help=False)
    database.add_argument(
        "--db",
        metavar="URL",
        default=None,
        help="the deliveries database (default: OA_WEBHOOK_DB, else the production Postgres of "
        "DAGSTER_PG_*, else webhook.db in the instance's folder: $DAGSTER_HOME, else ./.oa-dagster/dagster_home)",
    )
    hooks = subparsers.add_parser(
        "hooks",
        help="the GitHub webhook receiver: maintenance switch, recent deliveries",
        description="The webhook receiver's maintenance switch and its recent deliveries, in the deliveries "
        "database `oa-dagster serve` uses.",
    )
    commands = hooks.add_subparsers(dest="hooks_command", required=True, metavar="COMMAND")

    maintenance = commands.add_parser(
        "maintenance", parents=[database], help=MAINTENANCE_HELP, description=__doc__.split("\n\n", 1)[1]
    )
    maintenance.add_argument("state", choices=["on", "off", "status"], help="switch it on or off, or show it")
    maintenance.set_defaults(func=cmd_hooks_maintenance)

    recent = commands.add_parser(
        "list",
        parents=[database],
        help="the most recent deliveries, newest first",
        description="The most recent deliveries the receiver recorded, newest first: delivery id, event, action, "
        "repository, pull request, head sha and when it arrived.",
    )
    recent.add_argument("--limit", type=int, default=20, metavar="N", help="how many (default 20, at most 1000)")
    recent.set_defaults(func=cmd_hooks_list)


def _with_store(args: argparse.Namespace, env: Mapping[str, str] | None, work: Callable[[DeliveryStore], int]) -> int:
    """`work(store)` on the store `--db` names, else the one `oa-dagster serve` uses (`webhook_database_url`),
    closed after; a bad database setting is exit code 2, an unavailable database 1. Imported here: SQLAlchemy
    is not needed by the other commands."""
    from oa_dagster.resources.deployments import webhook_database_url
    from oa_dagster.webhook.deliveries import DeliveryStore, StoreUnavailable

    try:
        store = DeliveryStore(args.db or (webhook_database_url() if env is None else webhook_database_url(env)))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return work(store)
    except StoreUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()


def cmd_hooks_maintenance(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    def work(store: DeliveryStore) -> int:
        if args.state != "status":
            store.set_maintenance(args.state == "on")
        state = store.maintenance_state()
        since = f" since {state.updated_at:%Y-%m-%d %H:%M:%S} UTC" if state.updated_at else ""
        if state.on:
            print(
                f"maintenance on{since}: new deliveries are refused with 503 (running servers see it within a "
                f"second); redeliver them from GitHub after `oa-dagster hooks maintenance off`"
            )
        else:
            print(f"maintenance off{since}: deliveries are accepted ({store.describe()})")
        return 0

    return _with_store(args, env, work)


def cmd_hooks_list(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    from oa_dagster.webhook.deliveries import MAX_PAGE

    if not 1 <= args.limit <= MAX_PAGE:
        print(f"error: --limit must be 1..{MAX_PAGE}, not {args.limit}", file=sys.stderr)
        return 2
    return _with_store(args, env, lambda store: _print_recent(store, args.limit))


def _print_recent(store: DeliveryStore, limit: int) -> int:
    rows = store.recent(limit)
    table = [("id", "delivery", "event", "action", "repository", "PR", "sha", "received (UTC)")]
    for row in rows:
        table.append(
            (
                str(row.id),
                row.delivery_id,
                row.event,
                row.action or "",
                row.repository or "",
                "" if row.pr_number is None else str(row.pr_number),
                (row.head_sha or "")[:12],
                f"{row.received_at:%Y-%m-%d %H:%M:%S}",
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    if not rows:
        print(f"(no deliveries in {store.describe()})")
    return 0
