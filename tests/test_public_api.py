"""The public surface: exactly what __all__ lists, and one exception root."""

from __future__ import annotations

import inspect

import tickwire
from tickwire import errors

EXPECTED = {
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
}


def test_all_is_exactly_the_public_api() -> None:
    """Nothing leaks into or vanishes from tickwire.__all__, and every name resolves."""
    assert set(tickwire.__all__) == EXPECTED
    for name in tickwire.__all__:
        assert getattr(tickwire, name) is not None


def test_every_error_has_one_root() -> None:
    """Every exception class in tickwire.errors derives from TickwireError."""
    classes = [
        c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__
    ]
    assert len(classes) == len(errors.__all__)
    for cls in classes:
        assert issubclass(cls, tickwire.TickwireError)


def test_version_matches_the_package_metadata() -> None:
    """__version__ is the installed distribution's version."""
    from importlib.metadata import version

    assert tickwire.__version__ == version("tickwire")
