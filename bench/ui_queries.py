"""The GraphQL an asset page of the Dagster UI asks for, written against the schema (the UI's own queries are
minified in the webserver's bundle): what the partitions tab, the latest materialization and the runs list read.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import requests

# The partitions tab: every key of the dynamic partitions definition and the health bar's status of each.
PARTITION_HEALTH = """
query PartitionHealth($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode {
      id
      partitionKeysByDimension { name partitionKeys }
      assetPartitionStatuses {
        __typename
        ... on DefaultPartitionStatuses {
          materializedPartitions failedPartitions unmaterializedPartitions materializingPartitions
        }
      }
    }
  }
}
"""

# The overview's "latest materialization", every metadata entry with the fields the UI renders of each kind.
LATEST_MATERIALIZATION = """
query LatestMaterialization($key: AssetKeyInput!) {
  assetOrError(assetKey: $key) {
    ... on Asset {
      assetMaterializations(limit: 1) {
        runId partition timestamp
        metadataEntries {
          __typename label description
          ... on TextMetadataEntry { text }
          ... on IntMetadataEntry { intValue }
          ... on FloatMetadataEntry { floatValue }
          ... on BoolMetadataEntry { boolValue }
          ... on JsonMetadataEntry { jsonString }
          ... on MarkdownMetadataEntry { mdStr }
          ... on UrlMetadataEntry { url }
          ... on TableMetadataEntry { table { records schema { columns { name type } } } }
        }
      }
    }
  }
}
"""

# The runs list filtered by a set's tag: the first page and the count.
RUNS_OF_SET = """
query RunsOfSet($set: String!) {
  runsOrError(filter: {tags: [{key: "oa/set", value: $set}]}, limit: 25) {
    ... on Runs {
      count
      results {
        runId status jobName startTime endTime creationTime
        tags { key value }
        assetSelection { path }
      }
    }
  }
}
"""


def post(base: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    """The answer's data; an error answer raises (a benchmark of failing queries measures nothing)."""
    answer = requests.post(f"{base}/graphql", json={"query": query, "variables": variables}, timeout=300)
    body = answer.json()
    if not answer.ok or body.get("errors"):
        raise RuntimeError(f"GraphQL error: {answer.text[:2000]}")
    return body["data"]


def partition_counts(data: dict[str, Any]) -> dict[str, int]:
    """How many partitions the health bar shows in each state, and how many keys the tab lists."""
    node = data["assetNodeOrError"]
    statuses = node["assetPartitionStatuses"]
    states = ("materializedPartitions", "failedPartitions", "unmaterializedPartitions", "materializingPartitions")
    counts = {name: len(statuses[name]) for name in states}
    counts["keys"] = sum(len(d["partitionKeys"]) for d in node["partitionKeysByDimension"])
    return counts


def timed(call: Callable[[], Any], calls: int) -> tuple[dict[str, float], Any]:
    """p50 / p95 / max seconds of `calls` calls, and the last answer (the first call is counted: a user opening
    the page after the webserver started pays it)."""
    seconds, answer = [], None
    for _ in range(calls):
        started = time.perf_counter()
        answer = call()
        seconds.append(time.perf_counter() - started)
    cuts = statistics.quantiles(seconds, n=20, method="inclusive") if len(seconds) > 1 else seconds * 19
    figures = {
        "first": round(seconds[0], 3),
        "p50": round(statistics.median(seconds), 3),
        "p95": round(cuts[18], 3),
        "max": round(max(seconds), 3),
    }
    return figures, answer
