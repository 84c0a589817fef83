"""The HTTP application: a Starlette app whose lifespan runs a :class:`~tickwire.node.Node`.

It serves the operational routes (``/health``, ``/ready``, ``/metrics``), the native REST API
(``/v1``), the OpenAPI document and ``/docs``, and the dashboard at ``/``. Every API error is
JSON: 4xx answers come from :class:`~tickwire.api.errors.ApiError`, and an unexpected failure
is a 500 with a generic body (the details go to the log, never to the client).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..access import FileKeyStore, access_middleware
from ..access.keys import KEYS_FILE
from ..api import native, openapi, tradermade
from ..api.errors import ApiError, error_response, handle_api_error
from ..api.metrics import Metrics, MetricsMiddleware
from ..config import Settings
from ..dashboard import routes as dashboard_routes
from ..gateway import sse
from ..gateway.connections import ConnectionCounter
from ..gateway.tradermade_stream import TraderMadeLimits, close_all, tradermade_listener
from ..gateway.ws import Gateway
from ..node import Node, ProgressCallback
from .limits import RequestLimits
from .responses import JSONResponse

__all__ = ["create_app"]

log = logging.getLogger("tickwire.server")


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


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(ApiError(exc.status_code, code, str(exc.detail)))


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s", request.url.path, exc_info=exc)
    return error_response(ApiError(500, "internal_error", "internal error; see the server log"))


def create_app(settings: Settings, *, progress: ProgressCallback | None = None) -> Starlette:
    """The application; its lifespan starts the node and stops it cleanly."""
    holder: dict[str, Node] = {}
    metrics = Metrics(lambda: holder.get("node"))

    keys = FileKeyStore(settings.data_dir / KEYS_FILE)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        node = await Node.start(settings, progress=progress)
        app.state.node = holder["node"] = node
        counter = ConnectionCounter()  # one per-key connection count for every stream surface
        gateway = Gateway(
            node,
            keys,
            counter=counter,
            flush_interval=settings.stream_flush_ms / 1000,
            extra_routes=[
                partial(
                    tradermade_listener,
                    node=node,
                    keys=keys,
                    connections=counter,
                    limits=TraderMadeLimits(write_interval=settings.stream_flush_ms / 1000),
                )
            ],
        )
        try:
            app.state.stream_port = await gateway.start(settings.host, settings.stream_port)
        except BaseException:
            await node.stop()
            raise
        app.state.gateway = gateway
        metrics.connections.labels("native").set_function(lambda: len(gateway.connections))
        log.info("stream gateway on ws://%s:%d/v1/stream", settings.host, app.state.stream_port)
        try:
            yield
        finally:
            close_all(node)
            await gateway.stop()
            await node.stop()

    document = openapi.openapi_document()
    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/ready", ready, methods=["GET"]),
            Route("/metrics", metrics.endpoint, methods=["GET"]),
            *tradermade.routes,  # first: /api/v1/live is the hot path
            *native.routes,
            *sse.routes,
            *openapi.routes(document),
            *dashboard_routes(),
        ],
        # metrics outermost, so refused requests (401, 429) are counted too
        middleware=[
            Middleware(RequestLimits),
            Middleware(tradermade.DoubleSlashMiddleware),  # //api/v1/... as in TraderMade's docs
            Middleware(MetricsMiddleware, metrics=metrics),
            access_middleware(settings.data_dir, keys=keys),
        ],
        exception_handlers={
            ApiError: handle_api_error,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
        lifespan=lifespan,
    )
