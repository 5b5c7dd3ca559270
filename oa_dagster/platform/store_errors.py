"""The output store being unreachable, told apart from every other error.

An S3 outage (503 SlowDown / ServiceUnavailable, a 5xx, a refused or dropped connection) reaches the caller only
after the client's own retries (`resources/deployments.py` sets them: botocore's standard mode, `S3_RETRIES`).
It is then one exception, `OutputStoreUnavailable`, whose message names the operation, the key and the cause, so
a failed entry says "S3 unavailable" rather than a traceback of botocore internals. Everything else (a 403, a
missing bucket, a bug) is left as it is: those are not worth retrying.
"""

from __future__ import annotations

from oa_dagster.wording import plural

THROTTLED = frozenset({"SlowDown", "ServiceUnavailable", "Throttling", "RequestTimeout", "InternalError", "503"})


class OutputStoreUnavailable(Exception):
    """The store did not answer, or answered "unavailable", for as long as the client retried."""


def s3_unavailable_reason(exc: BaseException) -> str | None:
    """Why S3 was unavailable, in one line (`PutObject answered 503 ServiceUnavailable after 5 attempts`), or None
    when `exc` is not an outage. boto3's managed transfers raise their own error from the client's: both are read."""
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    cause: BaseException | None = exc
    for _ in range(3):  # S3UploadFailedError is raised while handling the ClientError that caused it
        if cause is None or isinstance(cause, ClientError | HTTPClientError | BotoConnectionError):
            break
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, ClientError):
        meta = cause.response.get("ResponseMetadata") or {}
        status = int(meta.get("HTTPStatusCode") or 0)
        code = str((cause.response.get("Error") or {}).get("Code") or "")
        if status < 500 and code not in THROTTLED:
            return None
        attempts = int(meta.get("RetryAttempts") or 0) + 1
        return f"{cause.operation_name} answered {status} {code} after {plural(attempts, 'attempt')}"
    if isinstance(cause, HTTPClientError | BotoConnectionError):
        return f"{type(cause).__name__}: {str(cause)[:300]}"
    return None
