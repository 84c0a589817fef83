"""Response classes shared by every HTTP surface."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.responses import Response

__all__ = ["JSONResponse"]

_encoder = msgspec.json.Encoder()


class JSONResponse(Response):
    """A JSON response encoded by msgspec (fast, and Structs encode directly)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _encoder.encode(content)
