"""Request size limits, checked before anything else sees the request.

Every endpoint is a GET with its parameters in the URL, so a request line beyond
``max_url_bytes`` is answered ``414`` and a request with a body beyond ``max_body_bytes`` is
answered ``413``, both as JSON errors, without reading the body. (uvicorn's HTTP parser has its
own, larger limits on headers.)
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from ..api.errors import ApiError, error_response

__all__ = ["DEFAULT_MAX_BODY_BYTES", "DEFAULT_MAX_URL_BYTES", "RequestLimits"]

DEFAULT_MAX_URL_BYTES = 8 * 1024
DEFAULT_MAX_BODY_BYTES = 64 * 1024


class RequestLimits:
    """Pure ASGI middleware enforcing the URL and body size limits (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_url_bytes: int = DEFAULT_MAX_URL_BYTES,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self.app = app
        self.max_url_bytes = max_url_bytes
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            url_bytes = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
            if url_bytes > self.max_url_bytes:
                response = error_response(
                    ApiError(
                        414, "uri_too_long", f"the URL may be at most {self.max_url_bytes} bytes"
                    )
                )
                await response(scope, receive, send)
                return
            for name, value in scope.get("headers") or ():
                if name == b"content-length":
                    try:
                        too_big = int(value) > self.max_body_bytes
                    except ValueError:
                        too_big = True
                    if too_big:
                        response = error_response(
                            ApiError(
                                413,
                                "body_too_large",
                                f"request bodies may be at most {self.max_body_bytes} bytes",
                            )
                        )
                        await response(scope, receive, send)
                        return
        await self.app(scope, receive, send)
