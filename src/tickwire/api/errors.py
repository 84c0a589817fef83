"""REST errors: one exception type, rendered as JSON with a stable machine-readable code.

Native endpoints answer::

    {"error": {"code": "invalid_parameter", "message": "from must be before to", "param": "from"}}

with a 4xx status. TraderMade-compatible endpoints render errors in TraderMade's own shapes
(see :mod:`tickwire.api.tradermade`).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..server.responses import JSONResponse

__all__ = ["ApiError", "error_body", "error_response"]


class ApiError(Exception):
    """An error answer: HTTP ``status``, stable ``code``, human ``message``, offending ``param``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.headers = headers or {}


def error_body(exc: ApiError) -> dict[str, Any]:
    return {"error": {"code": exc.code, "message": exc.message, "param": exc.param}}


def error_response(exc: ApiError) -> Response:
    return JSONResponse(error_body(exc), status_code=exc.status, headers=exc.headers)


async def handle_api_error(request: Request, exc: Exception) -> Response:
    """Starlette exception handler for :class:`ApiError`."""
    assert isinstance(exc, ApiError)
    return error_response(exc)
