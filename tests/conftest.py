"""Shared fixtures: ticks to write, and time scaling for slow machines."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tickwire.model import TickBatch

# Scale every timeout in the suite on slow or loaded machines: TICKWIRE_TEST_TIMEOUT_SCALE=3
TIMEOUT_SCALE = float(os.environ.get("TICKWIRE_TEST_TIMEOUT_SCALE", "1"))

T0 = 1_767_000_000_000_000_000  # 2025-12-29 09:20 UTC, a Monday


def make_batch(
    n: int,
    *,
    symbols: tuple[str, ...] = ("EURUSD", "GBPUSD", "USDJPY"),
    start_ts: int = T0,
    seed: int = 0,
) -> TickBatch:
    """``n`` plausible ticks over ``symbols``, 1 ms apart."""
    rng = np.random.default_rng(seed)
    sym = rng.integers(0, len(symbols), n).astype(np.uint16)
    bid = 1.0 + rng.random(n) / 100
    return TickBatch(
        symbols=symbols,
        sym=sym,
        ts=start_ts + np.arange(n, dtype=np.int64) * 1_000_000,
        bid=bid,
        ask=bid + 0.0001,
    )


@pytest.fixture
def batch_factory():  # type: ignore[no-untyped-def]
    """The :func:`make_batch` helper, as a fixture."""
    return make_batch
