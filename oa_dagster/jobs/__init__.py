"""Jobs, one module per concern (the same names as in `assets/` and `sensors/`): where a Dagster user looks
for what to launch. `jobs/` sits beside `assets/`, `sensors/` and `resources/` because some jobs are not assets
(`accept_held_run_job`, `cleanup_job` are op jobs). Every job name ends in
`_job`.
"""
