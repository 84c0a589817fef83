"""The store writer: every published tick reaches the store, in few applies under load."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from tickwire.model import JournaledBatch
from tickwire.store.duckdb import DuckDBStore
from tickwire.store.writer import StoreWriter

from .test_tickplant import build


class SlowStore(DuckDBStore):
    """The real store, with each apply taking at least ``APPLY_S`` (a loaded engine)."""

    APPLY_S = 0.05
    applies = 0

    async def apply(self, batches: Sequence[JournaledBatch]) -> None:
        self.applies += 1
        await asyncio.sleep(self.APPLY_S)
        await super().apply(batches)


async def test_writer_rests_in_proportion_to_apply_time(tmp_path: Path, batch_factory) -> None:  # type: ignore[no-untyped-def]
    """With ``max_duty`` 0.2 an apply of ≥ 50 ms is followed by ≥ 200 ms of rest, so a second
    of continuous publishing takes at most about five applies (not ~16 at a 10 ms interval),
    and after ``drain`` the store holds every tick."""
    plant = build(tmp_path / "journal")
    store = await SlowStore.open(tmp_path / "store.duckdb")
    writer = StoreWriter(store, plant.bus, after=0, flush_interval=0.01, max_duty=0.2)
    task = asyncio.create_task(writer.run())
    published = 0
    for i in range(100):  # 1 s of batches every 10 ms
        batch = batch_factory(50, seed=i, start_ts=1_767_000_000_000_000_000 + i * 10**8)
        await plant.submit(batch)
        published += len(batch)
        await asyncio.sleep(0.01)
    await plant.flush()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert store.applies <= 6
    await writer.drain()
    hw = await store.high_water()
    assert hw is not None and hw.offset == published == writer.applied_offset
    await store.aclose()
    await plant.stop()


async def test_a_slow_apply_rests_at_most_max_rest(tmp_path: Path, batch_factory) -> None:  # type: ignore[no-untyped-def]
    """An apply of ≥ 0.3 s would earn ≥ 2.7 s of rest at ``max_duty`` 0.1; the cap is 1 s, so
    ticks published meanwhile reach the store well before that."""
    plant = build(tmp_path / "journal")
    store = await SlowStore.open(tmp_path / "store.duckdb")
    assert isinstance(store, SlowStore)
    store.APPLY_S = 0.3
    writer = StoreWriter(store, plant.bus, after=0, flush_interval=0.01, max_duty=0.1)
    await plant.submit(batch_factory(50, seed=0))
    await plant.flush()
    task = asyncio.create_task(writer.run())
    await writer.wait_caught_up(50)  # the first apply is done: its rest starts now
    await plant.submit(batch_factory(50, seed=1, start_ts=1_767_000_100_000_000_000))
    await plant.flush()
    await asyncio.wait_for(writer.wait_caught_up(100), 2.5)  # uncapped: ≥ 2.7 s + an apply
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await store.aclose()
    await plant.stop()


async def test_max_duty_must_be_a_fraction(tmp_path: Path) -> None:
    plant = build(tmp_path / "journal")
    for duty in (0.0, 1.5):
        with pytest.raises(ValueError, match="max_duty"):
            StoreWriter(None, plant.bus, after=0, max_duty=duty)  # type: ignore[arg-type]
    await plant.stop()
