"""tickwire: a self-hosted forex market-data server."""

__version__ = "0.1.0"
