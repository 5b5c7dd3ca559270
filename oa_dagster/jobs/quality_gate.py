"""The operator's accept action: promote a run the quality gate held (Launchpad: `accept_held_run_job`).

The gate itself is plain code (`platform/quality_gate.py`), applied when a run is published
(`platform/publishing.py`); this job is the operator's side of it.
"""

import dagster as dg

from oa_dagster.platform.publishing import accept_held
from oa_dagster.resources.store import OutputStoreResource
from oa_dagster.run_tags import OPERATOR_PRIORITY, PRIORITY_TAG
from oa_dagster.sources.model import LAYERS


class AcceptConfig(dg.Config):
    layer: str  # addresses | parcels | buildings | centerlines
    entry: str  # the partition key, e.g. us/ca/alameda/county
    note: str = ""  # why it is fine (kept with the pointer and in the observation)


@dg.op(description="Make the held run of one entry its latest good output (after checking it in the UI).")
def accept_held_op(context: dg.OpExecutionContext, config: AcceptConfig, store: OutputStoreResource) -> None:
    if config.layer not in LAYERS:
        raise dg.Failure(f"layer must be one of {', '.join(LAYERS)}, not {config.layer!r}")
    try:
        pointer = accept_held(
            store.get_store(),
            config.layer,
            config.entry,
            accepted_by=f"run {context.run.run_id}" + (f": {config.note}" if config.note else ""),
        )
    except LookupError as exc:
        raise dg.Failure(str(exc)) from None
    context.log_event(
        dg.AssetObservation(
            asset_key=config.layer,
            partition=config.entry,
            metadata={
                "status": "accepted",
                "accepted_run": pointer["run_id"],
                "feature_count": int(pointer.get("feature_count") or 0),
                "note": config.note,
            },
        )
    )
    context.log.info(f"{config.layer} {config.entry}: run {pointer['run_id']} is now the latest good output")


@dg.job(
    description="Accept a run the quality gate held: config {layer, entry, note}. The run becomes the "
    "entry's latest good output, which downloads, collections and the results index read.",
    tags={PRIORITY_TAG: OPERATOR_PRIORITY},
)
def accept_held_run_job() -> None:
    accept_held_op()
