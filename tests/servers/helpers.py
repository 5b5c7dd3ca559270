"""Small builders shared by the fetch tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from oa_dagster.fetch import FetchOptions
from oa_dagster.sources.model import LayerEntry

ROOT = Path(__file__).resolve().parents[2]
ADDRESS_CONFORM = {"format": "csv", "number": "NUMBER", "street": "STREET"}


def make_entry(
    data: str,
    *,
    protocol: str = "http",
    conform: dict[str, Any] | None = None,
    layer: str = "addresses",
    compression: str | None = None,
    headers: dict[str, str] | None = None,
    source_dir: Path | None = None,
    allow_local_files: bool = False,
) -> LayerEntry:
    raw: dict[str, Any] = {
        "name": "test",
        "data": data,
        "protocol": protocol,
        "conform": conform if conform is not None else dict(ADDRESS_CONFORM),
    }
    if compression:
        raw["compression"] = compression
    if headers:
        raw["request"] = {"headers": headers}
    return LayerEntry("xx/test", layer, "test", 0, raw, source_dir, allow_local_files=allow_local_files)


def fast_options(**overrides: Any) -> FetchOptions:
    """Options with tiny delays so retry and timeout tests stay fast."""
    values: dict[str, Any] = {
        "timeout": 2.0,
        "connect_timeout": 1.0,
        "retries": 2,
        "backoff": 0.01,
        "max_backoff": 0.05,
        "max_retry_after": 5.0,
    }
    values.update(overrides)
    return FetchOptions(**values)


def run_process_command(
    source: Path, layer: str, out: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`oa-dagster process SOURCE --layer LAYER --output OUT --no-preview -q [EXTRA]` in a fresh interpreter, so
    stderr is exactly what a contributor would see."""
    args = [sys.executable, "-m", "oa_dagster.cli", "process", str(source), "--layer", layer, "--output", str(out)]
    return subprocess.run(
        [*args, "--no-preview", "-q", *extra],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
