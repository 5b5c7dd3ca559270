"""oa-dagster: the OpenAddresses processing platform on Dagster."""

__version__ = "0.1.0"
