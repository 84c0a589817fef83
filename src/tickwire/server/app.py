"""The HTTP application: a Starlette app whose lifespan runs a :class:`~tickwire.node.Node`.

Routes here are the operational ones; the REST API and the stream gateway mount on the same app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..config import Settings
from ..node import Node, ProgressCallback
from .responses import JSONResponse

__all__ = ["JSONResponse", "create_app"]


def node_of(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


async def health(request: Request) -> Response:
    """Liveness and position: 200 while the process serves, with ``status`` ok/starting/degraded."""
    return JSONResponse(node_of(request).health())


async def ready(request: Request) -> Response:
    """Readiness: 200 once history is backfilled and the journal accepts writes, else 503."""
    node = node_of(request)
    body = node.health()
    return JSONResponse(
        {"ready": node.ready, "status": body["status"], "problems": body["problems"]},
        status_code=200 if node.ready else 503,
    )


def create_app(settings: Settings, *, progress: ProgressCallback | None = None) -> Starlette:
    """The application; its lifespan starts the node and stops it cleanly."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        node = await Node.start(settings, progress=progress)
        app.state.node = node
        try:
            yield
        finally:
            await node.stop()

    return Starlette(
        routes=[Route("/health", health), Route("/ready", ready)],
        lifespan=lifespan,
    )
