"""The platform's web app: stable download URLs for the output store, `/health`, and the GitHub webhook receiver
(`POST /hook`, `hooks.py`) when its routes are given, so one process (`oa-dagster serve`) answers all of them.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from oa_dagster.platform.store import OutputStore

from .downloads import download_routes


def create_app(
    store: OutputStore, *, presign_seconds: int = 3600, hooks: Sequence[BaseRoute] | None = None
) -> Starlette:
    """The app bound to one store; the store is passed in (built from `deployment()` by the CLI, by hand in tests).

    `hooks`: the webhook receiver's routes (`hook_routes(...)`), or None for downloads only.
    """

    def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "store": store.describe()})

    routes = [
        Route("/health", health, methods=["GET", "HEAD"], name="health"),
        *download_routes(store, presign_seconds=presign_seconds),
        *(hooks or []),
    ]
    return Starlette(routes=routes)
