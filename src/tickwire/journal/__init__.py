"""The durable, ordered tick journal."""

from .journal import DroppedSpan, Journal, RecoveryReport, SyncPolicy

__all__ = ["DroppedSpan", "Journal", "RecoveryReport", "SyncPolicy"]
