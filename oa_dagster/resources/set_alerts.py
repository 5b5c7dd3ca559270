"""Where set alerts go and when a set counts as stalled (`sensors/set_alerts.py`)."""

import dagster as dg

DEFAULT_EXPECTED_HOURS = 36.0  # a weekly set of every entry; longer means something is stuck


class SetAlertSettings(dg.ConfigurableResource):
    """`webhook_url`: a Slack-compatible incoming webhook (None: no alerts, the sensor says so and skips).
    Give it as an `EnvVar`: a webhook URL is a secret, and the UI shows a resource's plain values."""

    webhook_url: str | None = None
    expected_hours: float = DEFAULT_EXPECTED_HOURS  # a set still running after this long is reported stalled
    timeout_seconds: float = 10.0
