"""The tickplant: the single ordered writer of ticks.

Feeds :meth:`~Tickplant.submit` batches. One writer task takes everything pending (a group
commit), gives each tick its global ``offset`` and per-symbol ``seq`` (both gap-free),
appends the group to the journal as one record, and only when the journal has made it durable
publishes it on the bus and applies it to the live state. With :attr:`SyncPolicy.FSYNC` the
append (write and ``fdatasync``) runs in a worker thread; without sync it is a page-cache write,
done inline.

Guarantees:

* A tick is visible on the bus only after :meth:`Journal.append` has returned for it.
* Live state (``on_commit``) is applied after publishing; under load with fsync it runs while
  the next group is being written and synced, so it may trail the bus by one commit, never by
  more (without sync there is nothing to overlap: it is applied at once).
* Offsets and seqs have no gap and no duplicate, across restarts (they continue from the
  journal's recovered state).
* The submission queue is bounded (``queue_ticks``): :meth:`submit` waits when it is full,
  which slows the feed instead of growing memory.
* When the journal refuses writes (disk full, unwritable directory), the pending ticks are
  refused with :class:`JournalUnavailableError`, nothing is published, offsets are not
  consumed, and :attr:`failure` says why until a later write succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .bus.base import Bus
from .errors import InvalidTickError, JournalUnavailableError
from .journal import Journal, SyncPolicy
from .model import JournaledBatch, TickBatch, merge_symbols

__all__ = ["CommitLimits", "Tickplant"]

log = logging.getLogger("tickwire.tickplant")


@dataclass(frozen=True, slots=True, kw_only=True)
class CommitLimits:
    """Group commit and backpressure limits.

    ``max_ticks``: most ticks in one journal record. ``max_delay``: seconds the writer may wait
    for a group to fill before committing (0 commits as soon as the previous commit is done,
    which already groups everything that arrived meanwhile). ``queue_ticks``: most ticks waiting
    to be committed before :meth:`Tickplant.submit` blocks.
    """

    max_ticks: int = 100_000
    max_delay: float = 0.0
    queue_ticks: int = 1_000_000


@dataclass(slots=True)
class _Pending:
    batch: TickBatch
    done: asyncio.Future[JournaledBatch] | None = field(default=None)


class Tickplant:
    """Orders, journals and publishes ticks; see the module docstring."""

    def __init__(
        self,
        journal: Journal,
        bus: Bus,
        *,
        limits: CommitLimits = CommitLimits(),
        on_commit: Callable[[JournaledBatch], None] | None = None,
    ) -> None:
        self.journal = journal
        self.bus = bus
        self.limits = limits
        self._on_commit = on_commit
        self._seq: dict[str, int] = {name: st.seq for name, st in journal.state.items()}
        self._pending: deque[_Pending] = deque()
        self._pending_ticks = 0
        self._has_work = asyncio.Event()
        self._has_room = asyncio.Event()
        self._has_room.set()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self.committed_ticks = 0
        self._submitted_ticks = 0
        self._settled_ticks = 0  # committed or refused
        self._settled = asyncio.Event()
        self._deferred: JournaledBatch | None = None
        self.commits = 0

    @property
    def epoch(self) -> int:
        return self.journal.epoch

    @property
    def last_offset(self) -> int:
        return self.journal.last_offset

    @property
    def failure(self) -> str | None:
        """Why the journal refused the last write, or None while it accepts writes."""
        return self.journal.failure

    def start(self) -> None:
        if self._writer is None:
            self._writer = asyncio.create_task(self._run(), name="tickplant-writer")

    async def stop(self) -> None:
        """Commit everything already submitted, then stop and close the journal."""
        self._closing = True
        self._has_work.set()
        if self._writer is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        await asyncio.to_thread(self.journal.close)

    async def submit(self, batch: TickBatch) -> None:
        """Queue ``batch`` for the next commit; waits while the queue is full.

        Raises :class:`InvalidTickError` (nothing of the batch is taken) or
        :class:`JournalUnavailableError` when the tickplant is stopping.
        """
        self._enqueue(batch, None)
        await self._wait_for_room()

    async def flush(self) -> None:
        """Wait until every tick submitted so far has been committed (or refused)."""
        target = self._submitted_ticks
        while self._settled_ticks < target:
            self._settled.clear()
            await self._settled.wait()

    async def submit_durable(self, batch: TickBatch) -> JournaledBatch:
        """Queue ``batch`` and wait until it is durable and published; return its positions."""
        done: asyncio.Future[JournaledBatch] = asyncio.get_running_loop().create_future()
        self._enqueue(batch, done)
        return await done

    def _enqueue(self, batch: TickBatch, done: asyncio.Future[JournaledBatch] | None) -> None:
        if self._closing:
            raise JournalUnavailableError("tickplant is stopping")
        if len(batch) == 0:
            if done is not None:
                done.set_result(self._empty())
            return
        _validate(batch)
        self._pending.append(_Pending(batch, done))
        self._submitted_ticks += len(batch)
        self._pending_ticks += len(batch)
        if self._pending_ticks >= self.limits.queue_ticks:
            self._has_room.clear()
        self._has_work.set()

    async def _wait_for_room(self) -> None:
        while not self._has_room.is_set():
            await self._has_room.wait()

    def _empty(self) -> JournaledBatch:
        z = np.zeros(0)
        return JournaledBatch(
            self.epoch,
            self.last_offset + 1,
            (),
            z.astype(np.uint16),
            z.astype(np.uint64),
            z.astype(np.int64),
            z,
            z,
        )

    async def _run(self) -> None:
        while True:
            await self._has_work.wait()
            if self.limits.max_delay > 0 and not self._closing:
                await asyncio.sleep(self.limits.max_delay)
            group = self._take_group()
            if not group:
                self._apply_deferred()
                self._has_work.clear()
                if self._closing:
                    return
                continue
            await self._commit(group)

    def _take_group(self) -> list[_Pending]:
        """Everything pending, up to ``max_ticks`` (but always at least one batch)."""
        group: list[_Pending] = []
        ticks = 0
        pending = self._pending
        while pending and (not group or ticks + len(pending[0].batch) <= self.limits.max_ticks):
            item = pending.popleft()
            group.append(item)
            ticks += len(item.batch)
        self._pending_ticks -= ticks
        if self._pending_ticks < self.limits.queue_ticks:
            self._has_room.set()
        return group

    async def _commit(self, group: list[_Pending]) -> None:
        try:
            await self._commit_group(group)
        finally:
            self._settled_ticks += sum(len(item.batch) for item in group)
            self._settled.set()

    async def _commit_group(self, group: list[_Pending]) -> None:
        batch = self._position(group)
        journal = self.journal
        try:
            if journal.sync_policy is SyncPolicy.NONE and not journal.starts_segment(batch):
                # no sync: the write only reaches the page cache, cheaper inline than a thread
                # hop, and the ticks reach the bus in this same event-loop step
                self._apply_deferred()
                journal.append(batch)
            else:  # an fsync (per commit, or of a full segment) never runs on the event loop
                append = asyncio.ensure_future(asyncio.to_thread(journal.append, batch))
                # live-state work of the previous commit overlaps this commit's write and sync
                self._apply_deferred()
                await append
        except JournalUnavailableError as exc:
            self._rollback_seq(batch)
            log.error("tickplant: %s; %d ticks refused", exc, len(batch))
            for item in group:
                if item.done is not None and not item.done.done():
                    item.done.set_exception(exc)
            return
        except BaseException:
            self._rollback_seq(batch)
            raise
        await self.bus.publish(batch)
        if self._on_commit is not None:
            if self._pending and journal.sync_policy is SyncPolicy.FSYNC:
                self._deferred = batch  # applied while the next group is written and synced
            else:
                self._on_commit(batch)
        self.committed_ticks += len(batch)
        self.commits += 1
        start = 0
        for item in group:
            n = len(item.batch)
            if item.done is not None and not item.done.done():
                part = batch.since(batch.first_offset + start - 1).head(n)
                item.done.set_result(part)
            start += n

    def _apply_deferred(self) -> None:
        batch, self._deferred = self._deferred, None
        if batch is not None and self._on_commit is not None:
            self._on_commit(batch)

    def _position(self, group: list[_Pending]) -> JournaledBatch:
        """Merge a group into one batch with offsets and per-symbol seqs."""
        symbols, sym = merge_symbols([(item.batch.symbols, item.batch.sym) for item in group])
        # seq = previous seq of the symbol + rank of the tick among its symbol's ticks + 1
        n = len(sym)
        order = np.argsort(sym, kind="stable")
        counts = np.bincount(sym, minlength=len(symbols))
        group_start = np.concatenate(([0], np.cumsum(counts)[:-1]))
        rank = np.empty(n, dtype=np.uint64)
        rank[order] = np.arange(n, dtype=np.uint64) - group_start[sym[order]].astype(np.uint64)
        base = np.array([self._seq.get(s, 0) for s in symbols], dtype=np.uint64)
        seq = base[sym] + rank + np.uint64(1)
        for i, s in enumerate(symbols):
            self._seq[s] = int(base[i]) + int(counts[i])

        def cat(attr: str) -> Any:
            arrays = [getattr(item.batch, attr) for item in group]
            return np.concatenate(arrays) if len(arrays) > 1 else arrays[0]

        return JournaledBatch(
            self.epoch,
            self.last_offset + 1,
            symbols,
            sym,
            seq,
            cat("ts"),
            cat("bid"),
            cat("ask"),
        )

    def _rollback_seq(self, batch: JournaledBatch) -> None:
        counts = np.bincount(batch.sym, minlength=len(batch.symbols))
        for i, s in enumerate(batch.symbols):
            self._seq[s] -= int(counts[i])


def _validate(batch: TickBatch) -> None:
    if len(batch.symbols) > 65_535 or (len(batch) and int(batch.sym.max()) >= len(batch.symbols)):
        raise InvalidTickError("tick refers to a symbol outside its batch's dictionary")
    if not (np.isfinite(batch.bid).all() and np.isfinite(batch.ask).all()):
        raise InvalidTickError("tick prices must be finite")
    if (batch.bid <= 0).any() or (batch.ask < batch.bid).any():
        raise InvalidTickError("tick prices must be positive with ask >= bid")
    if (batch.ts <= 0).any():
        raise InvalidTickError("tick timestamps must be positive UTC nanoseconds")
