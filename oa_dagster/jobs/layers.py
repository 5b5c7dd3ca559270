"""One job per layer, `<layer>_job`: what the set sensor launches for each batch (a partition range)."""

import dagster as dg

from oa_dagster.sources.model import LAYERS

LAYER_JOBS = {
    layer: dg.define_asset_job(
        f"{layer}_job",
        selection=dg.AssetSelection.assets(layer),
        executor_def=dg.in_process_executor,
        description=f"Process {layer} entries (one step, in the run process: no extra subprocess per run).",
    )
    for layer in LAYERS
}
