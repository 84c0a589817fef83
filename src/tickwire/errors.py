"""The one exception hierarchy of tickwire.

::

    TickwireError
    ├── ConfigError                 invalid settings (the CLI exits with code 2)
    ├── UnknownSymbolError          a symbol that is not in the catalogue (also a KeyError)
    ├── NoRateError                 known currencies, but no live quote to convert with yet
    ├── InvalidQueryError           a history query that cannot be answered (also a ValueError)
    ├── InvalidTickError            a tick that cannot be journaled (also a ValueError)
    ├── JournalError
    │   ├── JournalCorruptError     damage found while recovering; carries what was dropped
    │   └── JournalUnavailableError the journal cannot accept writes (disk full, read-only, closed)
    ├── PositionUnavailableError    a resume position is too old or from another epoch
    └── StoreError                  the history store failed

Every error carries a human message. Callers at the edge (REST, the stream, the CLI) map these
to their protocol's own terms; nothing below the edge knows about HTTP or close codes.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "InvalidQueryError",
    "InvalidTickError",
    "JournalCorruptError",
    "JournalError",
    "JournalUnavailableError",
    "NoRateError",
    "PositionUnavailableError",
    "StoreError",
    "TickwireError",
    "UnknownSymbolError",
]


class TickwireError(Exception):
    """Root of every error raised by tickwire."""


class ConfigError(TickwireError):
    """Settings are invalid; the message names the setting and its source."""


class UnknownSymbolError(TickwireError, KeyError):
    """The symbol is not in the catalogue."""

    def __init__(self, symbol: str) -> None:
        super().__init__(f"unknown symbol: {symbol!r}")
        self.symbol = symbol

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class NoRateError(TickwireError):
    """The currencies are known, but no quote for the pair (direct, inverse or cross) exists yet."""

    def __init__(self, pair: str) -> None:
        super().__init__(f"no live rate for {pair} yet")
        self.pair = pair


class InvalidQueryError(TickwireError, ValueError):
    """A query parameter is out of range or inconsistent; ``param`` names it."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class JournalError(TickwireError):
    """Base of journal failures."""


class JournalCorruptError(JournalError):
    """A damaged record was found; everything before ``offset`` is intact."""

    def __init__(self, message: str, *, path: str, position: int) -> None:
        super().__init__(message)
        self.path = path
        self.position = position


class JournalUnavailableError(JournalError):
    """The journal refuses writes: nothing passed to it was acknowledged."""


class StoreError(TickwireError):
    """The history store failed to read or write."""


class InvalidTickError(TickwireError, ValueError):
    """A feed offered a tick the tickplant will not journal (non-finite, crossed, bad time)."""


class PositionUnavailableError(TickwireError):
    """A stream position cannot be resumed from: too old for the journal, or another epoch.

    The reader should fetch history over REST, then resume from the current position.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason  # "too_old", "epoch_changed" or "ahead"
