"""The OpenAPI 3.1 document of the REST API, and the interactive docs at ``/docs``.

The document is written here, next to the handlers it describes, and a test checks that every
route of the application appears in it. Swagger UI is served from the ``swagger-ui-bundle``
package, so ``/docs`` works offline.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from .. import __version__
from ..model import BarUnit, PriceSide
from ..server.responses import JSONResponse
from .native import MAX_BARS, MAX_SYMBOLS, MAX_TICKS

__all__ = ["openapi_document", "routes"]


def _param(
    name: str,
    description: str,
    schema: dict[str, Any],
    *,
    where: str = "query",
    required: bool = False,
) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": required or where == "path",
        "description": description,
        "schema": schema,
    }


_TIME = {"type": "string", "maxLength": 64}
_TIME_TEXT = "UTC time: ISO 8601 (2026-11-27T10:15:00Z) or epoch milliseconds."
_SYMBOL_PATH = _param(
    "symbol", "Symbol code, e.g. EURUSD.", {"type": "string", "maxLength": 32}, where="path"
)
_FORMAT = _param("format", "Output format.", {"type": "string", "enum": ["json", "csv"]})
_ERROR = {"$ref": "#/components/schemas/Error"}


def _answers(ok: dict[str, Any], *errors: int, csv: bool = False) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": ok}}
    if csv:
        content["text/csv"] = {"schema": {"type": "string"}}
    out: dict[str, Any] = {"200": {"description": "OK", "content": content}}
    for status in (*errors, 401, 429):
        out[str(status)] = {
            "description": {
                400: "Invalid parameter",
                401: "Missing or invalid API key",
                403: "Not entitled",
                404: "Not found",
                429: "Rate limit or quota exceeded",
            }[status],
            "content": {"application/json": {"schema": _ERROR}},
        }
    return out


def _get(summary: str, params: list[dict[str, Any]], responses: dict[str, Any], tag: str) -> Any:
    return {
        "get": {"summary": summary, "tags": [tag], "parameters": params, "responses": responses}
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "param"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "param": {"type": ["string", "null"]},
                },
            }
        },
    },
    "Position": {
        "type": "object",
        "properties": {"epoch": {"type": "integer"}, "offset": {"type": "integer"}},
    },
    "Quote": {
        "type": "object",
        "required": ["symbol", "bid", "ask", "mid", "ts", "time", "epoch", "offset", "seq"],
        "properties": {
            "symbol": {"type": "string"},
            "bid": {"type": "number"},
            "ask": {"type": "number"},
            "mid": {"type": "number"},
            "ts": {"type": "integer", "description": "UTC nanoseconds since the epoch"},
            "time": {"type": "string", "format": "date-time"},
            "epoch": {"type": "integer"},
            "offset": {"type": "integer"},
            "seq": {"type": "integer"},
        },
    },
    "Bar": {
        "type": "object",
        "properties": {
            "time": {"type": "string"},
            "ts": {"type": "integer"},
            "open": {"type": "number"},
            "high": {"type": "number"},
            "low": {"type": "number"},
            "close": {"type": "number"},
            "ticks": {"type": "integer"},
            "complete": {"type": "boolean"},
        },
    },
    "Tick": {
        "type": "object",
        "properties": {
            "time": {"type": "string"},
            "ts": {"type": "integer"},
            "bid": {"type": "number"},
            "ask": {"type": "number"},
            "epoch": {"type": "integer"},
            "offset": {"type": "integer"},
            "seq": {"type": "integer"},
        },
    },
    "Symbol": {
        "type": "object",
        "properties": {
            "code": {"type": "string"},
            "base": {"type": "string"},
            "quote": {"type": "string"},
            "kind": {"type": "string", "enum": ["fx", "metal", "cfd", "crypto"]},
            "pip": {"type": "number"},
            "decimals": {"type": "integer"},
            "name": {"type": "string"},
        },
    },
}


def _native_paths() -> dict[str, Any]:
    tag = "native"
    page = {"type": ["string", "null"], "description": "Cursor for the next page, or null."}
    return {
        "/v1/quotes": _get(
            "Live quotes with stream positions",
            [
                _param(
                    "symbols",
                    f"Comma-separated symbols (at most {MAX_SYMBOLS}); all when absent.",
                    {"type": "string", "maxLength": 1024},
                )
            ],
            _answers(
                {
                    "type": "object",
                    "properties": {
                        "quotes": {"type": "array", "items": _ref("Quote")},
                        "missing": {"type": "array", "items": {"type": "string"}},
                    },
                },
                400,
                403,
            ),
            tag,
        ),
        "/v1/bars/{symbol}": _get(
            "Bars: multiplier × unit, range, side, paged",
            [
                _SYMBOL_PATH,
                _param("unit", "Bar unit.", {"type": "string", "enum": [u.value for u in BarUnit]}),
                _param(
                    "multiplier",
                    "Units per bar.",
                    {"type": "integer", "minimum": 1, "maximum": 10000},
                ),
                _param("from", f"Start (inclusive). {_TIME_TEXT}", _TIME),
                _param("to", f"End (exclusive), default now. {_TIME_TEXT}", _TIME),
                _param(
                    "side", "Price side.", {"type": "string", "enum": [s.value for s in PriceSide]}
                ),
                _param(
                    "daily_cut",
                    "UTC hour where days start.",
                    {"type": "string", "enum": ["0", "22"]},
                ),
                _param(
                    "limit",
                    "Bars per page.",
                    {"type": "integer", "minimum": 1, "maximum": MAX_BARS},
                ),
                _param("cursor", "next_cursor of the previous page.", {"type": "string"}),
                _FORMAT,
            ],
            _answers(
                {
                    "type": "object",
                    "properties": {
                        "symbol": {"type": "string"},
                        "bars": {"type": "array", "items": _ref("Bar")},
                        "next_cursor": page,
                        "as_of": _ref("Position"),
                    },
                },
                400,
                403,
                404,
                csv=True,
            ),
            tag,
        ),
        "/v1/ticks/{symbol}": _get(
            "Raw ticks in a range, paged",
            [
                _SYMBOL_PATH,
                _param("from", f"Start (inclusive), default to − 1 h. {_TIME_TEXT}", _TIME),
                _param("to", f"End (exclusive), default now. {_TIME_TEXT}", _TIME),
                _param(
                    "limit",
                    "Ticks per page.",
                    {"type": "integer", "minimum": 1, "maximum": MAX_TICKS},
                ),
                _param("cursor", "next_cursor of the previous page.", {"type": "string"}),
                _FORMAT,
            ],
            _answers(
                {
                    "type": "object",
                    "properties": {
                        "symbol": {"type": "string"},
                        "ticks": {"type": "array", "items": _ref("Tick")},
                        "next_cursor": page,
                        "as_of": _ref("Position"),
                    },
                },
                400,
                403,
                404,
                csv=True,
            ),
            tag,
        ),
        "/v1/convert": _get(
            "Convert an amount: direct, inverse or cross rate",
            [
                _param(
                    "from",
                    "Currency code, e.g. EUR.",
                    {"type": "string", "maxLength": 8},
                    required=True,
                ),
                _param(
                    "to",
                    "Currency code, e.g. JPY.",
                    {"type": "string", "maxLength": 8},
                    required=True,
                ),
                _param(
                    "amount",
                    "Amount to convert (≥ 0).",
                    {"type": "number", "minimum": 0},
                    required=True,
                ),
            ],
            _answers({"type": "object"}, 400, 403, 404),
            tag,
        ),
        "/v1/symbols": _get(
            "The symbol catalogue",
            [
                _param(
                    "kind",
                    "Only this kind.",
                    {"type": "string", "enum": ["fx", "metal", "cfd", "crypto"]},
                )
            ],
            _answers(
                {
                    "type": "object",
                    "properties": {"symbols": {"type": "array", "items": _ref("Symbol")}},
                },
                400,
            ),
            tag,
        ),
        "/v1/symbols/{symbol}": _get(
            "One symbol, its market status and last quote",
            [_SYMBOL_PATH],
            _answers(_ref("Symbol"), 404),
            tag,
        ),
        "/v1/sse": _get(
            "Server-Sent Events stream of ticks or conflated quotes (resumable)",
            [
                _param(
                    "symbols",
                    f"Comma-separated symbols (at most {MAX_SYMBOLS}); all when absent.",
                    {"type": "string", "maxLength": 1024},
                ),
                _param(
                    "channel",
                    "ticks (lossless) or quotes (conflated).",
                    {"type": "string", "enum": ["ticks", "quotes"]},
                ),
                _param(
                    "from",
                    "Resume after EPOCH:OFFSET (or send Last-Event-ID).",
                    {"type": "string", "maxLength": 64},
                ),
            ],
            {
                "200": {
                    "description": "An event stream",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                **{k: v for k, v in _answers({}, 400, 403).items() if k != "200"},
            },
            tag,
        ),
        "/v1/market": _get(
            "Market status: open now, next open, next close", [], _answers({"type": "object"}), tag
        ),
    }


def _tradermade_paths() -> dict[str, Any]:
    """The TraderMade-compatible operations (shapes in docs/tradermade-compat.md)."""
    tag = "tradermade"
    text = {"type": "string", "maxLength": 256}
    any_json = {
        "200": {
            "description": "OK (TraderMade shapes; errors may be inside)",
            "content": {"application/json": {"schema": {}}},
        }
    }
    for status in (400, 401, 403, 429):
        any_json[str(status)] = {
            "description": "TraderMade-style error",
            "content": {"application/json": {"schema": {}}},
        }
    currency = _param("currency", "Pair code(s), comma-separated where allowed.", text)
    fmt = _param(
        "format",
        "Output format.",
        {"type": "string", "enum": ["json", "records", "csv", "index", "columns", "split"]},
    )

    def op(summary: str, *params: dict[str, Any]) -> Any:
        return _get(summary, list(params), any_json, tag)

    tick_path = [
        _param("symbol", "Pair code.", {"type": "string", "maxLength": 16}, where="path"),
        _param(
            "start", "YYYY-MM-DD HH:MM (UTC).", {"type": "string", "maxLength": 32}, where="path"
        ),
        _param("end", "YYYY-MM-DD HH:MM (UTC).", {"type": "string", "maxLength": 32}, where="path"),
        fmt,
    ]
    paths = {
        "/api/v1/live": op("Live quotes", {**currency, "required": True}),
        "/api/v1/historical": op(
            "Daily OHLC for one date (22:00 cut)",
            _param("date", "YYYY-MM-DD", text, required=True),
            currency,
        ),
        "/api/v1/minute_historical": op(
            "One minute bar", currency, _param("date_time", "YYYY-MM-DD-HH:MM", text, required=True)
        ),
        "/api/v1/hour_historical": op(
            "One hour bar", currency, _param("date_time", "YYYY-MM-DD-HH:MM", text, required=True)
        ),
        "/api/v1/timeseries": op(
            "Bars over a range",
            currency,
            _param("start_date", "YYYY-MM-DD or YYYY-MM-DD-HH:MM", text, required=True),
            _param("end_date", "YYYY-MM-DD or YYYY-MM-DD-HH:MM", text, required=True),
            _param("interval", "daily, hourly or minute", text),
            _param("period", "Bar multiple (tolerated when it does not fit).", text),
            fmt,
            _param("weekend", "Include weekend bars (crypto).", text),
        ),
        "/api/v1/pandasDF": op(
            "Daily bars shaped for pandas",
            currency,
            _param("start_date", "YYYY-MM-DD", text, required=True),
            _param("end_date", "YYYY-MM-DD", text, required=True),
            fmt,
            _param("fields", "ohlc or close", text),
        ),
        "/api/v1/convert": op(
            "Convert an amount at the live rate",
            _param("from", "Currency code.", text, required=True),
            _param("to", "Currency code.", text, required=True),
            _param("amount", "Amount.", text, required=True),
        ),
        "/api/v1/tick_historical/{symbol}/{start}/{end}": op("Raw ticks", *tick_path),
        "/api/v1/tick_historical_sample/{symbol}/{start}/{end}": op(
            "Raw ticks (sample window)", *tick_path
        ),
    }
    for name in (
        "live_currencies_list",
        "live_crypto_list",
        "historical_currencies_list",
        "cfd_list",
        "streaming_currencies_list",
        "market_open_status",
        "market_opening_times",
    ):
        paths[f"/api/v1/{name}"] = op(name.replace("_", " ").capitalize())
    return paths


def _ops_paths() -> dict[str, Any]:
    plain = {"200": {"description": "OK", "content": {"application/json": {"schema": {}}}}}
    return {
        "/health": {
            "get": {
                "summary": "Liveness and stream position",
                "tags": ["operations"],
                "security": [],
                "responses": plain,
            }
        },
        "/ready": {
            "get": {
                "summary": "Readiness (503 until history is ready)",
                "tags": ["operations"],
                "security": [],
                "responses": {**plain, "503": {"description": "Not ready"}},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "tags": ["operations"],
                "security": [],
                "responses": {
                    "200": {
                        "description": "OK",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    }


def openapi_document(extra_paths: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole document; ``extra_paths`` adds other surfaces (the TraderMade paths)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tickwire",
            "version": __version__,
            "description": (
                "Self-hosted forex market data. Native endpoints under /v1; "
                "TraderMade-compatible endpoints under /api/v1. All times are UTC."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"apiKeyQuery": []}, {"apiKeyHeader": []}, {"bearer": []}],
        "paths": {
            **_native_paths(),
            **_tradermade_paths(),
            **(extra_paths or {}),
            **_ops_paths(),
        },
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {
                "apiKeyQuery": {"type": "apiKey", "in": "query", "name": "api_key"},
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }


_DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tickwire API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui",
  persistAuthorization: true});
</script></body></html>
"""


def routes(document: dict[str, Any]) -> list[BaseRoute]:
    """``/openapi.json``, ``/docs`` and the Swagger UI assets."""
    import swagger_ui_bundle

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    async def docs(request: Request) -> Response:
        return HTMLResponse(_DOCS_HTML)

    return [
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
        Mount(
            "/docs/static",
            app=StaticFiles(directory=swagger_ui_bundle.swagger_ui_path),
            name="swagger-ui",
        ),
    ]
