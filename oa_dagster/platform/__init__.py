"""Platform logic as plain functions (no Dagster): output store, key layout, quality gate, sets, catalog.

The Dagster assets, sensors and the CLI are thin wrappers over these, so the rules are unit-tested without
an instance.
"""
