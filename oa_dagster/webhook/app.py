"""The platform's web app: stable download URLs for the output store, and `/health`.

The GitHub webhook receiver will join this app later, so one process (`oa-dagster serve`) answers both.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from oa_dagster.platform.store import OutputStore

from .downloads import download_routes


def create_app(store: OutputStore, *, presign_seconds: int = 3600) -> Starlette:
    """The app bound to one store; the store is passed in (built from `deployment()` by the CLI, by hand in tests)."""

    def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "store": store.describe()})

    routes = [Route("/health", health, methods=["GET", "HEAD"], name="health"),
              *download_routes(store, presign_seconds=presign_seconds)]
    return Starlette(routes=routes)
