"""Stable download URLs for the output store: `/download/<store key>` and `/latest/<layer>/<partition key>`.

Metadata stores `<download_url>/<key>` forever, while presigned S3 URLs expire within 7 days, so every request
is answered with a fresh presigned URL (307, never cached) for S3, or with the file itself for a local store.
Only the published parts of the layout are served (`held/` runs wait for an operator; pointers to them are not),
plus the results index at the store root (`/` redirects to its page, `/download/index.html`). The page is the one
file answered with its bytes from S3 too: its links are relative to it, so it must stay at `/download/`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from stat import S_ISREG
from typing import Any
from urllib.parse import quote, urlsplit

from botocore.exceptions import BotoCoreError, ClientError
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from oa_dagster.platform.content_types import content_type
from oa_dagster.platform.store import WRITING_PREFIX, LocalStore, OutputStore, S3Store, check_key, get_json
from oa_dagster.platform.store_errors import OutputStoreUnavailable
from oa_dagster.platform.store_layout import latest_key
from oa_dagster.results_index.keys import CONTENT_TYPES, INDEX_HTML, ROOT_FILES
from oa_dagster.results_index.page import page_csp
from oa_dagster.sources.model import LAYERS

SERVED_PREFIXES = ("runs/", "latest/", "catalog/", "sets/", "jobs/", "collections/", "coverage/")
# at the store root: the results index, and the machine's classic names of the address collections
CLASSIC_COLLECTION = re.compile(r"^openaddr-collected-[a-z0-9_]+(-sa)?\.zip$")
# rebuilt in place under the same key: a browser asks again (revalidates) rather than showing an old copy
CHANGING_PREFIXES = ("latest/", "collections/", "coverage/")
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # the SigV4 limit
# Longer keys name nothing in any store, so they are refused before a lookup (which failed as a 502 before):
MAX_KEY_BYTES = 1024  # S3's own limit on a key (UTF-8)
MAX_SEGMENT_BYTES = 255  # a file name on a local store; the layout's segments (keys, names, run ids) are short
NO_STORE = {"Cache-Control": "no-store"}
# Files come from sources (cache.<ext> may be XML, HTML...): never sniffed or run as active content here.
FILE_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"}


def _text(status: int, message: str) -> PlainTextResponse:
    return PlainTextResponse(message + "\n", status_code=status, headers=NO_STORE)


def _answering_502(endpoint: Callable[[Request], Response]) -> Callable[[Request], Response]:
    """A store that refuses or fails (credentials, permissions, an outage) is a 502 naming the cause, never a 404:
    not-found is decided by the store calls themselves."""

    def guarded(request: Request) -> Response:
        try:
            return endpoint(request)
        except (ClientError, BotoCoreError, OSError, OutputStoreUnavailable) as exc:
            cause = exc.__cause__ if isinstance(exc, OutputStoreUnavailable) and exc.__cause__ else exc
            code = getattr(cause, "response", {}).get("Error", {}).get("Code", type(cause).__name__)
            return _text(502, f"the store could not answer ({code})")

    return guarded


def _refused(key: str) -> PlainTextResponse | None:
    """A `400` for a key that cannot name anything in the store; None when the key may be looked up."""
    size = len(key.encode("utf-8", "surrogatepass"))
    if size > MAX_KEY_BYTES:
        return _text(400, f"bad key: {size:,} bytes long, over the {MAX_KEY_BYTES:,}-byte limit of store keys")
    longest = max(len(part.encode("utf-8", "surrogatepass")) for part in key.split("/"))
    if longest > MAX_SEGMENT_BYTES:
        return _text(400, f"bad key: a segment of {longest:,} bytes, over the {MAX_SEGMENT_BYTES}-byte limit")
    try:
        check_key(key)
    except ValueError as exc:
        return _text(400, str(exc))
    return None


def _served(key: str) -> bool:
    return key.startswith(SERVED_PREFIXES) or key in ROOT_FILES or bool(CLASSIC_COLLECTION.match(key))


def _file_headers(key: str, page_policy: str) -> dict[str, str]:
    """nosniff everywhere; the results page may run its own inline script (by hash), nothing else may run."""
    headers = {**FILE_HEADERS}
    if key == INDEX_HTML:
        headers["Content-Security-Policy"] = page_policy
    if key.startswith(CHANGING_PREFIXES) or "/" not in key:
        headers["Cache-Control"] = "no-cache"
    return headers


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def download_routes(store: OutputStore, *, presign_seconds: int = 3600) -> list[Route]:
    """The routes, bound to one store; `presign_seconds` is how long each redirect target stays valid."""
    if not 1 <= presign_seconds <= MAX_PRESIGN_SECONDS:
        raise ValueError(f"presign seconds must be 1..{MAX_PRESIGN_SECONDS}, not {presign_seconds}")
    if not isinstance(store, S3Store | LocalStore):
        raise TypeError(f"cannot serve downloads from {type(store).__name__}")
    local_policy = page_csp()  # the page's images come from this app itself

    def serve(key: str) -> Response:
        if isinstance(store, S3Store):
            if key == INDEX_HTML:  # its bytes, so its relative links resolve under /download/
                page = store.get_bytes(key)
                if page is None:
                    return _text(404, f"not found: {key} (the results_index asset has not run yet)")
                # its images redirect to presigned URLs on the S3 endpoint: the policy allows that origin (only)
                policy = page_csp([_origin(store.presigned_url(key, 60))])
                return Response(page, media_type=CONTENT_TYPES[key], headers=_file_headers(key, policy))
            if not store.exists(key):
                return _text(404, f"not found: {key}")
            return RedirectResponse(store.presigned_url(key, presign_seconds), status_code=307, headers=NO_STORE)
        path = store.path(key)
        try:
            stat = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return _text(404, f"not found: {key}")
        if not S_ISREG(stat.st_mode) or path.name.startswith(WRITING_PREFIX):
            return _text(404, f"not found: {key}")
        media_type = content_type(key)  # what the same object on S3 is served as
        return FileResponse(path, stat_result=stat, headers=_file_headers(key, local_policy), media_type=media_type)

    @_answering_502
    def download(request: Request) -> Response:
        key: str = request.path_params["key"]
        refused = _refused(key)
        if refused is not None:
            return refused
        if not _served(key):
            return _text(404, f"not found: {key} (served: {', '.join(SERVED_PREFIXES)}, the results index)")
        return serve(key)

    def front_page(request: Request) -> Response:
        # relative to the app's root, so the redirect stays right behind a proxy that rewrites the host
        target = request.scope.get("root_path", "") + "/download/" + INDEX_HTML
        return RedirectResponse(target, status_code=307, headers=NO_STORE)

    @_answering_502
    def latest(request: Request) -> Response:
        layer: str = request.path_params["layer"]
        partition_key: str = request.path_params["partition_key"]
        if layer not in LAYERS:
            return _text(404, f"unknown layer {layer!r} (layers: {', '.join(LAYERS)})")
        refused = _refused(partition_key) or _refused(latest_key(layer, partition_key))
        if refused is not None:
            return refused
        pointer: dict[str, Any] | None = get_json(store, latest_key(layer, partition_key))
        if pointer is None:
            return _text(404, f"no good output for {layer} {partition_key}")
        files: dict[str, str] = pointer.get("files") or {}
        role = request.query_params.get("file", "output")
        if role not in files:
            return _text(404, f"no file {role!r} for {layer} {partition_key} (files: {', '.join(sorted(files))})")
        # A relative Location keeps the redirect right behind a proxy that rewrites the host.
        target = request.scope.get("root_path", "") + "/download/" + quote(files[role], safe="/")
        return RedirectResponse(target, status_code=307, headers=NO_STORE)

    return [
        Route("/", front_page, methods=["GET", "HEAD"], name="front_page"),
        Route("/download/{key:path}", download, methods=["GET", "HEAD"], name="download"),
        Route("/latest/{layer}/{partition_key:path}", latest, methods=["GET", "HEAD"], name="latest"),
    ]
