"""The bus interface and its in-process implementation."""

from .base import Bus, Subscription
from .inprocess import InProcessBus

__all__ = ["Bus", "InProcessBus", "Subscription"]
