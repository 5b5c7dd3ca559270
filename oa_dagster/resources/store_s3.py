"""The output store on S3, through dagster-aws (imported only by deployments that use it)."""

import dagster as dg
from dagster_aws.s3 import S3Resource

from oa_dagster.platform.store import OutputStore, S3Store

from .store import OutputStoreResource


class S3OutputStore(OutputStoreResource):
    """Outputs in a bucket through dagster-aws's `S3Resource` (AWS, MinIO, R2, moto...)."""

    s3: dg.ResourceDependency[S3Resource]
    bucket: str
    prefix: str = ""
    public_url: str | None = None  # public bucket/CDN base: metadata links are stable forever
    download_url: str | None = None  # the webhook app's /download base, which redirects to a presigned URL

    def get_store(self) -> OutputStore:
        return S3Store(
            self.s3.get_client(), self.bucket, self.prefix, public_url=self.public_url, download_url=self.download_url
        )
