"""tickwire: a self-hosted forex market-data server.

The public API is what ``__all__`` lists; everything else is internal and may change.
"""

from .catalog import CATALOG, Catalog
from .config import Settings, load_settings
from .errors import (
    ConfigError,
    InvalidQueryError,
    InvalidTickError,
    JournalCorruptError,
    JournalError,
    JournalUnavailableError,
    PositionUnavailableError,
    StoreError,
    TickwireError,
    UnknownSymbolError,
)
from .model import (
    Bar,
    BarUnit,
    JournaledBatch,
    Kind,
    Position,
    PriceSide,
    Quote,
    Symbol,
    Tick,
    TickBatch,
)
from .timeframes import Resolution

__version__ = "0.1.0"

__all__ = [
    "CATALOG",
    "Bar",
    "BarUnit",
    "Catalog",
    "ConfigError",
    "InvalidQueryError",
    "InvalidTickError",
    "JournalCorruptError",
    "JournalError",
    "JournalUnavailableError",
    "JournaledBatch",
    "Kind",
    "Position",
    "PositionUnavailableError",
    "PriceSide",
    "Quote",
    "Resolution",
    "Settings",
    "StoreError",
    "Symbol",
    "Tick",
    "TickBatch",
    "TickwireError",
    "UnknownSymbolError",
    "__version__",
    "load_settings",
]
