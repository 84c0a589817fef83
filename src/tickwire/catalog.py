"""The instrument catalogue: every symbol tickwire knows, with its metadata.

The catalogue is product data, shared by every feed, the REST API and the stream. Feed-specific
parameters (the simulator's price levels and volatilities) live with the feed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType

from .errors import UnknownSymbolError
from .model import Kind, Symbol

__all__ = ["CATALOG", "Catalog", "default_catalog"]

_CURRENCY_NAMES = {
    "EUR": "Euro",
    "USD": "US Dollar",
    "GBP": "British Pound",
    "JPY": "Japanese Yen",
    "CHF": "Swiss Franc",
    "AUD": "Australian Dollar",
    "CAD": "Canadian Dollar",
    "NZD": "New Zealand Dollar",
    "SEK": "Swedish Krona",
    "NOK": "Norwegian Krone",
    "DKK": "Danish Krone",
    "PLN": "Polish Zloty",
    "HUF": "Hungarian Forint",
    "CZK": "Czech Koruna",
    "TRY": "Turkish Lira",
    "ZAR": "South African Rand",
    "MXN": "Mexican Peso",
    "SGD": "Singapore Dollar",
    "HKD": "Hong Kong Dollar",
    "CNH": "Chinese Yuan (offshore)",
    "XAU": "Gold",
    "XAG": "Silver",
    "XPT": "Platinum",
    "BTC": "Bitcoin",
    "ETH": "Ethereum",
}

_FX = (
    # majors
    "EURUSD GBPUSD USDJPY USDCHF AUDUSD USDCAD NZDUSD "
    # crosses
    "EURGBP EURJPY EURCHF EURAUD EURCAD EURNZD GBPJPY GBPCHF GBPAUD GBPCAD GBPNZD "
    "AUDJPY AUDNZD AUDCAD AUDCHF CADJPY CHFJPY NZDJPY NZDCAD NZDCHF CADCHF "
    # exotics
    "USDSEK USDNOK USDDKK USDPLN USDHUF USDCZK USDTRY USDZAR USDMXN USDSGD USDHKD USDCNH "
    "EURSEK EURNOK EURPLN EURTRY"
).split()
_METALS = ("XAUUSD", "XAGUSD", "XPTUSD")
_CRYPTO = ("BTCUSD", "ETHUSD")

# (pip, decimals) where the usual rule (0.0001, 5 decimals) does not hold
_PIP_OVERRIDES: dict[str, tuple[float, int]] = {
    "XAUUSD": (0.01, 2),
    "XAGUSD": (0.001, 3),
    "XPTUSD": (0.01, 2),
    "BTCUSD": (1.0, 2),
    "ETHUSD": (0.1, 2),
    "USDHUF": (0.01, 3),
}


def _fx_pip(code: str) -> tuple[float, int]:
    if code in _PIP_OVERRIDES:
        return _PIP_OVERRIDES[code]
    if code.endswith("JPY"):
        return 0.01, 3
    return 0.0001, 5


def _make(code: str, kind: Kind) -> Symbol:
    base, quote = code[:3], code[3:]
    pip, decimals = _fx_pip(code)
    return Symbol(
        code=code,
        base=base,
        quote=quote,
        kind=kind,
        pip=pip,
        decimals=decimals,
        name=f"{_CURRENCY_NAMES[base]} / {_CURRENCY_NAMES[quote]}",
    )


class Catalog(Mapping[str, Symbol]):
    """A read-only, ordered mapping of symbol code to :class:`Symbol`."""

    def __init__(self, symbols: Iterable[Symbol]) -> None:
        self._by_code = MappingProxyType({s.code: s for s in symbols})

    def __getitem__(self, code: str) -> Symbol:
        try:
            return self._by_code[code]
        except KeyError:
            raise UnknownSymbolError(code) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_code)

    def __len__(self) -> int:
        return len(self._by_code)

    def __contains__(self, code: object) -> bool:
        return code in self._by_code

    def resolve(self, code: str) -> Symbol:
        """Look a code up case-insensitively; raises :class:`UnknownSymbolError`."""
        return self[code.strip().upper()]

    def currencies(self) -> frozenset[str]:
        """Every currency that appears as a base or a quote."""
        return frozenset(c for s in self._by_code.values() for c in (s.base, s.quote))


def default_catalog() -> Catalog:
    """The built-in instruments: FX majors, crosses and exotics, metals and two cryptos."""
    return Catalog(
        [_make(c, Kind.FX) for c in _FX]
        + [_make(c, Kind.METAL) for c in _METALS]
        + [_make(c, Kind.CRYPTO) for c in _CRYPTO]
    )


CATALOG = default_catalog()
