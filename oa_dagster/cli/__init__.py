"""`oa-dagster` command: check and process sources locally, plus the platform's commands.

One module per command group (`sources`: check, process; `platform`: quickstart, ui, download, serve, cleanup;
`hooks`), each registering its parsers; the groups never import this module, so there is no import circle.
Start-up stays light (only argparse and the source model are imported up front) because contributors
run it many times while editing a source.
"""

from __future__ import annotations

import argparse

from oa_dagster.cli.hooks import add_hook_commands
from oa_dagster.cli.platform import add_platform_commands
from oa_dagster.cli.sources import add_source_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oa-dagster", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_source_commands(commands)
    add_platform_commands(commands)
    add_hook_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))
