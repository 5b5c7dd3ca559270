"""The planned materializations a set run writes itself, for entries its Dagster range does not hold.

A run of an incremental set names only its first entry in Dagster's partition tags and its last in `oa/batch_end`
(`sensors/sets.py` `range_tags`): a range from the first to the last would sweep in the carried-over entries between
them, and creating the run would write a planned event for each, one statement each, before the run can start. The
UI shows a partition in progress, then failed if its run fails without materializing it, from that planned event;
so the run writes one for each of its other entries (not the carried ones) before it processes any, as Dagster
would have at the run's creation.
"""

import logging
from collections.abc import Iterable

import dagster as dg

from .layers_event_writes import Write


def batch_partitions(instance: dg.DagsterInstance, layer: str, first: str, last: str) -> list[str]:
    """The layer's partitions from `first` to `last`, in the dynamic partitions' order (a Dagster range's)."""
    ordered = instance.get_dynamic_partitions(layer)
    position = {key: number for number, key in enumerate(ordered)}
    missing = [key for key in (first, last) if key not in position]
    if missing:  # a partition deleted between the set's planning and its run
        raise dg.Failure(f"{layer}: the batch's entry {missing[0]} is no longer a partition of the layer")
    start, end = position[first], position[last]
    if end < start:
        raise dg.Failure(f"{layer}: the batch ends at {last}, before its first entry {first}")
    return ordered[start : end + 1]


def report_planned(context: dg.AssetExecutionContext, layer: str, keys: Iterable[str], write: Write) -> None:
    """A planned materialization of `layer` for each key, written as the run's own step's, as Dagster writes them."""
    from dagster._core.events import AssetMaterializationPlannedData, DagsterEvent

    step_key = context.get_step_execution_context().step.key
    for key in keys:
        event = DagsterEvent.build_asset_materialization_planned_event(
            context.run.job_name, step_key, AssetMaterializationPlannedData(dg.AssetKey(layer), partition=key)
        )
        write(
            f"{key}: its planned materialization",
            lambda event=event: context.instance.report_dagster_event(event, context.run.run_id, logging.DEBUG),
        )
