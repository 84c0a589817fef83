"""The tickplant and the in-process bus: ordering, positions, durability before publish."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

from tickwire.bus import InProcessBus
from tickwire.errors import InvalidTickError, JournalUnavailableError, PositionUnavailableError
from tickwire.journal import Journal, SyncPolicy, records
from tickwire.model import JournaledBatch, TickBatch
from tickwire.tickplant import CommitLimits, Tickplant

from .conftest import make_batch


def build(
    path: Path,
    *,
    ring_ticks: int = 1_000_000,
    sync: SyncPolicy = SyncPolicy.FSYNC,
    **limits: int,
) -> Tickplant:
    """A tickplant over a journal in ``path`` and an in-process bus."""
    journal, _ = Journal.open(path, sync=sync)
    bus = InProcessBus(
        epoch=journal.epoch,
        last_offset=journal.last_offset,
        history=lambda after, n: journal.read(after, max_ticks=n),
        ring_ticks=ring_ticks,
    )
    plant = Tickplant(journal, bus, limits=CommitLimits(**limits))
    plant.start()
    return plant


async def drain(plant: Tickplant, after: int, until: int) -> list[JournaledBatch]:
    """Consume the bus from ``after`` up to offset ``until``."""
    sub = plant.bus.subscribe(after)
    out: list[JournaledBatch] = []
    while not out or out[-1].last_offset < until:
        out.extend(await asyncio.wait_for(sub.next(), 5))
    return out


# fsync appends in a worker thread, none inline: both paths keep the guarantees
SYNC_POLICIES = pytest.mark.parametrize("sync", list(SyncPolicy))


@SYNC_POLICIES
async def test_offsets_and_seqs_are_gap_free(tmp_path: Path, sync: SyncPolicy) -> None:
    """Concurrent submissions get contiguous offsets and per-symbol seqs starting at 1."""
    plant = build(tmp_path, sync=sync)
    await asyncio.gather(*(plant.submit(make_batch(250, seed=i)) for i in range(8)))
    last = await plant.submit_durable(make_batch(1))
    assert last.last_offset == 2001
    batches = await drain(plant, 0, 2001)
    ticks = [t for b in batches for t in b.ticks()]
    assert [t.offset for t in ticks] == list(range(1, 2002))
    for name in ("EURUSD", "GBPUSD", "USDJPY"):
        seqs = [t.seq for t in ticks if t.symbol == name]
        assert seqs == list(range(1, len(seqs) + 1))
    await plant.stop()


async def test_restart_continues_positions(tmp_path: Path) -> None:
    """A new tickplant on the same journal continues offsets and seqs."""
    plant = build(tmp_path)
    await plant.submit_durable(make_batch(300))
    seq_before = dict(plant._seq)
    await plant.stop()
    plant = build(tmp_path)
    positioned = await plant.submit_durable(make_batch(30, symbols=("EURUSD",)))
    assert positioned.first_offset == 301
    assert positioned.seq.tolist() == list(
        range(seq_before["EURUSD"] + 1, seq_before["EURUSD"] + 31)
    )
    await plant.stop()


@SYNC_POLICIES
async def test_published_only_after_durable(tmp_path: Path, sync: SyncPolicy) -> None:
    """What a consumer sees is already readable from the journal on disk."""
    plant = build(tmp_path, sync=sync)
    sub = plant.bus.subscribe(0)
    consumer = asyncio.create_task(sub.next())
    await plant.submit(make_batch(500))
    seen = await asyncio.wait_for(consumer, 5)
    reread = plant.journal.read(0, max_ticks=10_000)
    assert sum(len(b) for b in reread) >= seen[-1].last_offset
    await plant.stop()


async def test_consumer_behind_the_ring_reads_the_journal(tmp_path: Path) -> None:
    """A consumer older than the ring is served from the journal, in order, without gaps."""
    plant = build(tmp_path, ring_ticks=1000)
    for i in range(10):
        await plant.submit_durable(make_batch(500, seed=i))
    assert plant.bus.ring.first_offset is not None and plant.bus.ring.first_offset > 1
    batches = await drain(plant, 10, 5000)
    offsets = np.concatenate([b.first_offset + np.arange(len(b)) for b in batches])
    assert offsets[0] == 11 and offsets[-1] == 5000 and (np.diff(offsets) == 1).all()
    await plant.stop()


async def test_position_ahead_of_the_bus_is_refused(tmp_path: Path) -> None:
    """Subscribing after an offset that was never published raises PositionUnavailableError."""
    plant = build(tmp_path)
    await plant.submit_durable(make_batch(10))
    with pytest.raises(PositionUnavailableError):
        plant.bus.subscribe(11)
    await plant.stop()


async def test_invalid_ticks_are_refused_whole(tmp_path: Path) -> None:
    """Crossed, non-finite or non-positive prices are refused before any offset is used."""
    plant = build(tmp_path)
    good = make_batch(5)
    for bad in (
        TickBatch(good.symbols, good.sym, good.ts, good.bid, good.bid - 1e-4),
        TickBatch(good.symbols, good.sym, good.ts, good.bid * np.nan, good.ask),
        TickBatch(good.symbols, good.sym, good.ts * 0, good.bid, good.ask),
    ):
        with pytest.raises(InvalidTickError):
            await plant.submit(bad)
    assert (await plant.submit_durable(good)).first_offset == 1
    await plant.stop()


async def test_group_commit_groups_concurrent_submissions(tmp_path: Path) -> None:
    """Submissions that arrive while a commit is in flight share the next journal record."""
    plant = build(tmp_path)
    await asyncio.gather(*(plant.submit_durable(make_batch(10, seed=i)) for i in range(200)))
    assert plant.committed_ticks == 2000
    assert plant.commits < 200
    await plant.stop()


async def test_full_queue_applies_backpressure(tmp_path: Path) -> None:
    """submit() waits while the queue holds queue_ticks, and resumes as commits drain it."""
    plant = build(tmp_path, queue_ticks=1000, max_ticks=500)
    await asyncio.wait_for(
        asyncio.gather(*(plant.submit(make_batch(400, seed=i)) for i in range(20))), 10
    )
    await plant.stop()
    assert plant.committed_ticks == 8000


@SYNC_POLICIES
async def test_a_refused_write_consumes_no_position(tmp_path: Path, sync: SyncPolicy) -> None:
    """When the journal refuses a group, its submitters get the error, nothing is published,
    and the next group takes the same offsets and seqs."""
    plant = build(tmp_path, sync=sync)
    first = await plant.submit_durable(make_batch(10))
    real_append = plant.journal.append

    def refuse(batch: JournaledBatch) -> None:
        plant.journal.append = real_append  # type: ignore[method-assign]
        raise JournalUnavailableError("journal write failed: No space left on device")

    plant.journal.append = refuse  # type: ignore[method-assign]
    with pytest.raises(JournalUnavailableError):
        await plant.submit_durable(make_batch(10, seed=1))
    assert plant.bus.last_offset == first.last_offset
    again = await plant.submit_durable(make_batch(10, seed=1))
    assert again.first_offset == first.last_offset + 1
    ticks = [t for b in await drain(plant, 0, again.last_offset) for t in b.ticks()]
    for name in {t.symbol for t in ticks}:
        seqs = [t.seq for t in ticks if t.symbol == name]
        assert seqs == list(range(1, len(seqs) + 1))
    await plant.stop()


async def test_a_read_never_returns_more_than_asked(tmp_path: Path) -> None:
    """The bus returns at most max_ticks (cutting a first batch that is larger), so a reader
    that asks for "up to here" never gets past it, from the ring or from the journal."""
    for ring_ticks in (1_000_000, 10):  # the ring, then the journal
        plant = build(tmp_path / str(ring_ticks), ring_ticks=ring_ticks)
        for seed in range(3):
            await plant.submit_durable(make_batch(10, seed=seed))
        sub = plant.bus.subscribe(0)
        got = await sub.next(max_ticks=5)
        assert sum(map(len, got)) == 5 and sub.after == 5
        got = await sub.next(max_ticks=12)  # the rest of batch 1, not all of batch 2
        assert sum(map(len, got)) == 5 and sub.after == 10
        got = await sub.next(max_ticks=15)
        assert sum(map(len, got)) == 10 and sub.after == 20
        await plant.stop()


async def test_without_sync_a_segment_switch_still_leaves_the_event_loop(tmp_path: Path) -> None:
    """With sync=none the append runs inline, except when it starts a segment (an fsync of the
    full one): that append runs in a worker thread. The record size is known in advance."""
    journal, _ = Journal.open(tmp_path, sync=SyncPolicy.NONE, segment_bytes=20_000)
    bus = InProcessBus(
        epoch=journal.epoch,
        last_offset=journal.last_offset,
        history=lambda after, n: journal.read(after, max_ticks=n),
    )
    plant = Tickplant(journal, bus)
    plant.start()
    switched_on: list[bool] = []
    start_segment = journal._start_segment

    def watched() -> None:
        switched_on.append(threading.current_thread() is threading.main_thread())
        start_segment()

    journal._start_segment = watched  # type: ignore[method-assign]
    for seed in range(10):
        batch = await plant.submit_durable(make_batch(100, seed=seed))
        assert records.ticks_record_size(batch) == len(records.encode_ticks_record(batch))
    assert switched_on and not any(switched_on)  # several switches, none on the loop
    assert [t.offset for b in await drain(plant, 0, 1000) for t in b.ticks()] == list(
        range(1, 1001)
    )
    await plant.stop()
