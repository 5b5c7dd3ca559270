"""`POST /hook`: GitHub webhook deliveries, verified and stored for the CI sensor, nothing else in the request.

GitHub waits 10 s at most and never retries on its own (failed deliveries are redelivered by hand or through its
API), so the request only checks and stores: no GitHub or Dagster call. The order of the checks is the security
boundary: a configured secret, the maintenance switch, the size cap while the body streams in, the signature over
the raw bytes, and only then parsing. An unverified body is never parsed.

Answers: 200 recorded (or already recorded: a redelivery), 202 verified but not used (other events and actions),
400 a malformed delivery, 401 unsigned or wrongly signed, 413 over the cap, 503 not accepting now (no secret,
maintenance, database unavailable). Bodies are JSON `{"status": ...}` or `{"error": ...}`; no secret, signature
or database URL is ever in an answer or a log line.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .deliveries import DeliveryStore, StoreUnavailable
from .payloads import Ignored, PayloadError, extract
from .signatures import SIGNATURE_HEADER, verify

# GitHub caps payloads at 25 MB and drops larger ones before sending. Real CI payloads are far smaller (a push
# lists at most 20 commits, a pull request is a few tens of KB), and a signed 10 MiB body is stored whole, so 10 MiB
# bounds the memory a delivery can take while leaving a wide margin.
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DELIVERY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")  # GitHub's are UUIDs
NO_STORE = {"Cache-Control": "no-store"}

log = logging.getLogger("oa_dagster.webhook")


def _answer(code: int, headers: Mapping[str, str] | None = None, /, **body: Any) -> JSONResponse:
    return JSONResponse(body, status_code=code, headers={**NO_STORE, **(headers or {})})


def _unavailable(exc: StoreUnavailable, delivery: str | None) -> JSONResponse:
    log.error("webhook delivery %r refused with 503: %s", delivery, exc)
    return _answer(503, error="the deliveries database is unavailable; redeliver later")


def _short(value: str | None) -> str | None:
    """An unverified header value, cut short for a log line (logged with %r, so it cannot forge lines)."""
    return None if value is None else value[:100]


async def _read_body(request: Request, cap: int) -> bytes | Response:
    """The body, or a 413 as soon as it is known to be over `cap`: a declared Content-Length is refused before any
    byte is read, a chunked body when the cap is passed, so at most `cap` bytes are ever held."""

    def too_large() -> Response:  # the connection is closed: the rest of the body is never read
        return _answer(413, {"Connection": "close"}, error=f"body over the limit of {cap:,} bytes")

    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > cap:
        return too_large()
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > cap:
                return too_large()
    except ClientDisconnect:
        return _answer(400, error="the client went away before the body ended")
    return bytes(body)


def hook_routes(
    store: DeliveryStore | None, secrets: Sequence[str], *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> list[Route]:
    """The `POST /hook` route. Without a secret (or a store) it answers 503 to everything: an open receiver would
    store anyone's JSON."""
    if max_body_bytes < 1:
        raise ValueError(f"max_body_bytes must be positive, not {max_body_bytes}")
    keys = tuple(secrets)
    if any(not key for key in keys):  # an empty key would verify anything signed with an empty key
        raise ValueError("a webhook secret may not be empty")

    def accept(headers: Headers, body: bytes, received_at: datetime) -> Response:
        """Everything after the body is read, in a worker thread: hashing and parsing a large body and the database
        write do not hold up the event loop."""
        assert store is not None
        delivery = headers.get("x-github-delivery")
        signature = headers.get(SIGNATURE_HEADER)
        if not verify(keys, body, signature):
            log.warning(
                "webhook delivery %r refused with 401: %s signature",
                _short(delivery),
                "no" if signature is None else "a wrong",
            )
            return _answer(401, error="missing signature" if signature is None else "signature does not match")
        if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return _answer(400, error="form-encoded delivery: set the webhook's content type to application/json")
        try:
            text = body.decode("utf-8")
            payload = json.loads(text)
        except UnicodeDecodeError:
            return _answer(400, error="body is not UTF-8")
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, huge integers, absurd nesting
            return _answer(400, error=f"body is not JSON: {str(exc)[:200]}")
        if not isinstance(payload, dict):
            return _answer(400, error=f"body is a JSON {type(payload).__name__}, not an object")
        event = headers.get("x-github-event")
        if not event:
            return _answer(400, error="missing X-GitHub-Event header")
        if delivery is None or not DELIVERY_ID.fullmatch(delivery):
            return _answer(400, error="missing or malformed X-GitHub-Delivery header")
        try:
            fields = extract(event, delivery, payload)
        except PayloadError as exc:
            log.warning("webhook delivery %r refused with 400: %s payload: %s", delivery, event, exc)
            return _answer(400, error=f"{event} payload: {exc}")
        if isinstance(fields, Ignored):
            log.info("webhook delivery %r ignored: %s", delivery, fields.reason)
            return _answer(202, status="ignored", delivery=delivery, reason=fields.reason)
        try:
            recorded = store.record(fields, payload=text, received_at=received_at)
        except StoreUnavailable as exc:
            return _unavailable(exc, delivery)
        if recorded.duplicate:
            log.info("webhook delivery %r already recorded (id %d)", delivery, recorded.id)
            return _answer(200, status="already recorded", delivery=delivery, id=recorded.id)
        log.info("webhook delivery %r recorded: %s %s (id %d)", delivery, event, fields.action or "", recorded.id)
        return _answer(200, status="recorded", delivery=delivery, event=event, id=recorded.id)

    async def hook(request: Request) -> Response:
        received_at = datetime.now(UTC)
        if not keys:
            return _answer(503, error="webhooks are off: no secret is configured (OA_WEBHOOK_SECRET)")
        if store is None:
            return _answer(503, error="webhooks are off: no deliveries database is configured")
        delivery = _short(request.headers.get("x-github-delivery"))
        try:
            maintenance = store.cached_maintenance()
            if maintenance is None:
                maintenance = await run_in_threadpool(store.maintenance)
        except StoreUnavailable as exc:
            return _unavailable(exc, delivery)
        if maintenance:
            log.info("webhook delivery %r refused with 503: maintenance", delivery)
            return _answer(503, error="maintenance: new deliveries are refused for now; redeliver this one later")
        body = await _read_body(request, max_body_bytes)
        if isinstance(body, Response):
            log.warning("webhook delivery %r refused with %d", delivery, body.status_code)
            return body
        return await run_in_threadpool(accept, request.headers, body, received_at)

    return [Route("/hook", hook, methods=["POST"], name="hook")]
