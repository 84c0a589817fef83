"""TraderMade wire conventions: error shapes, parameters, dates, symbols, prices and tables.

Everything here is pure (no I/O, no clock): the handlers in :mod:`tickwire.api.tradermade`
and :mod:`tickwire.api.tradermade_live` call it with the query values and the current time.
See ``docs/tradermade-compat.md`` for why each convention was chosen.

Guarantees:

* every JSON document built here has its object keys in ascending (ASCII) order, as in every
  captured TraderMade body, except the row labels of the ``index``/``columns`` table orients,
  which run in row order (``"0"``, ``"1"``, …, ``"10"``);
* every invalid input raises :class:`TraderMadeError`, never another exception, so a handler
  can turn any bad request into a TraderMade error body with a 4xx (or the documented 200);
* every time is UTC; an instant is an ``int`` of nanoseconds since the Unix epoch.
"""

from __future__ import annotations

import calendar
import datetime as dt
import email.utils
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ..catalog import Catalog
from ..model import Kind
from ..rates import MAX_AMOUNT
from .params import parse_number

__all__ = [
    "DAY_NS",
    "HOUR_NS",
    "MAX_CODE_CHARS",
    "MAX_VALUE_CHARS",
    "MINUTE_NS",
    "NOT_ENTITLED",
    "NO_DATA",
    "PAIR_UNAVAILABLE",
    "TABLE_FORMATS",
    "HistorySource",
    "TraderMadeError",
    "coded",
    "csv_table",
    "dash_label",
    "day_label",
    "day_start_ns",
    "http_date",
    "invalid",
    "minute_label",
    "optional",
    "parse_amount",
    "parse_codes",
    "parse_day",
    "parse_flag",
    "parse_instant",
    "path_label",
    "price_rounder",
    "quote_error",
    "required",
    "resolve_history",
    "round_sig",
    "table",
    "tick_label",
    "trading_day",
    "weekend_to_friday",
]

SECOND_NS: Final = 1_000_000_000
MINUTE_NS: Final = 60 * SECOND_NS
HOUR_NS: Final = 60 * MINUTE_NS
DAY_NS: Final = 24 * HOUR_NS
DAILY_CUT_NS: Final = 2 * HOUR_NS  # the bar for date D opens at D-1 22:00 GMT

VALIDATION_FAILED: Final = "Input payload validation failed"
MISSING: Final = "Missing required parameter in the query string"
NO_DATA: Final = "Data for the date requested not available"
PAIR_UNAVAILABLE: Final = "Currency pair currently not available"
NOT_ENTITLED: Final = "Your plan doesn't allow access to this dataset"

MAX_VALUE_CHARS: Final = 64
"""Longest accepted value of a scalar query parameter (dates, formats, amounts)."""
MAX_CODE_CHARS: Final = 16
"""Longest accepted instrument code in a currency list."""
EARLIEST: Final = dt.datetime(1970, 1, 1)
"""Dates before this are rejected (they cannot be held in int64 nanoseconds anyway)."""

_CODE = re.compile(r"[A-Z0-9._]{1,16}")


