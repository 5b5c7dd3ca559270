"""`oa-dagster check` and `oa-dagster process`: a source file checked and processed locally, outside Dagster."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from oa_dagster.cli.progress import Progress
from oa_dagster.sources.model import LAYERS

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2
ALLOW_LOCAL_FILES_HELP = (
    "let data be a file:// URL or any local path (without it, a path is relative to the "
    "source file and stays inside the sources tree, as on the platform)"
)


def _check_one(path: str, allow_local_files: bool) -> dict[str, Any]:
    from oa_dagster.conform.acceptance import run_acceptance_tests
    from oa_dagster.sources import SourceInvalid, load_source

    record: dict[str, Any] = {"source": path, "valid": False, "errors": [], "tests": []}
    try:
        source = load_source(path, allow_local_files=allow_local_files)
    except SourceInvalid as exc:
        record["errors"] = exc.errors
        return record
    except OSError as exc:
        record["errors"] = [f"$: cannot read {path}: {exc.strerror or exc}"]
        return record
    record["valid"] = True
    for entry in source.entries:
        cases = run_acceptance_tests(entry.layer, entry.name, entry.conform, entry.tests)
        record["tests"] += [case.to_dict() for case in cases]
    return record


def _check_or_report(path: str, allow_local_files: bool) -> dict[str, Any]:
    """`_check_one`, with a bug met by one file reported as that file's error so the other files still run."""
    try:
        return _check_one(path, allow_local_files)
    except Exception as exc:
        return {
            "source": path,
            "valid": False,
            "tests": [],
            "errors": [f"$: could not be checked ({type(exc).__name__}: {exc})"],
        }


def cmd_check(args: argparse.Namespace) -> int:
    ok = True
    for path in args.sources:
        record = _check_or_report(path, args.allow_local_files)
        ok = ok and record["valid"] and all(t["passed"] for t in record["tests"])
        if args.json:
            print(json.dumps(record, ensure_ascii=False), flush=True)
            continue
        if not record["valid"]:
            print(f"{path}: INVALID")
            for error in record["errors"]:
                print(f"  {error}")
            continue
        passed = sum(t["passed"] for t in record["tests"])
        print(f"{path}: valid, acceptance tests {passed}/{len(record['tests'])} passed")
        for case in record["tests"]:
            if not case["passed"]:
                detail = case["error"] or f"expected {case['expected']}, got {case['actual']}"
                print(f"  FAILED {case['layer']}/{case['name']}: {case['description']}: {detail}")
    return EXIT_OK if ok else EXIT_PROBLEM


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is now: a handler bound to the stream of the first call would write to a
    closed stream when `main()` runs again with stderr replaced (tests, embedding)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _stderr_logger(quiet: bool) -> logging.Logger:
    logger = logging.getLogger("oa_dagster.cli")
    if not logger.handlers:
        handler = _CurrentStderr()
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False
    return logger


def _allowed_hosts() -> frozenset[str]:
    """`OA_CI_ALLOW_HOSTS` parsed; imported only here, since `fetch.hosts` brings in requests (a tenth of a second
    that a run on a local file never needs)."""
    from oa_dagster.fetch.hosts import parse_allowed_hosts

    return parse_allowed_hosts(os.environ.get("OA_CI_ALLOW_HOSTS"))


def cmd_process(args: argparse.Namespace) -> int:
    from oa_dagster.process import run_entry
    from oa_dagster.sources import EntryNotFound, SourceInvalid, has_coverage, load_source

    try:
        source = load_source(args.source, allow_local_files=args.allow_local_files)
    except OSError as exc:
        print(f"error: cannot read {args.source}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except SourceInvalid as exc:
        print(f"error: {args.source} is not a valid source:", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return EXIT_PROBLEM
    try:
        entry = source.entry(args.layer, args.name)
    except EntryNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from oa_dagster.fetch import FetchOptions

    try:
        allowed = _allowed_hosts() if args.public_hosts_only else frozenset()
    except ValueError as exc:
        print(f"error: OA_CI_ALLOW_HOSTS: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from oa_dagster.cli.entry_folders import entry_folder, refusal

    try:
        output_dir = entry_folder(Path(args.output), entry.layer, entry.source_key, entry.name)
    except ValueError as exc:
        print(f"error: {args.source}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if refused := refusal(output_dir, entry.layer, entry.source_key, entry.name):
        print(refused, file=sys.stderr)
        return EXIT_USAGE
    progress = None if args.quiet else Progress()
    options = FetchOptions(
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        public_hosts_only=args.public_hosts_only,
        allowed_hosts=allowed,
    )
    state = run_entry(
        entry,
        output_dir,
        preview=not args.no_preview,
        coverage_ok=has_coverage(source),
        fetch_options=options,
        log=_stderr_logger(args.quiet),
        progress=progress,
    )
    if progress:
        progress.close()
    if state.skipped:
        print(f"{entry.key} ({entry.layer}): skipped: {state.problem_detail}")
        return EXIT_OK
    if state.has_output:
        note = f" ({state.source_problem})" if state.source_problem else ""
        print(f"{entry.key} ({entry.layer}): {state.feature_count:,} features in {output_dir}{note}")
        return EXIT_OK
    print(f"{entry.key} ({entry.layer}): {state.source_problem}: {state.problem_detail}", file=sys.stderr)
    return EXIT_PROBLEM


def add_source_commands(commands: argparse._SubParsersAction) -> None:
    """Register `check` and `process`."""
    check = commands.add_parser(
        "check",
        help="validate sources and run their acceptance tests",
        description="Validates each source file against the schema and the platform's rules and runs the "
        "acceptance tests of its entries (no download). Exit code 1 when a source is invalid or a test fails.",
    )
    check.add_argument("sources", nargs="+", metavar="SOURCE.json")
    check.add_argument("--json", action="store_true", help="one JSON object per source per line")
    check.add_argument("--allow-local-files", action="store_true", help=ALLOW_LOCAL_FILES_HELP)
    check.set_defaults(func=cmd_check)

    process = commands.add_parser(
        "process",
        help="process one layer entry of a source outside Dagster",
        description="Downloads, conforms and checks one layer entry of a source file, as a platform run does, "
        "and writes its output, state.json, sample, preview and log to DIR/<layer>/<source key>/<name>/. Exit "
        "code 1 when the source has a problem, 2 for a usage error.",
    )
    process.add_argument("source", metavar="SOURCE.json")
    process.add_argument("--layer", required=True, choices=LAYERS)
    process.add_argument("--name", help="entry name; required when the source has several entries in the layer")
    process.add_argument(
        "--output",
        required=True,
        metavar="DIR",
        help="files go to DIR/<layer>/<source key>/<name>/, as `download` puts them: entries never share a folder",
    )
    process.add_argument("--no-preview", action="store_true", help="do not draw preview.png")
    process.add_argument(
        "--cache-dir", metavar="DIR", help="keep downloads here and re-use them when the server says they are unchanged"
    )
    process.add_argument("--allow-local-files", action="store_true", help=ALLOW_LOCAL_FILES_HELP)
    process.add_argument(
        "--public-hosts-only",
        action="store_true",
        help="download from public addresses only, as CI jobs do (no loopback, private, link-local or multicast "
        "addresses; OA_CI_ALLOW_HOSTS lists exceptions: host, host:port or IP, comma-separated)",
    )
    process.add_argument("-q", "--quiet", action="store_true", help="only warnings and the result line")
    process.set_defaults(func=cmd_process)
