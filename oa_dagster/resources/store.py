"""The output store as a Dagster resource: a local directory here, an S3 bucket in `store_s3.py`.

The S3 one lives apart because importing dagster-aws is slow (figures in docs/platform.md), and every run process
that loads the code location would pay for it: a local deployment never needs it.
"""

from abc import ABC, abstractmethod

import dagster as dg

from oa_dagster.platform.store import LocalStore, OutputStore


class OutputStoreResource(dg.ConfigurableResource, ABC):
    """Assets ask for this type; the deployment picks the implementation."""

    @abstractmethod
    def get_store(self) -> OutputStore: ...


class LocalOutputStore(OutputStoreResource):
    """Outputs under a directory on this machine (the default: `$OA_DATA_DIR` or `$DAGSTER_HOME/oa-data`)."""

    root: str
    base_url: str | None = None  # e.g. an nginx serving the directory; else file:// URLs

    def get_store(self) -> OutputStore:
        return LocalStore(self.root, base_url=self.base_url)
