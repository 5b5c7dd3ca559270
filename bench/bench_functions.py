"""Benchmark the attribute-function engine alone: `evaluate_conform` over synthetic county rows.

Run: `python bench/bench_functions.py [--rows 1000000] [--batch 65536]`. Prints seconds and rows/second for
a few county-like conforms (plain columns, lists, join, constant, integer accuracy, plus one Python-`re`
function: regexp, prefixed_number/postfixed_street on a full-address column, or a map), over batches of the
size the readers produce.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow as pa  # noqa: E402
from synthetic import CONFORM, address_table  # noqa: E402

from oa_dagster.conform.functions import evaluate_conform  # noqa: E402

CONFORMS: dict[str, dict] = {
    "county (join, list, constant)": CONFORM,
    "+ prefixed_number / postfixed_street": {
        **CONFORM,
        "number": {"function": "prefixed_number", "field": "FULLADDR"},
        "street": {"function": "postfixed_street", "field": "FULLADDR"},
    },
    "+ regexp search and replace": {
        **CONFORM,
        "number": {"function": "regexp", "field": "FULLADDR", "pattern": "^([0-9]+)"},
        "street": {"function": "regexp", "field": "FULLADDR", "pattern": "^(?:[0-9]+ )(.*)", "replace": "$1"},
    },
    "+ map, format, first_non_empty": {
        **CONFORM,
        "number": {"function": "format", "fields": ["ADDNUM", "ADDNUMSUF"], "format": "$1$2"},
        "city": {"function": "map", "field": "CITY", "mapping": {"OAKLAND": "Oakland"}, "else": "Other"},
        "unit": {"function": "first_non_empty", "fields": ["UNIT", "SUFDIR"]},
    },
}


def batches(table: pa.Table, size: int) -> list[pa.RecordBatch]:
    return table.combine_chunks().to_batches(max_chunksize=size)


def run(rows: int, batch_size: int) -> None:
    table, _, _ = address_table(rows)
    parts = batches(table, batch_size)
    print(f"{rows:,} rows in {len(parts)} batches of up to {batch_size:,}")
    for name, conform in CONFORMS.items():
        evaluate_conform(parts[0], conform, "addresses")  # warm-up (imports, pattern compilation)
        start = time.perf_counter()
        for batch in parts:
            evaluate_conform(batch, conform, "addresses")
        seconds = time.perf_counter() - start
        print(f"  {name:40s} {seconds:6.3f} s  {rows / seconds:12,.0f} rows/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=65_536)
    args = parser.parse_args()
    run(args.rows, args.batch)


if __name__ == "__main__":
    main()
