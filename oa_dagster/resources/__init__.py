"""Dagster resources: the output store, the sources repository and processing settings."""
