"""Assets, one module per concern (the same names as in `jobs/` and `sensors/`): `catalog.py` (source_catalog),
`layers.py` (the four layer assets, with their checks, metadata, worker and event writes in `layers_*.py`),
`sets.py` (set_progress), `ci_jobs.py` (ci_job). Each module exports its list (`CATALOG_ASSETS`, `LAYER_ASSETS`,
`SET_ASSETS`, `CI_ASSETS`), which `definitions.py` assembles.
"""

OWNERS = ["team:openaddresses"]  # the UI's owner filter; one team runs every asset today