class TraderMadeError(Exception):
    """A complete error answer: HTTP ``status`` and a JSON ``body`` in a TraderMade shape."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("message", ""))
        self.status = status
        self.body = body


def invalid(param: str, message: str) -> TraderMadeError:
    """The Flask-RESTX 400: ``{"errors": {param: message}, "message": "Input payload …"}``."""
    return TraderMadeError(400, {"errors": {param: message}, "message": VALIDATION_FAILED})


def coded(code: int, message: str) -> TraderMadeError:
    """``{"error": code, "message": …}`` with HTTP status ``code``, except 204 (no data), which
    comes with HTTP 200 as TraderMade documents (an HTTP 204 could not carry the body)."""
    status = 200 if code == 204 else code
    return TraderMadeError(status, {"error": code, "message": message})


def quote_error(code: int, instrument: str, message: str) -> dict[str, Any]:
    """The error that replaces one quote inside a list; the rest of the list is unaffected."""
    return {"error": code, "instrument": instrument, "message": message}


# -- parameters -------------------------------------------------------------------------------


def required(params: Mapping[str, str], name: str, *, max_chars: int = MAX_VALUE_CHARS) -> str:
    """The stripped value of ``name``; 400 if it is absent, empty or longer than ``max_chars``."""
    value = params.get(name)
    if value is None:
        raise invalid(name, MISSING)
    return _bounded(name, value, max_chars, empty_ok=False)


def optional(
    params: Mapping[str, str], name: str, *, max_chars: int = MAX_VALUE_CHARS
) -> str | None:
    """The stripped value of ``name`` or None when absent or empty; 400 if too long."""
    value = params.get(name)
    if value is None:
        return None
    return _bounded(name, value, max_chars, empty_ok=True) or None


def _bounded(name: str, value: str, max_chars: int, *, empty_ok: bool) -> str:
    if len(value) > max_chars:
        raise invalid(name, f"value is longer than {max_chars} characters")
    value = value.strip()
    if not value and not empty_ok:
        raise invalid(name, "value must not be empty")
    return value


def parse_flag(value: str | None) -> bool:
    """``true``/``1``/``yes``/``on`` (any case) → True; anything else, or absent → False."""
    return value is not None and value.strip().lower() in ("true", "1", "yes", "on")


def parse_codes(name: str, text: str, *, max_codes: int) -> tuple[str, ...]:
    """A comma list of instrument codes, upper-cased, in request order (duplicates kept).

    400 when the list is empty, longer than ``max_codes``, or a code is not 1–16 characters of
    ``A-Z 0-9 . _``.
    """
    codes = tuple(c.strip().upper() for c in text.split(",") if c.strip())
    if not codes:
        raise invalid(name, "no currency given")
    if len(codes) > max_codes:
        raise invalid(name, f"at most {max_codes} currencies per request, got {len(codes)}")
    for code in codes:
        if not _CODE.fullmatch(code):
            shown = code if len(code) <= MAX_CODE_CHARS else code[:MAX_CODE_CHARS] + "…"
            raise invalid(name, f"invalid currency code {shown!r}")
    return codes


def parse_amount(name: str, text: str) -> float:
    """A finite, non-negative float; 400 otherwise (NaN, infinity, negative, not a number,
    ``1_000``, non-ASCII digits). ``-0`` is 0.0."""
    try:
        value = parse_number(text)
    except ValueError as exc:
        raise invalid(name, str(exc)) from None
    if not 0 <= value <= MAX_AMOUNT:  # also refuses NaN and infinities
        raise invalid(name, f"amount must be a number from 0 to {MAX_AMOUNT:.0e}, got {text!r}")
    return value


# -- dates ------------------------------------------------------------------------------------

_DAY_FORMAT = "%Y-%m-%d"
_MINUTE_FORMATS = (
    "%Y-%m-%d-%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d-%H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%dT%H:%M:%S",
)


def _strptime(text: str, fmt: str) -> dt.datetime | ValueError:
    try:
        return dt.datetime.strptime(text, fmt)
    except ValueError as exc:
        return exc


def _check_range(name: str, help_text: str, value: dt.datetime) -> dt.datetime:
    if value < EARLIEST:
        raise invalid(name, f"{help_text} dates before 1970-01-01 are not available")
    return value


def parse_day(name: str, text: str) -> dt.date:
    """A ``YYYY-MM-DD`` date (an intraday ``YYYY-MM-DD-HH:MM`` is accepted, its time dropped).

    400 in Flask-RESTX wording, e.g. ``YYYY-MM-DD time data '2019-10-' does not match format
    '%Y-%m-%d'``.
    """
    parsed = _strptime(text, _DAY_FORMAT)
    if isinstance(parsed, ValueError):
        for fmt in _MINUTE_FORMATS:
            other = _strptime(text, fmt)
            if not isinstance(other, ValueError):
                parsed = other
                break
    if isinstance(parsed, ValueError):
        raise invalid(name, f"YYYY-MM-DD {parsed}")
    return _check_range(name, "YYYY-MM-DD", parsed).date()


def parse_instant(name: str, text: str) -> tuple[int, bool]:
    """``YYYY-MM-DD-HH:MM`` (or with a space, ``T``, or seconds) → (ns, False).

    A bare ``YYYY-MM-DD`` gives its midnight and True (date only). Seconds are kept; callers
    floor to their bar width. 400 in Flask-RESTX wording when nothing matches.
    """
    first: ValueError | None = None
    for fmt in _MINUTE_FORMATS:
        parsed = _strptime(text, fmt)
        if isinstance(parsed, ValueError):
            first = first or parsed
            continue
        return _to_ns(_check_range(name, "YYYY-MM-DD-HH:MM", parsed)), False
    day = _strptime(text, _DAY_FORMAT)
    if not isinstance(day, ValueError):
        return _to_ns(_check_range(name, "YYYY-MM-DD-HH:MM", day)), True
    raise invalid(name, f"YYYY-MM-DD-HH:MM {first}")


def _to_ns(value: dt.datetime) -> int:
    return calendar.timegm(value.timetuple()) * SECOND_NS


def day_start_ns(day: dt.date) -> int:
    """Start of the daily bar labelled ``day``: ``day - 1`` at 22:00 GMT."""
    return calendar.timegm(day.timetuple()) * SECOND_NS - DAILY_CUT_NS


def trading_day(ns: int) -> dt.date:
    """The date of the daily bar that contains ``ns`` (after 22:00 GMT it is tomorrow's)."""
    return _utc(ns + DAILY_CUT_NS).date()


def weekend_to_friday(day: dt.date) -> dt.date:
    """Saturday and Sunday become the Friday before; other days are unchanged."""
    weekday = day.weekday()
    return day - dt.timedelta(days=weekday - 4) if weekday >= 5 else day


def _utc(ns: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=ns // 1000)


def day_label(bar_start: int) -> str:
    """``YYYY-MM-DD`` of the daily bar starting at ``bar_start`` (22:00 cut)."""
    return trading_day(bar_start).isoformat()


def minute_label(ns: int) -> str:
    """``YYYY-MM-DD HH:MM:SS`` (timeseries intraday rows and the echoed ``end_date``)."""
    return _utc(ns).strftime("%Y-%m-%d %H:%M:%S")


def dash_label(ns: int) -> str:
    """``YYYY-MM-DD-HH:MM`` (``date_time`` of minute/hour_historical)."""
    return _utc(ns).strftime("%Y-%m-%d-%H:%M")


def tick_label(ns: int) -> str:
    """``YYYY-MM-DD HH:MM:SS.ffffff+00:00``, the ``time`` column of tick CSV."""
    return _utc(ns).strftime("%Y-%m-%d %H:%M:%S.%f+00:00")


def path_label(ns: int) -> str:
    """``YYYY-MM-DD HH:MM``, as tick paths write their dates."""
    return _utc(ns).strftime("%Y-%m-%d %H:%M")


_last_http_date: tuple[int, str] = (-1, "")


def http_date(second: int) -> str:
    """RFC 1123 ``Tue, 23 Mar 2021 09:12:55 GMT`` for an epoch second (the last one cached)."""
    global _last_http_date
    cached_second, text = _last_http_date
    if cached_second != second:
        text = email.utils.formatdate(second, usegmt=True)
        _last_http_date = (second, text)
    return text


# -- symbols and prices -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HistorySource:
    """Where the history of a requested code comes from.

    ``source`` is the catalogue symbol; ``inverted`` when the code is its reverse (bars are
    then 1/price, with high and low swapped). ``decimals`` rounds direct mid prices exactly.
    """

    code: str
    source: str
    inverted: bool
    base: str
    quote: str
    decimals: int
    kind: Kind


def resolve_history(catalog: Catalog, code: str) -> HistorySource | None:
    """The catalogue symbol behind ``code`` (itself or its reverse), or None if neither exists."""
    if code in catalog:
        s = catalog[code]
        return HistorySource(code, code, False, s.base, s.quote, s.decimals + 1, s.kind)
    if len(code) == 6:
        reverse = code[3:] + code[:3]
        if reverse in catalog:
            s = catalog[reverse]
            return HistorySource(code, reverse, True, s.quote, s.base, s.decimals + 1, s.kind)
    return None


def round_sig(value: float, digits: int = 6) -> float:
    """``value`` rounded to ``digits`` significant digits (for inverted and derived prices)."""
    if value == 0 or not math.isfinite(value):
        return value
    places = digits - 1 - math.floor(math.log10(abs(value)))
    return round(value, max(places, 0))


def price_rounder(src: HistorySource) -> Callable[[float], float]:
    """How prices of ``src`` are shown: direct mids to their exact decimals, inverses to 6 s.f."""
    if src.inverted:
        return round_sig
    places = src.decimals
    return lambda value: round(value, places)


# -- tables -----------------------------------------------------------------------------------

TABLE_FORMATS: Final = ("records", "index", "columns", "split")


def _sorted_order(columns: Sequence[str]) -> list[int]:
    return sorted(range(len(columns)), key=lambda i: columns[i])


def table(rows: Sequence[Sequence[Any]], columns: Sequence[str], orient: str) -> Any:
    """Rows as pandas ``DataFrame.to_json(orient=…)`` lays them out, keys sorted.

    * ``records``: ``[{col: value}]``;
    * ``split``: ``{"columns": [...], "data": [[...]], "index": [0, 1, …]}`` (columns in the
      given order, as the Python SDK needs);
    * ``index``: ``{"0": {col: value}}``;
    * ``columns``: ``{col: {"0": value}}``.
    """
    order = _sorted_order(columns)
    names = [columns[i] for i in order]
    if orient == "split":
        return {
            "columns": list(columns),
            "data": [list(row) for row in rows],
            "index": list(range(len(rows))),
        }
    if orient == "index":
        return {
            str(n): {name: row[i] for name, i in zip(names, order, strict=True)}
            for n, row in enumerate(rows)
        }
    if orient == "columns":
        return {
            name: {str(n): row[i] for n, row in enumerate(rows)}
            for name, i in zip(names, order, strict=True)
        }
    return [{name: row[i] for name, i in zip(names, order, strict=True)} for row in rows]


def csv_table(rows: Iterable[Sequence[Any]], columns: Sequence[str]) -> str:
    """Rows as CSV text: a header line, then one line per row; None is an empty field."""
    lines = [",".join(columns)]
    for row in rows:
        lines.append(",".join("" if v is None else str(v) for v in row))
    lines.append("")
    return "\n".join(lines)
