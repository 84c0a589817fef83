"""Query-parameter parsing for the native REST API: every bad value is a 400 naming the param.

Times are UTC. A time parameter accepts ISO 8601 (``2026-11-27``, ``2026-11-27T10:15``,
``2026-11-27T10:15:30.250Z``, or with an explicit offset, converted to UTC) or an integer number
of milliseconds since the Unix epoch.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import UTC, datetime

from ..catalog import Catalog
from ..errors import UnknownSymbolError
from ..model import Symbol
from .errors import ApiError

__all__ = [
    "MAX_PARAM_LENGTH",
    "decode_cursor",
    "encode_cursor",
    "iso",
    "parse_choice",
    "parse_float",
    "parse_int",
    "parse_number",
    "parse_required",
    "parse_symbol",
    "parse_symbols",
    "parse_time",
]

MAX_PARAM_LENGTH = 1024
_MIN_NS = 0
_MAX_NS = 4_102_444_800 * 10**9  # 2100-01-01


def _raw(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if len(value) > MAX_PARAM_LENGTH:
        raise ApiError(400, "invalid_parameter", f"{name} is too long", param=name)
    return value


def invalid(name: str, message: str) -> ApiError:
    return ApiError(400, "invalid_parameter", message, param=name)


def parse_time(params: Mapping[str, str], name: str, default: int | None = None) -> int:
    """A UTC time in ns; see the module docstring for the accepted forms."""
    raw = _raw(params, name)
    if raw is None:
        if default is None:
            raise ApiError(400, "missing_parameter", f"{name} is required", param=name)
        return default
    if raw.isascii() and raw.isdigit() and len(raw) <= 15:
        ns = int(raw) * 1_000_000
    else:
        try:
            parsed = datetime.fromisoformat(raw.replace("z", "Z"))
        except ValueError:
            raise invalid(
                name, f"{name} must be ISO 8601 (2026-11-27T10:15:00Z) or epoch milliseconds"
            ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        ns = int(parsed.timestamp()) * 10**9 + parsed.microsecond * 1000
    if not _MIN_NS <= ns < _MAX_NS:
        raise invalid(name, f"{name} must be between 1970 and 2100")
    return ns


def parse_int(params: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    raw = _raw(params, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid(name, f"{name} must be an integer") from None
    if not low <= value <= high:
        raise invalid(name, f"{name} must be between {low} and {high}")
    return value


def parse_required(params: Mapping[str, str], name: str) -> str:
    """A required string, stripped: missing_parameter when absent or blank, bounded as all."""
    raw = _raw(params, name)
    value = "" if raw is None else raw.strip()
    if not value:
        raise ApiError(400, "missing_parameter", f"{name} is required", param=name)
    return value


def parse_number(text: str) -> float:
    """``float(text)`` for plain ASCII decimal text, with -0 as 0.0.

    Raises ValueError for what ``float`` accepts but an API should not: digit-group
    underscores (``1_000``) and non-ASCII digits (fullwidth ``１``, Arabic-Indic ``٣``), as
    :func:`parse_time` refuses them too. NaN and infinities pass: the caller bounds the value.
    """
    if not text.isascii() or "_" in text:
        raise ValueError(f"could not convert string to float: {text!r}")
    return float(text) + 0.0  # -0.0 + 0.0 is 0.0


def parse_float(params: Mapping[str, str], name: str) -> float:
    raw = _raw(params, name)
    if raw is None:
        raise ApiError(400, "missing_parameter", f"{name} is required", param=name)
    try:
        value = parse_number(raw)
    except ValueError:
        raise invalid(name, f"{name} must be a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise invalid(name, f"{name} must be finite")
    return value


def parse_choice(
    params: Mapping[str, str], name: str, choices: tuple[str, ...], default: str
) -> str:
    raw = _raw(params, name)
    if raw is None:
        return default
    value = raw.lower()
    if value not in choices:
        raise invalid(name, f"{name} must be one of {', '.join(choices)}")
    return value


def parse_symbol(catalog: Catalog, raw: str, *, param: str = "symbol") -> Symbol:
    if len(raw) > 32:
        raise invalid(param, f"{param} is too long")
    try:
        return catalog.resolve(raw)
    except UnknownSymbolError:
        raise ApiError(
            404 if param == "symbol" else 400,
            "unknown_symbol",
            f"unknown symbol {raw[:32]!r}; see /v1/symbols",
            param=param,
        ) from None


def parse_symbols(
    catalog: Catalog, params: Mapping[str, str], name: str = "symbols", *, limit: int = 100
) -> list[Symbol]:
    """A comma-separated list of symbols; all of the catalogue when absent."""
    raw = _raw(params, name)
    if raw is None:
        return list(catalog.values())
    parts = [p for p in (s.strip() for s in raw.split(",")) if p]
    if len(parts) > limit:
        raise invalid(name, f"at most {limit} symbols per request")
    out: list[Symbol] = []
    seen: set[str] = set()
    for part in parts:
        symbol = parse_symbol(catalog, part, param=name)
        if symbol.code not in seen:
            seen.add(symbol.code)
            out.append(symbol)
    if not out:
        raise invalid(name, f"{name} must list at least one symbol")
    return out


def iso(ns: int) -> str:
    """UTC ISO 8601 with millisecond precision and a Z: ``2026-11-27T10:15:30.250Z``."""
    seconds, rest = divmod(ns, 10**9)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{rest // 1_000_000:03d}Z"


def encode_cursor(*parts: int) -> str:
    """An opaque cursor for integer parts."""
    text = ":".join(str(p) for p in parts).encode()
    return base64.urlsafe_b64encode(text).decode().rstrip("=")


def decode_cursor(params: Mapping[str, str], count: int, name: str = "cursor") -> list[int] | None:
    raw = _raw(params, name)
    if raw is None:
        return None
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        parts = [int(p) for p in text.split(":")]
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid(name, f"{name} is not a cursor returned by this API") from None
    if len(parts) != count or any(p < 0 for p in parts):
        raise invalid(name, f"{name} is not a cursor returned by this API")
    return parts
