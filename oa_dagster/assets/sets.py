"""`set_progress`: the current set as one asset, reported by the `set_launcher` sensor (`sensors/sets.py`).

No function computes it: the sensor records a runless materialization whenever the set's counts change, and
one with `finished: true` once every run of the set (retries included) has ended, which is the hook for what
follows a set (collections, coverage maps).
"""

import dagster as dg

from oa_dagster.sources.model import LAYERS

from . import OWNERS

SET_PROGRESS = dg.AssetKey("set_progress")

set_progress = dg.AssetSpec(
    SET_PROGRESS,
    group_name="sets",
    deps=list(LAYERS),
    kinds={"python"},
    owners=OWNERS,
    description="The current set as one unit: entries done, failed, pending, features. Reported by the "
    "set_launcher sensor; its materialization with finished=true is the hook for collections.",
)

SET_ASSETS = [set_progress]
