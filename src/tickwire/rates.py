"""Rates for any currency pair from the live quotes: direct, inverse, or a cross.

A pair that is in the catalogue is quoted directly. Its inverse (``USDEUR`` from ``EURUSD``) is
``1/ask`` for the bid and ``1/bid`` for the ask, so the spread stays on the right side. Any
other pair is a cross through a hub currency (USD first, then EUR, GBP, JPY): the two legs are
combined bid with bid and ask with ask, which gives the tradable cross spread. The answer lists
the legs, so callers can show the path and the rates used.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from .catalog import Catalog
from .errors import InvalidQueryError, NoRateError, UnknownSymbolError
from .model import Quote

__all__ = ["MAX_AMOUNT", "Conversion", "DerivedQuote", "Leg", "convert", "derive_quote"]

HUBS = ("USD", "EUR", "GBP", "JPY")
MAX_AMOUNT = 1e15
"""The largest amount converted (a quadrillion): the total stays a finite JSON number."""
QuoteLookup = Callable[[str], Quote | None]


class Leg(msgspec.Struct, frozen=True):
    """One quote used in a derived rate; ``inverted`` when it was used as 1/price."""

    symbol: str
    inverted: bool
    bid: float
    ask: float
    ts: int
    epoch: int
    offset: int
    seq: int


class DerivedQuote(msgspec.Struct, frozen=True):
    """A quote for ``base``/``quote``; ``method`` is ``direct``, ``inverse`` or ``cross``."""

    base: str
    quote: str
    bid: float
    ask: float
    ts: int
    method: str
    legs: tuple[Leg, ...]

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2


class Conversion(msgspec.Struct, frozen=True):
    """``amount`` of ``source`` is ``total`` of ``target`` at ``rate`` (the mid)."""

    source: str
    target: str
    amount: float
    rate: float
    total: float
    quote: DerivedQuote


def _leg(catalog: Catalog, lookup: QuoteLookup, base: str, quote: str) -> Leg | None:
    direct, inverse = base + quote, quote + base
    if direct in catalog:
        q = lookup(direct)
        if q is not None:
            return Leg(direct, False, q.bid, q.ask, q.ts, q.epoch, q.offset, q.seq)
    if inverse in catalog:
        q = lookup(inverse)
        if q is not None and q.bid > 0 and q.ask > 0:
            return Leg(inverse, True, 1 / q.ask, 1 / q.bid, q.ts, q.epoch, q.offset, q.seq)
    return None


def derive_quote(catalog: Catalog, lookup: QuoteLookup, base: str, quote: str) -> DerivedQuote:
    """A quote for ``base``/``quote``.

    Currencies are three-letter codes known to the catalogue: raises
    :class:`UnknownSymbolError` for a code that is not, and :class:`NoRateError` when no
    direct, inverse or cross quote exists yet.
    """
    base, quote = base.strip().upper(), quote.strip().upper()
    currencies = catalog.currencies()
    for code in (base, quote):
        if code not in currencies:
            raise UnknownSymbolError(code)
    if base == quote:
        raise InvalidQueryError("the two currencies are the same", param="to")
    leg = _leg(catalog, lookup, base, quote)
    if leg is not None:
        method = "inverse" if leg.inverted else "direct"
        return DerivedQuote(base, quote, leg.bid, leg.ask, leg.ts, method, (leg,))
    for hub in HUBS:
        if hub in (base, quote):
            continue
        first, second = _leg(catalog, lookup, base, hub), _leg(catalog, lookup, hub, quote)
        if first is not None and second is not None:
            return DerivedQuote(
                base,
                quote,
                first.bid * second.bid,
                first.ask * second.ask,
                max(first.ts, second.ts),
                "cross",
                (first, second),
            )
    raise NoRateError(base + quote)


def convert(
    catalog: Catalog, lookup: QuoteLookup, source: str, target: str, amount: float
) -> Conversion:
    """Convert ``amount`` of ``source`` into ``target`` at the mid rate."""
    if not 0 <= amount <= MAX_AMOUNT:  # also refuses NaN
        raise InvalidQueryError(
            f"amount must be a number from 0 to {MAX_AMOUNT:.0e}", param="amount"
        )
    quote = derive_quote(catalog, lookup, source, target)
    return Conversion(quote.base, quote.quote, amount, quote.mid, amount * quote.mid, quote)
