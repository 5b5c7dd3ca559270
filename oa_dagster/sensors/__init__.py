"""Automation: sensors and schedules, one module per concern (the same names as in `assets/` and `jobs/`):
`sets.py` (the `weekly_set` schedule, the `set_launcher` sensor), `cleanup.py` (the `daily_cleanup` schedule).
"""
