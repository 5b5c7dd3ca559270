"""The output store as a Dagster resource: a local directory or an S3 bucket (any endpoint URL)."""


from abc import ABC, abstractmethod

import dagster as dg
from dagster_aws.s3 import S3Resource

from oa_dagster.platform.store import LocalStore, OutputStore, S3Store


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


class S3OutputStore(OutputStoreResource):
    """Outputs in a bucket through dagster-aws's `S3Resource` (AWS, MinIO, R2, moto...)."""

    s3: dg.ResourceDependency[S3Resource]
    bucket: str
    prefix: str = ""
    public_url: str | None = None  # public bucket/CDN base: metadata links are stable forever
    download_url: str | None = None  # the webhook app's /download base, which redirects to a presigned URL

    def get_store(self) -> OutputStore:
        return S3Store(self.s3.get_client(), self.bucket, self.prefix, public_url=self.public_url,
                       download_url=self.download_url)
