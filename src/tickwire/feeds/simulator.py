"""The simulator feed: a deterministic, plausible FX market for demos, tests and load.

The engine (:class:`Simulator`) is sans-I/O: it reads no clock and never sleeps; it turns a time
range into a :class:`~tickwire.model.TickBatch`. :class:`SimulatorFeed` is the thin asyncio shell
that paces it against the wall clock.

What is simulated
-----------------
* **Prices.** Every currency's value against the US dollar (EUR, GBP, JPY, ..., XAU, BTC; USD
  is the numéraire, fixed at 1) follows a Brownian motion in log space without drift. The shocks
  are correlated through the Cholesky factor of a correlation matrix built from a small factor
  model (broad dollar, Europe, euro bloc, risk appetite, Pacific, safe havens, emerging markets,
  Asia, metals, crypto), which makes it positive definite by construction and gives EUR–GBP
  ≈ 0.7, EUR–CHF ≈ 0.8, AUD–NZD ≈ 0.87, EUR–DKK ≈ 0.99, XAU–XAG ≈ 0.8. A pair's mid is
  ``exp(x_base - x_quote)``, so at every instant a cross is exactly the product of its legs
  (EURJPY = EURUSD × USDJPY); the ticks of different symbols differ only by their own spread,
  a micro-noise of a tenth of a half-spread and rounding.
* **Volatility.** Each currency has an annual volatility against USD (:data:`CURRENCY_PARAMS`),
  per year of trading time (260 days for fiat and metals, 365.25 for crypto). The variance per
  second follows the currency's session activity and rises during bursts. HKD (and, loosely,
  CNH) mean-reverts to its starting level, so the HKD peg holds.
* **Ticks.** Each symbol ticks as a Poisson process whose intensity is its activity weight
  (majors busiest) × its session profile (Asia ≈ 23–08 UTC, London 07–16, New York 12–21, the
  overlap busiest, rollover 21–23 sparse; JPY, AUD, NZD and Asian currencies weigh Asia more)
  × bursts. Bursts arrive per currency as a Poisson process (a few a day), last 10 s to a few
  minutes, and multiply the intensity of every pair of that currency by 3–10. Prices live on a
  grid (``config.step`` live, one second in :meth:`Simulator.history`) and a tick takes the
  value interpolated within its cell; intensities are evaluated on a grid of at most 10 s.
* **Spreads.** Typical spreads in pips (:data:`SYMBOL_PARAMS`), kept relative to the price.
  They widen at rollover (up to 4× around 22:00 UTC), when the symbol's sessions are quiet (up
  to 1.5×) and during bursts (1.25×), with a small random jitter per tick.
* **Market hours.** With ``weekend_closed`` (the default), FX and metals do not tick from
  Friday 22:00 to Sunday 22:00 UTC (:func:`tickwire.markethours.open_mask`) and their prices stay
  frozen meanwhile; crypto trades around the clock.

What is not simulated
---------------------
Order books, sizes and trades; holidays and half-days; carry, drifts and trends; fat tails
beyond what bursts give; weekend gaps; mean reversion of anything but the pegs. Prices are
plausible, not a forecast.

Determinism
-----------
A :class:`Simulator` draws from three random streams spawned from ``config.seed`` (prices,
bursts, ticks). The same seed, catalogue, ``start_mids`` and sequence of calls give identical
batches. The price path depends on the time grid but not on the tick rate.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from types import MappingProxyType

import msgspec
import numpy as np
import numpy.typing as npt

from ..catalog import CATALOG, Catalog
from ..markethours import open_mask
from ..model import Kind, Symbol, TickBatch
from .base import FeedSource

__all__ = [
    "CURRENCY_PARAMS",
    "SYMBOL_PARAMS",
    "CurrencyParams",
    "Simulator",
    "SimulatorConfig",
    "SimulatorFeed",
    "SymbolParams",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
IDX = npt.NDArray[np.intp]
BOOL = npt.NDArray[np.bool_]

SECOND_NS = 1_000_000_000
HOUR_NS = 3_600 * SECOND_NS
DAY_NS = 24 * HOUR_NS
HISTORY_GRID_NS = SECOND_NS
"""The time grid of :meth:`Simulator.history`: prices move once a second."""

_FIAT_YEAR_NS = 260.0 * DAY_NS  # a year of FX trading time
_CRYPTO_YEAR_NS = 365.25 * DAY_NS
_MAX_CELLS = 4_096  # grid cells per internal chunk: bounds memory on long catch-up ranges
_SAMPLE_NS = 10 * SECOND_NS  # coarsest grid on which tick intensities are evaluated
_MICRO_NOISE = 0.1  # quote noise, in half-spreads
_SPREAD_JITTER = 0.15  # log-normal sigma of the per-tick spread factor
_BURST_SPREAD = 1.25
_QUIET_SPREAD = 0.5  # extra spread when a symbol's session activity is zero
_BURST_MULT = (3.0, 10.0)  # uniform range of a burst's intensity multiplier
_BURST_MIN_S = 10.0
_BURST_MEAN_EXTRA_S = 50.0  # exponential, added to the minimum
_BURST_MAX_S = 300.0

# ---------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------

_FACTORS = (
    "dollar",
    "europe",
    "eurobloc",
    "risk",
    "pacific",
    "haven",
    "em",
    "asia",
    "metals",
    "crypto",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class CurrencyParams:
    """How one currency moves against USD and when it is busy.

    ``vol`` is the annual volatility against USD; ``loadings`` map factor names to loadings
    (their squares sum to at most 1; the rest is the currency's own noise); ``sessions`` is the
    relevance to the Asia, London and New York sessions; ``floor`` the activity outside them;
    ``bursts_per_day`` the rate of news bursts; ``reversion`` a mean-reversion speed per year
    towards the starting level (pegs); ``always_open`` marks crypto, which trades on weekends.
    """

    vol: float
    sessions: tuple[float, float, float]
    loadings: Mapping[str, float] = field(default_factory=dict)
    floor: float = 0.05
    bursts_per_day: float = 2.0
    reversion: float = 0.0
    always_open: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SymbolParams:
    """A symbol's starting price level, typical spread in pips and relative activity."""

    level: float
    spread_pips: float
    activity: float


_EUR_LOADINGS = {"dollar": 0.60, "europe": 0.40, "eurobloc": 0.69}
_EUROPE_SESSIONS = (0.1, 1.0, 0.4)
_ASIA_SESSIONS = (1.0, 0.5, 0.3)
_CRYPTO_SESSIONS = (0.6, 0.8, 1.0)

CURRENCY_PARAMS: Mapping[str, CurrencyParams] = MappingProxyType(
    {
        "USD": CurrencyParams(vol=0.0, sessions=(0.5, 0.8, 1.0), bursts_per_day=6.0),
        "EUR": CurrencyParams(
            vol=0.07, sessions=(0.3, 1.0, 0.8), loadings=_EUR_LOADINGS, bursts_per_day=4.0
        ),
        "GBP": CurrencyParams(
            vol=0.08,
            sessions=(0.25, 1.0, 0.7),
            loadings={"dollar": 0.6, "europe": 0.5, "eurobloc": 0.25, "risk": 0.2},
            bursts_per_day=4.0,
        ),
        "JPY": CurrencyParams(
            vol=0.10,
            sessions=(1.0, 0.6, 0.6),
            loadings={"dollar": 0.55, "haven": 0.6, "risk": -0.25},
            bursts_per_day=4.0,
        ),
        "CHF": CurrencyParams(
            vol=0.075,
            sessions=(0.2, 1.0, 0.6),
            loadings={"dollar": 0.55, "europe": 0.3, "eurobloc": 0.5, "haven": 0.45},
        ),
        "AUD": CurrencyParams(
            vol=0.10,
            sessions=(1.0, 0.5, 0.5),
            loadings={
                "dollar": 0.5,
                "risk": 0.5,
                "pacific": 0.6,
                "europe": 0.15,
                "eurobloc": 0.2,
            },
            bursts_per_day=3.0,
        ),
        "CAD": CurrencyParams(
            vol=0.06,
            sessions=(0.2, 0.5, 1.0),
            loadings={"dollar": 0.45, "risk": 0.55},
            bursts_per_day=3.0,
        ),
        "NZD": CurrencyParams(
            vol=0.105,
            sessions=(1.0, 0.4, 0.4),
            loadings={"dollar": 0.48, "risk": 0.45, "pacific": 0.65, "europe": 0.1},
        ),
        "SEK": CurrencyParams(
            vol=0.095,
            sessions=_EUROPE_SESSIONS,
            loadings={"dollar": 0.5, "europe": 0.55, "eurobloc": 0.4, "risk": 0.2},
            bursts_per_day=1.5,
        ),
        "NOK": CurrencyParams(
            vol=0.11,
            sessions=_EUROPE_SESSIONS,
            loadings={"dollar": 0.45, "europe": 0.45, "eurobloc": 0.25, "risk": 0.4},
            bursts_per_day=1.5,
        ),
        "DKK": CurrencyParams(
            vol=0.07,
            sessions=_EUROPE_SESSIONS,
            loadings={k: 0.997 * v for k, v in _EUR_LOADINGS.items()},
            bursts_per_day=1.0,
        ),
        "PLN": CurrencyParams(
            vol=0.095,
            sessions=_EUROPE_SESSIONS,
            loadings={"dollar": 0.5, "europe": 0.4, "eurobloc": 0.45, "em": 0.35},
            bursts_per_day=1.5,
        ),
        "HUF": CurrencyParams(
            vol=0.11,
            sessions=_EUROPE_SESSIONS,
            loadings={"dollar": 0.45, "europe": 0.4, "eurobloc": 0.4, "em": 0.4},
            bursts_per_day=1.5,
        ),
        "CZK": CurrencyParams(
            vol=0.085,
            sessions=_EUROPE_SESSIONS,
            loadings={"dollar": 0.55, "europe": 0.35, "eurobloc": 0.6, "em": 0.15},
            bursts_per_day=1.0,
        ),
        "TRY": CurrencyParams(
            vol=0.15,
            sessions=(0.1, 1.0, 0.5),
            loadings={"dollar": 0.15, "em": 0.3},
            bursts_per_day=1.5,
        ),
        "ZAR": CurrencyParams(
            vol=0.15,
            sessions=(0.15, 1.0, 0.7),
            loadings={"dollar": 0.35, "risk": 0.45, "em": 0.45},
            bursts_per_day=1.5,
        ),
        "MXN": CurrencyParams(
            vol=0.13,
            sessions=(0.1, 0.4, 1.0),
            loadings={"dollar": 0.3, "risk": 0.4, "em": 0.45},
            bursts_per_day=1.5,
        ),
        "SGD": CurrencyParams(
            vol=0.045,
            sessions=_ASIA_SESSIONS,
            loadings={"dollar": 0.6, "asia": 0.5, "europe": 0.2, "risk": 0.2},
            bursts_per_day=1.0,
        ),
        "HKD": CurrencyParams(
            vol=0.005,
            sessions=(1.0, 0.4, 0.3),
            loadings={"dollar": 0.1},
            bursts_per_day=0.5,
            reversion=20.0,
        ),
        "CNH": CurrencyParams(
            vol=0.04,
            sessions=_ASIA_SESSIONS,
            loadings={"dollar": 0.45, "asia": 0.6},
            bursts_per_day=1.0,
            reversion=1.0,
        ),
        "XAU": CurrencyParams(
            vol=0.15,
            sessions=(0.6, 1.0, 1.0),
            loadings={"dollar": 0.4, "haven": 0.3, "metals": 0.8},
            bursts_per_day=3.0,
        ),
        "XAG": CurrencyParams(
            vol=0.28,
            sessions=(0.4, 1.0, 1.0),
            loadings={"dollar": 0.35, "haven": 0.15, "metals": 0.8, "risk": 0.2},
        ),
        "XPT": CurrencyParams(
            vol=0.24,
            sessions=(0.2, 1.0, 1.0),
            loadings={"dollar": 0.3, "metals": 0.6, "risk": 0.25},
            bursts_per_day=1.0,
        ),
        "BTC": CurrencyParams(
            vol=0.60,
            sessions=_CRYPTO_SESSIONS,
            loadings={"crypto": 0.9, "risk": 0.15},
            floor=0.5,
            bursts_per_day=4.0,
            always_open=True,
        ),
        "ETH": CurrencyParams(
            vol=0.75,
            sessions=_CRYPTO_SESSIONS,
            loadings={"crypto": 0.92, "risk": 0.15},
            floor=0.5,
            bursts_per_day=4.0,
            always_open=True,
        ),
    }
)
"""Per-currency parameters. USD is the numéraire: its ``vol`` and ``loadings`` are unused."""

# code: (level, typical spread in pips, activity weight). The cross levels equal the product of
# their USD legs; the simulator solves each currency's starting value from all of them.
_SYMBOL_TABLE: dict[str, tuple[float, float, float]] = {
    # majors
    "EURUSD": (1.0800, 0.2, 10.0),
    "GBPUSD": (1.2700, 0.4, 7.0),
    "USDJPY": (150.00, 0.3, 8.0),
    "USDCHF": (0.8800, 0.5, 4.0),
    "AUDUSD": (0.6600, 0.4, 5.0),
    "USDCAD": (1.3800, 0.5, 4.0),
    "NZDUSD": (0.6000, 0.6, 3.0),
    # crosses
    "EURGBP": (0.85039, 1.0, 3.0),
    "EURJPY": (162.00, 1.0, 4.0),
    "EURCHF": (0.95040, 1.2, 2.0),
    "EURAUD": (1.63636, 1.5, 1.5),
    "EURCAD": (1.49040, 1.6, 1.2),
    "EURNZD": (1.80000, 2.5, 0.8),
    "GBPJPY": (190.50, 1.5, 3.0),
    "GBPCHF": (1.11760, 1.8, 1.0),
    "GBPAUD": (1.92424, 2.2, 0.8),
    "GBPCAD": (1.75260, 2.4, 0.8),
    "GBPNZD": (2.11667, 3.0, 0.6),
    "AUDJPY": (99.000, 1.0, 2.0),
    "AUDNZD": (1.10000, 1.5, 1.0),
    "AUDCAD": (0.91080, 1.4, 0.8),
    "AUDCHF": (0.58080, 1.5, 0.6),
    "CADJPY": (108.696, 1.4, 1.0),
    "CHFJPY": (170.455, 1.8, 1.0),
    "NZDJPY": (90.000, 1.6, 1.0),
    "NZDCAD": (0.82800, 2.0, 0.5),
    "NZDCHF": (0.52800, 2.0, 0.5),
    "CADCHF": (0.63768, 1.8, 0.5),
    # exotics
    "USDSEK": (10.5000, 25.0, 0.8),
    "USDNOK": (10.8000, 25.0, 0.8),
    "USDDKK": (6.90500, 12.0, 0.5),
    "USDPLN": (4.00000, 20.0, 0.6),
    "USDHUF": (365.000, 20.0, 0.5),
    "USDCZK": (23.0000, 25.0, 0.4),
    "USDTRY": (42.0000, 120.0, 0.6),
    "USDZAR": (18.0000, 80.0, 0.8),
    "USDMXN": (19.5000, 60.0, 1.0),
    "USDSGD": (1.34000, 3.0, 0.8),
    "USDHKD": (7.80000, 5.0, 0.4),
    "USDCNH": (7.25000, 20.0, 1.0),
    "EURSEK": (11.3400, 30.0, 0.6),
    "EURNOK": (11.6640, 30.0, 0.6),
    "EURPLN": (4.32000, 25.0, 0.5),
    "EURTRY": (45.3600, 150.0, 0.3),
    # metals
    "XAUUSD": (2600.00, 25.0, 6.0),
    "XAGUSD": (31.000, 20.0, 2.0),
    "XPTUSD": (950.00, 250.0, 0.5),
    # crypto
    "BTCUSD": (90_000.00, 15.0, 4.0),
    "ETHUSD": (3_200.00, 12.0, 3.0),
}

SYMBOL_PARAMS: Mapping[str, SymbolParams] = MappingProxyType(
    {
        code: SymbolParams(level=level, spread_pips=spread, activity=activity)
        for code, (level, spread, activity) in _SYMBOL_TABLE.items()
    }
)
"""Per-symbol parameters, keyed by catalogue code; covers every symbol of :data:`CATALOG`.

A symbol of another catalogue that is missing here gets its level from its currencies, a spread
equal to the sum of its USD legs' relative spreads and an activity of 0.5.
"""

# Session activity by UTC hour, in tenths (value at the middle of the hour; linear in between).
_SESSION_CURVES = (
    np.array(
        [
            # hour 0  1  2  3  4  5  6  7  8  9 10 11 12 13 14 15 16 17 18 19 20 21 22 23
            "10 10 10  9  8  7  6  5  3  1  0  0  0  0  0  0  0  0  0  0  0  0  2  7".split(),
            " 0  0  0  0  0  0  3  8 10 10  9  8  9 10 10  9  6  3  1  0  0  0  0  0".split(),
            " 0  0  0  0  0  0  0  0  0  0  0  2  6  9 10 10  9  7  6  5  4  2  0  0".split(),
        ],
        dtype=np.float64,
    )
    / 10
)  # rows: Asia (Sydney, Tokyo, Singapore), London, New York
_SESSION_HOURS = np.arange(24, dtype=np.float64) + 0.5
# Spread multiplier around the 22:00 UTC rollover (hour of day → factor; 1 elsewhere).
_ROLLOVER_HOURS = np.array([0.0, 20.5, 21.0, 21.75, 22.0, 22.25, 22.5, 23.0, 23.5])
_ROLLOVER_MULT = np.array([1.0, 1.0, 1.3, 2.5, 4.0, 3.0, 2.0, 1.3, 1.0])


def _session_curves(hours: F64) -> F64:
    """Asia, London and New York activity at each fractional UTC hour, shape ``(n, 3)``."""
    out = np.empty((len(hours), 3))
    for k in range(3):
        out[:, k] = np.interp(hours, _SESSION_HOURS, _SESSION_CURVES[k], period=24.0)
    return out


def _hours(ts: I64) -> F64:
    hours: F64 = (ts % DAY_NS) / HOUR_NS
    return hours


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


class SimulatorConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Settings of the simulator.

    ``rate`` is the mean number of ticks per second over all symbols while the market is open,
    at average session activity (live mode). ``load_rate``, when set, switches the feed to load
    mode: exactly that many ticks per second, uniform over symbols, ignoring sessions and the
    weekend. ``step`` is the live pacing in seconds. Raises ValueError on invalid values.
    """

    seed: int = 7
    rate: float = 20.0
    weekend_closed: bool = True
    load_rate: float | None = None
    step: float = 0.1

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        _check_rate(self.rate, "rate")
        if self.load_rate is not None and not (
            math.isfinite(self.load_rate) and self.load_rate > 0
        ):
            raise ValueError(f"load_rate must be a positive number, got {self.load_rate}")
        if not (math.isfinite(self.step) and 0.001 <= self.step <= 3_600):
            raise ValueError(f"step must be between 0.001 and 3600 seconds, got {self.step}")


def _check_rate(rate: float, name: str) -> None:
    if not (math.isfinite(rate) and rate >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {rate}")


# ---------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------


def _correlation(currencies: tuple[str, ...]) -> F64:
    """The correlation matrix of the currencies' log moves: ``L Lᵀ`` with a unit diagonal."""
    loadings = np.array(
        [[CURRENCY_PARAMS[c].loadings.get(f, 0.0) for f in _FACTORS] for c in currencies]
    ).reshape(len(currencies), len(_FACTORS))
    norms = (loadings**2).sum(axis=1)
    if np.any(norms > 1.0):
        raise ValueError("factor loadings of a currency exceed unit variance")
    corr: F64 = loadings @ loadings.T
    np.fill_diagonal(corr, 1.0)
    return corr


def _grid(start: int, end: int, cell_ns: int) -> I64:
    """Cell boundaries from ``start`` to ``end``, at the multiples of ``cell_ns`` in between."""
    first = -(-start // cell_ns) * cell_ns
    inner = np.arange(first, end, cell_ns, dtype=np.int64)
    if len(inner) and inner[0] == start:
        inner = inner[1:]
    return np.concatenate(
        (np.array([start], dtype=np.int64), inner, np.array([end], dtype=np.int64))
    )


def _unique_per_symbol(sym: IDX, ts: I64) -> I64:
    """``ts`` nudged forward by whole ns so that each symbol's timestamps are strictly increasing.

    The input is sorted by ``ts``; the output keeps every tick at or after its original time.
    """
    order = np.lexsort((ts, sym))
    s = sym[order]
    t = ts[order] - ts[0]
    n = len(t)
    i = np.arange(n, dtype=np.int64)
    group = np.concatenate(([0], np.cumsum(s[1:] != s[:-1]))).astype(np.int64)
    big = int(t.max()) + n + 1  # wider than any t - i: groups cannot leak into each other
    fixed = np.maximum.accumulate(t - i + group * big) - group * big + i + ts[0]
    out = np.empty_like(ts)
    out[order] = fixed
    return out


@dataclass(slots=True)
class _Chunk:
    """Ticks of one internal chunk, sorted by ``ts``."""

    sym: IDX
    ts: I64
    bid: F64
    ask: F64


class Simulator:
    """The sans-I/O simulator engine: no asyncio, no clock reads.

    Guarantees of every batch it returns: ``symbols`` is the catalogue's codes in catalogue
    order; ticks lie in the requested range, sorted by ``ts`` (stable), with strictly
    increasing timestamps per symbol; ``ask > bid`` by at least one unit of the symbol's last
    decimal and both are rounded to its ``decimals``. Successive calls (``generate``,
    ``history``, ``load``, in any mix) must cover contiguous increasing ranges; each advances the
    internal state.

    ``start_mids`` (symbol code → mid) sets the starting prices, for example the last journaled
    mids of a restarted server, so that prices continue instead of jumping back to the table.
    Currencies are solved from the given mids by least squares in log space, each mid weighted by
    its symbol's activity (busy symbols' last mids are the freshest), so consistent mids are
    reproduced exactly; currencies that no given mid constrains start at their table level.
    Unknown codes and non-positive values are ignored.
    """

    def __init__(
        self,
        config: SimulatorConfig,
        catalog: Catalog = CATALOG,
        *,
        start_mids: Mapping[str, float] | None = None,
    ) -> None:
        self._config = config
        symbols: list[Symbol] = list(catalog.values())
        if not symbols:
            raise ValueError("the catalogue is empty")
        if len(symbols) > np.iinfo(np.uint16).max + 1:
            raise ValueError("too many symbols for uint16 indices")
        self._codes: tuple[str, ...] = tuple(s.code for s in symbols)
        used = {c for s in symbols for c in (s.base, s.quote)}
        for s in symbols:
            for c in (s.base, s.quote):
                if c not in CURRENCY_PARAMS:
                    raise ValueError(f"no simulator parameters for {c} (symbol {s.code})")
        # Currencies in table order; USD is the extra last column, fixed at 0.
        cur = tuple(c for c in CURRENCY_PARAMS if c in used and c != "USD")
        self._cur = cur
        nc = len(cur)
        col = {c: i for i, c in enumerate(cur)} | {"USD": nc}
        self._col = col
        cp = [CURRENCY_PARAMS[c] for c in cur]
        every = [*cp, CURRENCY_PARAMS["USD"]]  # incl. USD, for sessions and bursts

        self._base: IDX = np.array([col[s.base] for s in symbols], dtype=np.intp)
        self._quote: IDX = np.array([col[s.quote] for s in symbols], dtype=np.intp)

        # -- prices
        self._chol32 = np.linalg.cholesky(_correlation(cur)).astype(np.float32)
        self._vol: F64 = np.array([p.vol for p in cp])
        self._year_ns: F64 = np.array(
            [_CRYPTO_YEAR_NS if p.always_open else _FIAT_YEAR_NS for p in cp]
        )
        self._closable_cur: IDX = np.array(
            [i for i, p in enumerate(cp) if not p.always_open], dtype=np.intp
        )
        self._kappa: F64 = np.array([p.reversion for p in cp])
        self._reverting: IDX = np.flatnonzero(self._kappa > 0)
        table = self._solve({c: p.level for c, p in SYMBOL_PARAMS.items()}, None)
        self._anchor: F64 = table
        self._x: F64 = table if not start_mids else self._solve(start_mids, table)

        # -- activity
        minutes = _session_curves(np.arange(1_440, dtype=np.float64) / 60.0)
        self._cur_rel: F64 = np.array([p.sessions for p in every])
        self._cur_floor: F64 = np.array([p.floor for p in every])
        cur_act = minutes @ self._cur_rel.T + self._cur_floor
        self._cur_mean: F64 = cur_act.mean(axis=0)
        self._sym_rel: F64 = (self._cur_rel[self._base] + self._cur_rel[self._quote]) / 2
        self._sym_floor: F64 = np.maximum(self._cur_floor[self._base], self._cur_floor[self._quote])
        sym_act = minutes @ self._sym_rel.T + self._sym_floor  # (1440, n_sym)
        self._sym_mean: F64 = sym_act.mean(axis=0)

        # -- bursts (per currency incl. USD)
        self._burst_rate: F64 = np.array([p.bursts_per_day for p in every]) / DAY_NS
        self._burst_usd_moves: BOOL = np.array([not p.always_open for p in cp])
        mean_dur = _BURST_MIN_S + _BURST_MEAN_EXTRA_S
        p_burst = self._burst_rate * mean_dur * SECOND_NS
        uplift = 1.0 + (sum(_BURST_MULT) / 2 - 1.0) * (p_burst[self._base] + p_burst[self._quote])

        # -- symbols
        params = [self._symbol_params(s) for s in symbols]
        self._weight: F64 = np.array([p.activity for p in params])
        busy = self._weight * self._sym_mean
        self._norm = float(busy.sum() * np.average(uplift, weights=busy))
        self._half_rel: F64 = np.array(
            [p.spread_pips * s.pip / p.level / 2 for p, s in zip(params, symbols, strict=True)]
        )
        self._scale: F64 = np.array([10.0**s.decimals for s in symbols])
        self._crypto: BOOL = np.array([s.kind is Kind.CRYPTO for s in symbols])
        self._closable_sym: IDX = np.flatnonzero(~self._crypto)

        # -- state
        root = np.random.SeedSequence(config.seed)
        rng_paths, rng_bursts, rng_ticks = (np.random.default_rng(s) for s in root.spawn(3))
        self._rng_paths = rng_paths
        self._rng_bursts = rng_bursts
        self._rng_ticks = rng_ticks
        self._t: int | None = None
        ncb = nc + 1
        self._burst_start: F64 = np.full(ncb, np.inf)
        self._burst_end: F64 = np.full(ncb, np.inf)
        self._burst_mult: F64 = np.ones(ncb)
        self._load_ns = 0
        self._load_emitted = 0
        self._load_next_sym = 0

    # -- public --------------------------------------------------------------------------------

    @property
    def config(self) -> SimulatorConfig:
        """The configuration this simulator was built with."""
        return self._config

    @property
    def symbols(self) -> tuple[str, ...]:
        """The symbol codes every batch names, in catalogue order."""
        return self._codes

    @property
    def time_ns(self) -> int | None:
        """The end of the last range generated (None before the first call)."""
        return self._t

    def mids(self) -> dict[str, float]:
        """Each symbol's current model mid (unrounded, without noise), at :attr:`time_ns`."""
        x = np.append(self._x, 0.0)
        mids = np.exp(x[self._base] - x[self._quote])
        return dict(zip(self._codes, mids.tolist(), strict=True))

    def generate(self, start_ns: int, end_ns: int, *, rate: float | None = None) -> TickBatch:
        """Live ticks with ``start_ns <= ts < end_ns`` on a grid of ``config.step``.

        ``rate`` overrides ``config.rate`` for this call. Raises ValueError if the range does not
        continue the previous one or ``rate`` is invalid.
        """
        rate = self._config.rate if rate is None else rate
        _check_rate(rate, "rate")
        self._begin(start_ns, end_ns)
        cell = max(1, round(self._config.step * SECOND_NS))
        return self._range(start_ns, end_ns, cell, rate)

    def history(
        self, start_ns: int, end_ns: int, *, rate: float, chunk_ns: int = HOUR_NS
    ) -> Iterator[TickBatch]:
        """Backfill ``[start_ns, end_ns)``: one batch per chunk, on a one-second price grid.

        Chunks end at the multiples of ``chunk_ns`` (whole UTC hours by default), so the first
        and last may be shorter. The range is checked now; the state advances as the iterator is
        consumed, and an abandoned iterator leaves the simulator at the end of the last chunk it
        yielded.
        """
        _check_rate(rate, "rate")
        if chunk_ns <= 0:
            raise ValueError(f"chunk_ns must be positive, got {chunk_ns}")
        self._check_start(start_ns, end_ns)
        return self._history(start_ns, end_ns, rate, chunk_ns)

    def load(self, start_ns: int, end_ns: int) -> TickBatch:
        """Load mode: ``config.load_rate`` ticks per second over ``[start_ns, end_ns)``.

        Over successive calls the total is exactly ``floor(load_rate × seconds so far)`` (the
        fractional remainder carries over). Timestamps are spread evenly over the range and the
        symbols come round-robin, continuing across calls; prices move with the model, without
        sessions, bursts or weekends. Raises ValueError when ``load_rate`` is not set.
        """
        load_rate = self._config.load_rate
        if load_rate is None:
            raise ValueError("load() needs config.load_rate")
        self._begin(start_ns, end_ns)
        dur = end_ns - start_ns
        self._load_ns += dur
        due = math.floor(Fraction(load_rate) * self._load_ns / SECOND_NS)
        n = due - self._load_emitted
        self._load_emitted = due
        cell = max(1, round(self._config.step * SECOND_NS))
        bounds = _grid(start_ns, end_ns, cell)
        x = self._paths(np.diff(bounds), None)
        if n <= 0:
            return self._empty()
        k = np.arange(n, dtype=np.int64)
        ts = start_ns + (k * dur) // n
        sym = (self._load_next_sym + k) % len(self._codes)
        self._load_next_sym = int((self._load_next_sym + n) % len(self._codes))
        cell_idx = np.searchsorted(bounds, ts, side="right") - 1
        frac = (ts - bounds[cell_idx]) / np.diff(bounds)[cell_idx]
        bid, ask = self._price(x, sym, cell_idx, frac, np.ones(n))
        return TickBatch(self._codes, sym.astype(np.uint16), ts, bid, ask)

    # -- internals -----------------------------------------------------------------------------

    def _symbol_params(self, s: Symbol) -> SymbolParams:
        if s.code in SYMBOL_PARAMS:
            return SYMBOL_PARAMS[s.code]
        x = np.append(self._anchor, 0.0)
        level = math.exp(x[self._col[s.base]] - x[self._col[s.quote]])
        rel = sum(self._usd_leg_spread(c) for c in (s.base, s.quote))
        return SymbolParams(level=level, spread_pips=rel * level / s.pip, activity=0.5)

    @staticmethod
    def _usd_leg_spread(currency: str) -> float:
        """The relative spread of ``currency`` against USD (0 for USD, 5 bp if unknown)."""
        if currency == "USD":
            return 0.0
        for code in (currency + "USD", "USD" + currency):
            if code in SYMBOL_PARAMS and code in CATALOG:
                p = SYMBOL_PARAMS[code]
                return p.spread_pips * CATALOG[code].pip / p.level
        return 5e-4

    def _solve(self, mids: Mapping[str, float], prior: F64 | None) -> F64:
        """Log USD values of the currencies that best fit ``mids`` (least squares in log space).

        Each mid weighs as its symbol's activity: busy symbols were quoted more recently, so
        their last mids are fresher. ``prior`` pins, with a tiny weight, the currencies that no
        mid constrains.
        """
        nc = len(self._cur)
        col = {c: i for i, c in enumerate(self._cur)}
        rows: list[F64] = []
        rhs: list[float] = []
        for code, mid in mids.items():
            base, quote = code[:3], code[3:]
            ok = base in col or base == "USD"
            ok = ok and (quote in col or quote == "USD") and base != quote and len(code) == 6
            if not ok or not (math.isfinite(mid) and mid > 0):
                continue
            weight = SYMBOL_PARAMS[code].activity if code in SYMBOL_PARAMS else 0.5
            row = np.zeros(nc)
            if base != "USD":
                row[col[base]] += weight
            if quote != "USD":
                row[col[quote]] -= weight
            rows.append(row)
            rhs.append(weight * math.log(mid))
        w = 1e-6
        a = np.vstack([*rows, w * np.eye(nc)]) if rows else w * np.eye(nc)
        p = np.zeros(nc) if prior is None else prior
        b = np.concatenate((np.array(rhs), w * p))
        x: F64 = np.linalg.lstsq(a, b, rcond=None)[0]
        return x

    def _check_start(self, start_ns: int, end_ns: int) -> None:
        if end_ns < start_ns:
            raise ValueError(f"range ends before it starts: {start_ns} .. {end_ns}")
        if self._t is not None and start_ns != self._t:
            raise ValueError(f"ranges must be contiguous: expected start {self._t}, got {start_ns}")

    def _begin(self, start_ns: int, end_ns: int) -> None:
        self._check_start(start_ns, end_ns)
        if self._t is None:
            self._init_bursts(start_ns)
        self._t = end_ns

    def _empty(self) -> TickBatch:
        return TickBatch(
            self._codes,
            np.empty(0, dtype=np.uint16),
            np.empty(0, dtype=np.int64),
            np.empty(0, dtype=np.float64),
            np.empty(0, dtype=np.float64),
        )

    def _history(self, start: int, end: int, rate: float, chunk_ns: int) -> Iterator[TickBatch]:
        if end == start:
            return
        bounds = _grid(start, end, chunk_ns).tolist()
        for a, b in itertools.pairwise(bounds):
            self._begin(a, b)
            yield self._range(a, b, min(HISTORY_GRID_NS, chunk_ns), rate)

    def _range(self, start: int, end: int, cell_ns: int, rate: float) -> TickBatch:
        """Ticks of ``[start, end)``, in internal chunks of at most ``_MAX_CELLS`` cells."""
        if end == start:
            return self._empty()
        if end - start <= _MAX_CELLS * cell_ns:
            c = self._chunk(start, end, cell_ns, rate)
        else:
            edges = _grid(start, end, _MAX_CELLS * cell_ns).tolist()
            parts = [self._chunk(a, b, cell_ns, rate) for a, b in itertools.pairwise(edges)]
            c = _Chunk(
                np.concatenate([p.sym for p in parts]),
                np.concatenate([p.ts for p in parts]),
                np.concatenate([p.bid for p in parts]),
                np.concatenate([p.ask for p in parts]),
            )
        return TickBatch(self._codes, c.sym.astype(np.uint16), c.ts, c.bid, c.ask)

    def _init_bursts(self, t0: int) -> None:
        rng = self._rng_bursts
        with np.errstate(divide="ignore"):  # a rate of 0: the first burst never comes
            gaps = rng.exponential(1.0, len(self._burst_rate)) / self._burst_rate
        self._burst_start = t0 + gaps
        self._burst_end = self._burst_start + self._burst_duration(len(self._burst_rate))
        self._burst_mult = rng.uniform(*_BURST_MULT, len(self._burst_rate))

    def _burst_duration(self, n: int) -> F64:
        extra = self._rng_bursts.exponential(_BURST_MEAN_EXTRA_S, n)
        dur: F64 = np.minimum(_BURST_MIN_S + extra, _BURST_MAX_S) * SECOND_NS
        return dur

    def _bursts(self, end: int) -> list[tuple[int, float, float, float]]:
        """The bursts that start before ``end``, as ``(currency, start, end, multiplier)``.

        Bursts that finish before ``end`` are consumed and the next one is drawn.
        """
        out: list[tuple[int, float, float, float]] = []
        for c in np.flatnonzero(self._burst_start < end).tolist():
            while self._burst_start[c] < end:
                burst_end = float(self._burst_end[c])
                out.append((c, float(self._burst_start[c]), burst_end, float(self._burst_mult[c])))
                if burst_end > end:
                    break
                gap = self._rng_bursts.exponential(1.0) / self._burst_rate[c]  # rate > 0 here
                self._burst_start[c] = burst_end + gap
                self._burst_end[c] = self._burst_start[c] + self._burst_duration(1)[0]
                self._burst_mult[c] = self._rng_bursts.uniform(*_BURST_MULT)
        return out

    def _paint(self, bursts: list[tuple[int, float, float, float]], mid_t: I64) -> F64 | None:
        """Intensity multiplier per cell and currency (incl. USD), or None without bursts."""
        if not bursts:
            return None
        mult = np.ones((len(mid_t), len(self._burst_rate)))
        for c, b0, b1, m in bursts:
            i0, i1 = np.searchsorted(mid_t, (b0, b1))
            mult[i0:i1, c] = m
        return mult

    def _cells(self, bounds: I64) -> tuple[I64, F64, BOOL | None]:
        """Widths, session curves and closed mask (None if all open) of grid cells."""
        dt = np.diff(bounds)
        mid_t = bounds[:-1] + dt // 2
        closed: BOOL | None = None
        if self._config.weekend_closed:
            closed = ~open_mask(mid_t)
            if not closed.any():
                closed = None
        return dt, _session_curves(_hours(mid_t)), closed

    def _paths(self, dt_ns: I64, vol_mult: F64 | None) -> F64:
        """Advance the currencies over cells of ``dt_ns``.

        Returns the log USD values at every cell boundary, shape ``(cells + 1, currencies + 1)``
        (the last column is USD, 0), and moves the state to the last row. The shocks are drawn
        and correlated in float32 (an error far below price precision), then scaled, summed and
        added to the state in float64.
        """
        n, nc = len(dt_ns), len(self._cur)
        years = dt_ns[:, None] / self._year_ns
        scale = self._vol * np.sqrt(years)
        if vol_mult is not None:
            scale *= vol_mult
        z = self._rng_paths.standard_normal((n, nc), dtype=np.float32) @ self._chol32.T
        out = np.zeros((n + 1, nc + 1))
        np.cumsum(z * scale, axis=0, out=out[1:, :nc])
        out[:, :nc] += self._x
        if len(self._reverting):
            r = self._reverting
            open_years = years[:, r] if vol_mult is None else years[:, r] * (vol_mult[:, r] > 0)
            tau = np.concatenate((np.zeros((1, len(r))), np.cumsum(open_years, axis=0)))
            out[:, r] += (self._anchor[r] - self._x[r]) * -np.expm1(-self._kappa[r] * tau)
        self._x = out[-1, :nc].copy()
        return out

    def _chunk(self, start: int, end: int, cell_ns: int, rate: float) -> _Chunk:
        """Ticks of ``[start, end)``: prices on a grid of ``cell_ns``, intensities on a grid of
        at least ``_SAMPLE_NS`` (sessions change slowly; bursts last ten seconds or more)."""
        nc = len(self._cur)
        bursts = self._bursts(end)

        # prices: variance follows session activity and bursts; fiat and metals freeze when shut
        bounds = _grid(start, end, cell_ns)
        dt, curves, closed = self._cells(bounds)
        vol_mult = np.sqrt(
            (curves @ self._cur_rel[:nc].T + self._cur_floor[:nc]) / self._cur_mean[:nc]
        )
        cur_burst = self._paint(bursts, bounds[:-1] + dt // 2)
        if cur_burst is not None:
            usd = np.where(self._burst_usd_moves, cur_burst[:, nc : nc + 1], 1.0)
            vol_mult *= np.sqrt(np.maximum(cur_burst[:, :nc], usd))
        if closed is not None:
            vol_mult[np.ix_(closed, self._closable_cur)] = 0.0
        x = self._paths(dt, vol_mult)

        # intensity: expected ticks per symbol (rows) and sampling cell (columns)
        sbounds = bounds if cell_ns >= _SAMPLE_NS else _grid(start, end, _SAMPLE_NS)
        sdt, scurves, sclosed = (dt, curves, closed) if sbounds is bounds else self._cells(sbounds)
        sym_act = self._sym_rel @ scurves.T + self._sym_floor[:, None]
        lam = sym_act * (rate / self._norm * self._weight)[:, None] * (sdt / SECOND_NS)
        sym_burst: F64 | None = None
        burst = self._paint(bursts, sbounds[:-1] + sdt // 2)
        if burst is not None:
            sym_burst = np.maximum(burst.T[self._base], burst.T[self._quote])
            lam *= sym_burst
        if sclosed is not None:
            lam[np.ix_(self._closable_sym, sclosed)] = 0.0

        # a Poisson process over (symbol, time): the total count, then points by inverse CDF
        flat = lam.ravel()
        cum = np.cumsum(flat)
        total = float(cum[-1])
        rng = self._rng_ticks
        count = int(rng.poisson(total)) if total > 0 else 0
        if count == 0:
            e = np.empty(0)
            return _Chunk(np.empty(0, dtype=np.intp), np.empty(0, dtype=np.int64), e, e)
        # sorted uniform points from exponential spacings: sorted keys make searchsorted fast
        spacing = np.cumsum(rng.standard_exponential(count + 1))
        u = np.minimum(spacing[:-1] * (total / spacing[-1]), np.nextafter(total, 0.0))
        idx = np.searchsorted(cum, u, side="right")
        lo = np.where(idx > 0, cum[idx - 1], 0.0)
        frac = np.clip((u - lo) / (cum[idx] - lo), 0.0, 1.0)
        sym, scell = np.divmod(idx, len(sdt))
        ts = sbounds[scell] + np.minimum((frac * sdt[scell]).astype(np.int64), sdt[scell] - 1)
        order = np.argsort(ts, kind="stable")
        sym, scell, frac, ts = sym[order], scell[order], frac[order], ts[order]

        # spreads: rollover, quiet sessions and bursts widen them
        rollover = np.interp(_hours(ts), _ROLLOVER_HOURS, _ROLLOVER_MULT)
        mult = np.where(self._crypto[sym], 1.0, rollover)
        quiet = np.clip(1.0 - sym_act[sym, scell] / self._sym_mean[sym], 0.0, 1.0)
        mult *= 1.0 + _QUIET_SPREAD * quiet
        if sym_burst is not None:
            mult *= np.where(sym_burst[sym, scell] > 1.0, _BURST_SPREAD, 1.0)
        if sbounds is bounds:
            cell = scell
        else:
            cell = np.searchsorted(bounds, ts, side="right") - 1
            frac = (ts - bounds[cell]) / dt[cell]
        bid, ask = self._price(x, sym, cell, frac, mult)

        # exact market hours (a cell may straddle the weekend boundary), uniqueness per symbol
        if self._config.weekend_closed:
            keep = self._crypto[sym] | open_mask(ts)
            if not keep.all():
                sym, ts, bid, ask = sym[keep], ts[keep], bid[keep], ask[keep]
        if len(ts) > 1 and np.any(ts[1:] == ts[:-1]):
            ts = _unique_per_symbol(sym, ts)
            order = np.argsort(ts, kind="stable")
            sym, ts, bid, ask = sym[order], ts[order], bid[order], ask[order]
            keep = ts < end
            sym, ts, bid, ask = sym[keep], ts[keep], bid[keep], ask[keep]
        return _Chunk(sym, ts, bid, ask)

    def _price(self, x: F64, sym: IDX, cell: IDX, frac: F64, mult: F64) -> tuple[F64, F64]:
        """Bid and ask of each tick, from the log values ``x`` at its cell's boundaries."""
        rng = self._rng_ticks
        b, q = self._base[sym], self._quote[sym]
        x0 = x[cell, b] - x[cell, q]
        x1 = x[cell + 1, b] - x[cell + 1, q]
        n = len(sym)
        half = self._half_rel[sym] * mult * np.exp(_SPREAD_JITTER * rng.standard_normal(n))
        mid = np.exp(x0 + frac * (x1 - x0) + _MICRO_NOISE * half * rng.standard_normal(n))
        scale = self._scale[sym]
        bid: F64 = np.round(mid * (1.0 - half) * scale) / scale
        ask: F64 = np.round(mid * (1.0 + half) * scale) / scale
        ask = np.maximum(ask, np.round(bid * scale + 1.0) / scale)
        return bid, ask


# ---------------------------------------------------------------------------------------------
# The asyncio shell
# ---------------------------------------------------------------------------------------------


class SimulatorFeed(FeedSource):
    """The simulator paced by a clock: one batch per ``config.step``.

    ``next_batch()`` sleeps until the next multiple of the step after the end of the previous
    range, then returns the ticks from that end up to the clock's current time (load mode when
    ``config.load_rate`` is set). Ranges are contiguous, so a slow consumer gets bigger batches,
    never gaps. It never returns None. ``start_ns`` defaults to where the simulator stopped (after
    a backfill) or else the clock's time at construction; if the simulator has already run, it
    must equal :attr:`Simulator.time_ns` (the first batch raises ValueError otherwise).
    """

    name = "simulator"

    def __init__(
        self,
        simulator: Simulator,
        *,
        clock: Callable[[], int] = time.time_ns,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        start_ns: int | None = None,
    ) -> None:
        self._sim = simulator
        self._clock = clock
        self._sleep = sleep
        if start_ns is None:
            start_ns = simulator.time_ns if simulator.time_ns is not None else clock()
        self._last = start_ns
        self._step_ns = max(1, round(simulator.config.step * SECOND_NS))

    @property
    def simulator(self) -> Simulator:
        """The engine this feed paces."""
        return self._sim

    async def next_batch(self) -> TickBatch:
        """The ticks since the previous batch, after sleeping to the next step boundary."""
        boundary = (self._last // self._step_ns + 1) * self._step_ns
        now = self._clock()
        if now < boundary:
            await self._sleep((boundary - now) / SECOND_NS)
            now = self._clock()
        end = max(now, self._last)
        if self._sim.config.load_rate is not None:
            batch = self._sim.load(self._last, end)
        else:
            batch = self._sim.generate(self._last, end)
        self._last = end
        return batch
