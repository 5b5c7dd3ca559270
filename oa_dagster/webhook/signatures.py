"""GitHub's `X-Hub-Signature-256`: HMAC-SHA256 of the raw body with the webhook's secret.

Several secrets may be configured at once (`OA_WEBHOOK_SECRET=new,old`) so a secret can be rotated without a
window where GitHub's deliveries fail: add the new one here, change it on GitHub, then drop the old one.
Nothing here logs or returns a secret or a signature.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence

SIGNATURE_HEADER = "X-Hub-Signature-256"
_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")


def parse_secrets(value: str | None) -> list[str]:
    """The secrets of a comma-separated list, spaces around each ignored, empty items dropped (so an unset or
    blank variable means no secret: the receiver then refuses everything)."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def sign(secret: str, body: bytes) -> str:
    """The header value GitHub sends for `body`; for tests, benchmarks and tools that post deliveries."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(secrets: Sequence[str], body: bytes, header: str | None) -> bool:
    """Whether `header` is `sha256=<hex>` of `body` under one of `secrets`.

    Each secret is tried with a constant-time comparison of the digests; the shape check first is independent of
    the secrets, so its timing tells a caller nothing about them.
    """
    if not secrets or header is None:
        return False
    match = _SIGNATURE.fullmatch(header.strip())
    if match is None:
        return False
    given = bytes.fromhex(match.group(1))
    found = False
    for secret in secrets:  # no early exit: the time taken does not say which secret matched
        expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
        found |= hmac.compare_digest(expected, given)
    return found
