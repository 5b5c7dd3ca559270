"""Talking to one ArcGIS REST layer: metadata, counts and queries, with retries and error mapping.

ArcGIS servers often answer HTTP 200 with an `error` object, drop connections mid-page and rate-limit;
every request therefore goes through `request_json`, which retries transient failures with backoff and
maps "Token Required" to `EsriTokenRequired` and other errors to `DownloadError`. Each request (a page,
retries included) has a wall-clock deadline and the minimum throughput of every download, and its body is
streamed under a size cap and the decompression-bomb rule, since a page is held in memory.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from oa_dagster.errors import DownloadError, EsriTokenRequired
from oa_dagster.fetch.http import (
    BODY_ERRORS,
    RETRY_STATUSES,
    TRANSIENT_ERRORS,
    RetryableError,
    describe_body_error,
    make_session,
    read_body,
    retry_after_seconds,
    transient_or_final,
)
from oa_dagster.fetch.options import FetchOptions, LimitExceeded, Pace

TOKEN_CODES = frozenset({498, 499})
RETRY_ERROR_CODES = frozenset({500, 502, 503, 504})


@dataclass
class LayerInfo:
    """What the dumper needs from `<layer>?f=json`."""

    url: str
    name: str
    fields: list[dict[str, Any]]
    oid_field: str | None
    max_record_count: int | None
    supports_pagination: bool
    supports_geojson: bool
    extent: dict[str, Any] | None
    geometry_type: str | None
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    @classmethod
    def parse(cls, url: str, meta: dict[str, Any]) -> LayerInfo:
        fields = [f for f in meta.get("fields") or () if isinstance(f, dict) and f.get("name")]
        oid = meta.get("objectIdField") or next(
            (f["name"] for f in fields if f.get("type") == "esriFieldTypeOID"), None
        )
        advanced = meta.get("advancedQueryCapabilities") or {}
        formats = str(meta.get("supportedQueryFormats") or "").lower().replace(" ", "").split(",")
        max_records = meta.get("maxRecordCount")
        return cls(
            url=url,
            name=str(meta.get("name") or ""),
            fields=fields,
            oid_field=oid,
            max_record_count=max_records if isinstance(max_records, int) and max_records > 0 else None,
            supports_pagination=bool(meta.get("supportsPagination") or advanced.get("supportsPagination")),
            supports_geojson="geojson" in formats,
            extent=meta.get("extent"),
            geometry_type=meta.get("geometryType"),
            raw=meta,
        )

    def out_fields(self, wanted: list[str], log: logging.Logger) -> str:
        """`outFields` for the conform's columns, in the server's spelling; `*` when it names none."""
        if not wanted:
            return "*"
        if not self.fields:
            return ",".join(wanted)
        by_lower = {f["name"].lower(): f["name"] for f in self.fields}
        found = [by_lower[w.lower()] for w in wanted if w.lower() in by_lower]
        missing = [w for w in wanted if w.lower() not in by_lower]
        if missing:
            log.warning("the conform names fields the layer does not have: %s", ", ".join(missing))
        if not found:
            return "*"
        return ",".join(dict.fromkeys(found))


def _error_of(payload: Any) -> dict[str, Any] | None:
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        return payload["error"]
    return None


def _describe(error: dict[str, Any]) -> str:
    details = [str(d) for d in error.get("details") or () if d]
    return f"{error.get('code', '?')} {error.get('message', '')}".strip() + (
        f" ({'; '.join(details)})" if details else ""
    )


class ArcGISClient:
    """A pooled HTTP session for one layer URL; safe to share between the dumper's worker threads."""

    def __init__(
        self,
        url: str,
        options: FetchOptions,
        headers: dict[str, str],
        log: logging.Logger,
        extra_params: dict[str, str] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.extra_params = dict(extra_params or {})  # e.g. a `token` given in the source's URL
        self.options = options
        self.log = log
        self.session = make_session(options, headers, pool=max(4, options.esri_workers * 2))

    def close(self) -> None:
        self.session.close()

    def _once(self, path: str, params: dict[str, Any], post: bool, pace: Pace) -> bytes:
        url = self.url + path
        params = {**params, **self.extra_params}
        options = self.options
        try:
            if post:
                response = self.session.post(
                    url, data=params, timeout=options.timeouts, verify=options.verify_tls, stream=True
                )
            else:
                response = self.session.get(
                    url, params=params, timeout=options.timeouts, verify=options.verify_tls, stream=True
                )
        except requests.exceptions.SSLError as exc:
            raise DownloadError(f"TLS certificate verification failed for {url}: {exc}") from exc
        except TRANSIENT_ERRORS as exc:
            raise transient_or_final(exc, url) from exc
        with response:
            if response.status_code in RETRY_STATUSES:
                wait = retry_after_seconds(response.headers.get("Retry-After"))
                raise RetryableError(f"HTTP {response.status_code}", wait)
            body = self._read(response, url, pace)
        if response.status_code in TOKEN_CODES or (response.status_code in (401, 403) and b"token" in body.lower()):
            raise EsriTokenRequired(f"{url}: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise DownloadError(f"HTTP {response.status_code} {response.reason} from {url}")
        return body

    def _read(self, response: requests.Response, url: str, pace: Pace) -> bytes:
        """The whole (decoded) body, refused past `esri_max_response_bytes`."""
        cap = self.options.esri_max_response_bytes
        parts: list[bytes] = []
        size = 0
        try:
            for chunk in read_body(response, pace, self.options):
                size += len(chunk)
                if size > cap:
                    raise LimitExceeded(f"ArcGIS response from {url} is larger than the cap of {cap:,} bytes")
                parts.append(chunk)
        except BODY_ERRORS as exc:
            raise RetryableError(
                f"body truncated or stalled after {response.raw.tell():,} bytes: {describe_body_error(exc)}"
            ) from exc
        return b"".join(parts)

    def request_json(
        self,
        path: str,
        params: dict[str, Any],
        *,
        post: bool = False,
        what: str = "request",
        parse: Callable[[bytes], Any] | None = None,
    ) -> Any:
        """JSON from `<layer><path>`, retried on transient failures; raises DownloadError otherwise.

        `parse` replaces `json.loads` for pages that are passed through without a full decode; a
        ValueError from it (e.g. a body cut short by a dropped connection) is retried like a 5xx.
        """
        options = self.options
        pace = Pace(f"ArcGIS {what} from {self.url}", options.esri_request_deadline, options)
        for attempt in range(options.retries + 1):
            try:
                body = self._once(path, params, post, pace)
                return self._decode(body, parse, what)
            except RetryableError as exc:
                if attempt == options.retries:
                    raise DownloadError(
                        f"ArcGIS {what} failed after {attempt + 1} attempts for {self.url}: {exc}"
                    ) from exc
                wait = exc.wait if exc.wait is not None else options.delay(attempt + 1)
                if wait > options.max_retry_after:
                    raise DownloadError(f"ArcGIS {what}: server asks to wait {wait:.0f} s") from exc
                self.log.warning("ArcGIS %s attempt %d failed (%s); retrying in %.1f s", what, attempt + 1, exc, wait)
                pace.sleep_before_retry(wait, f"ArcGIS {what} from {self.url}")
        raise AssertionError("unreachable")

    def _decode(self, body: bytes, parse: Callable[[bytes], Any] | None, what: str) -> Any:
        if parse is not None and b'"error"' not in body[:200]:
            try:
                return parse(body)
            except ValueError as exc:
                raise RetryableError(f"unusable page ({len(body):,} bytes): {exc}") from exc
        try:
            payload = json.loads(body)
        except ValueError as exc:  # a dropped connection can leave half a JSON document
            raise RetryableError(f"invalid JSON ({len(body):,} bytes): {exc}") from exc
        error = _error_of(payload)
        if error is not None:
            message = _describe(error)
            if error.get("code") in TOKEN_CODES or "token required" in message.lower():
                raise EsriTokenRequired(f"{self.url}: {message}")
            if error.get("code") in RETRY_ERROR_CODES:
                raise RetryableError(f"ArcGIS error {message}")
            raise DownloadError(f"ArcGIS {what} failed for {self.url}: {message}")
        if parse is not None:
            try:
                return parse(body)
            except ValueError as exc:
                raise RetryableError(f"unusable page ({len(body):,} bytes): {exc}") from exc
        return payload

    def metadata(self) -> LayerInfo:
        payload = self.request_json("", {"f": "json"}, what="metadata")
        if not isinstance(payload, dict) or not payload:
            raise DownloadError(f"{self.url} did not return layer metadata")
        if "fields" not in payload and "layers" in payload:
            raise DownloadError(f"{self.url} is a service, not a layer: add the layer number (e.g. /0)")
        return LayerInfo.parse(self.url, payload)

    def count(self) -> int | None:
        """The server's feature count; None when it cannot say (tolerated, as in the reference)."""
        try:
            payload = self.request_json(
                "/query", {"where": "1=1", "returnCountOnly": "true", "f": "json"}, what="count"
            )
        except (EsriTokenRequired, LimitExceeded):
            raise
        except DownloadError as exc:
            self.log.warning("feature count unavailable: %s", exc.detail)
            return None
        count = payload.get("count") if isinstance(payload, dict) else None
        return count if isinstance(count, int) and count >= 0 else None

    def object_ids(self) -> tuple[str | None, list[int]]:
        payload = self.request_json(
            "/query", {"where": "1=1", "returnIdsOnly": "true", "f": "json"}, post=True, what="object id list"
        )
        ids = payload.get("objectIds") if isinstance(payload, dict) else None
        if not isinstance(ids, list):
            raise DownloadError(f"{self.url} returned no objectIds list")
        return payload.get("objectIdFieldName"), sorted(int(i) for i in ids)
