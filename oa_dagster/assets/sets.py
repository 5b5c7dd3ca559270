"""`set_progress` and `set_report`: the current set as one asset, and each finished set's regression report, both
reported by the `set_launcher` sensor (`sensors/sets.py`).

No function computes them: the sensor records a runless materialization of `set_progress` whenever the set's
counts change, and one with `finished: true` once every run of the set (retries included) has ended, which is
the hook for what follows a set (collections, coverage maps). `set_report` is a separate asset, materialized
once per finished set, so that its history is the list of past reports (and alerts watch it); `set_progress`
materializes many times while a set runs.
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

SET_REPORT = dg.AssetKey("set_report")

set_report = dg.AssetSpec(
    SET_REPORT,
    group_name="sets",
    deps=[SET_PROGRESS],
    kinds={"python"},
    owners=OWNERS,
    description="The regression report of each finished set against the previous one: entries newly broken, "
    "fixed, added, removed, held by the quality gate, with a feature count down over 10%, and unchanged (carried "
    "over). Reported by the set_launcher sensor once per set; the full lists are in sets/<id>/report.json.",
)

SET_ASSETS = [set_progress, set_report]
