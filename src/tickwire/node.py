"""One tickwire node: the feed, tickplant, journal, bus, live state and store, wired together.

Start-up order (each step finishes before the next):

1. open and recover the journal (report torn tails and damage);
2. restore live state from the journal and open the store; the store writer replays whatever
   the store is missing;
3. backfill: generate history from ``max(now - backfill_days, last tick)`` to now, so a first
   start has 30 days of history and a restart has no hole; progress is reported;
4. run the live feed.

Shutdown stops the feed, commits every tick already accepted, closes the journal, brings the
store up to date and closes it: nothing accepted is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .bus import InProcessBus
from .catalog import CATALOG, Catalog
from .config import Settings
from .errors import JournalUnavailableError
from .feeds.simulator import Simulator, SimulatorConfig, SimulatorFeed
from .journal import Journal, RecoveryReport
from .livestate import LiveState
from .store.base import TickStore
from .store.duckdb import DuckDBStore
from .store.writer import StoreWriter
from .tickplant import CommitLimits, Tickplant

__all__ = ["BackfillProgress", "Node"]

log = logging.getLogger("tickwire.node")

MIN_BACKFILL_NS = 60 * 1_000_000_000
DAY_NS = 86_400 * 1_000_000_000
ProgressCallback = Callable[["BackfillProgress"], None]


@dataclass(slots=True)
class BackfillProgress:
    """How far the backfill has come, in simulated time and ticks."""

    start: int
    end: int
    reached: int
    ticks: int
    done: bool = False

    @property
    def fraction(self) -> float:
        span = self.end - self.start
        return 1.0 if span <= 0 else min(1.0, (self.reached - self.start) / span)


class Node:
    """A running tickwire node. Create with :meth:`start`, end with :meth:`stop`."""

    def __init__(
        self,
        settings: Settings,
        *,
        catalog: Catalog,
        journal: Journal,
        recovery: RecoveryReport,
        bus: InProcessBus,
        live: LiveState,
        tickplant: Tickplant,
        store: TickStore,
        writer: StoreWriter,
        simulator: Simulator,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.journal = journal
        self.recovery = recovery
        self.bus = bus
        self.live = live
        self.tickplant = tickplant
        self.store = store
        self.writer = writer
        self.simulator = simulator
        self.backfill: BackfillProgress | None = None
        self.started_at = time.time()
        self._tasks: list[asyncio.Task[None]] = []
        self.feed_error: str | None = None

    @classmethod
    async def start(
        cls,
        settings: Settings,
        *,
        catalog: Catalog = CATALOG,
        progress: ProgressCallback | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> Node:
        """Open everything, start the store writer, then backfill and the live feed in a task."""
        data_dir = settings.data_dir
        journal, recovery = await asyncio.to_thread(
            Journal.open,
            data_dir / "journal",
            segment_bytes=settings.segment_mb * 1024 * 1024,
            sync=settings.sync,
        )
        _log_recovery(recovery)
        bus = InProcessBus(
            epoch=journal.epoch,
            last_offset=journal.last_offset,
            history=lambda after, n: journal.read(after, max_ticks=n),
            ring_ticks=settings.ring_ticks,
        )
        live = LiveState()
        live.restore(journal.epoch, journal.state)
        tickplant = Tickplant(
            journal,
            bus,
            limits=CommitLimits(
                max_ticks=settings.commit_max_ticks,
                max_delay=settings.commit_delay_ms / 1000,
                queue_ticks=settings.queue_ticks,
            ),
            on_commit=live.apply,
        )
        try:
            store = await DuckDBStore.open(data_dir / "store.duckdb")
        except BaseException:
            journal.close()
            raise
        high_water = await store.high_water()
        epoch_start = journal.epoch_first_offset
        if high_water is not None and high_water.epoch == journal.epoch:
            after = min(high_water.offset, journal.last_offset)
        else:
            after = epoch_start - 1
        writer = StoreWriter(store, bus, after=after, flush_interval=settings.store_flush_ms / 1000)
        start_mids = {name: (st.bid + st.ask) / 2 for name, st in journal.state.items()}
        simulator = Simulator(
            SimulatorConfig(
                seed=settings.seed,
                rate=settings.rate,
                weekend_closed=settings.weekend_closed,
                load_rate=settings.load_rate,
                step=settings.sim_step_ms / 1000,
            ),
            catalog,
            start_mids=start_mids or None,
        )
        node = cls(
            settings,
            catalog=catalog,
            journal=journal,
            recovery=recovery,
            bus=bus,
            live=live,
            tickplant=tickplant,
            store=store,
            writer=writer,
            simulator=simulator,
        )
        tickplant.start()
        node._tasks.append(asyncio.create_task(node._run_writer(), name="store-writer"))
        node._tasks.append(asyncio.create_task(node._run_feed(progress, clock), name="feed"))
        if settings.tick_retention_days > 0:
            node._tasks.append(asyncio.create_task(node._run_retention(clock), name="retention"))
        return node

    @property
    def ready(self) -> bool:
        """Backfill done (its ticks are in the store) and the journal accepts writes."""
        return self.backfill is not None and self.backfill.done and self.tickplant.failure is None

    def health(self) -> dict[str, Any]:
        """The /health document: status, stream position and what each part is doing."""
        failure = self.tickplant.failure or self.feed_error
        if failure:
            status = "degraded"
        elif not self.ready:
            status = "starting"
        else:
            status = "ok"
        backfill = self.backfill
        return {
            "status": status,
            "epoch": self.journal.epoch,
            "offset": self.journal.last_offset,
            "store_offset": self.writer.applied_offset,
            "store_lag": self.writer.lag,
            "ticks_committed": self.tickplant.committed_ticks,
            "symbols": len(self.live.quotes()),
            "backfill": None
            if backfill is None
            else {
                "done": backfill.done,
                "progress": round(backfill.fraction, 4),
                "ticks": backfill.ticks,
            },
            "problems": [
                p for p in (self.tickplant.failure, self.feed_error, self.writer.failure) if p
            ],
            "recovery": {
                "truncated_bytes": self.recovery.truncated_bytes,
                "dropped": [
                    {"from_offset": d.first_offset, "reason": d.reason, "copy": d.path}
                    for d in self.recovery.dropped
                ],
                "new_epoch": self.recovery.new_epoch,
            },
            "uptime_s": round(time.time() - self.started_at, 3),
        }

    async def stop(self) -> None:
        """Stop the feed, commit what was accepted, flush the journal and the store."""
        feed_tasks = [t for t in self._tasks if t.get_name() in ("feed", "retention")]
        for task in feed_tasks:
            task.cancel()
        for task in feed_tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.tickplant.stop()
        writer_tasks = [t for t in self._tasks if t.get_name() == "store-writer"]
        for task in writer_tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        try:
            await asyncio.wait_for(self.writer.drain(), 60)
            log.info("store caught up at offset %d", self.writer.applied_offset)
        except Exception:
            log.exception("store could not catch up; the journal replays it at next start")
        await self.bus.aclose()
        await self.store.aclose()

    # -- tasks ------------------------------------------------------------------------------

    async def _run_writer(self) -> None:
        await self.writer.run()

    async def _run_feed(self, progress: ProgressCallback | None, clock: Callable[[], int]) -> None:
        try:
            end = await self._backfill(progress, clock)
            feed = SimulatorFeed(self.simulator, clock=clock, start_ns=end)
            async with feed:
                while True:
                    batch = await feed.next_batch()
                    if batch is None:
                        return
                    try:
                        await self.tickplant.submit(batch)
                        self.feed_error = None
                    except JournalUnavailableError as exc:
                        self.feed_error = f"feed paused: {exc}"
                        await asyncio.sleep(1)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.feed_error = f"feed failed: {exc}"
            log.exception("feed failed")

    async def _backfill(self, progress: ProgressCallback | None, clock: Callable[[], int]) -> int:
        settings = self.settings
        now = clock()
        last_ts = max((st.ts for st in self.journal.state.values()), default=0)
        start = max(now - int(settings.backfill_days * DAY_NS), last_ts + 1)
        state = BackfillProgress(start=start, end=now, reached=start, ticks=0)
        self.backfill = state
        if settings.backfill_days <= 0 or now - start < MIN_BACKFILL_NS:
            state.reached, state.done = now, True
            if progress:
                progress(state)
            return max(now, last_ts + 1)
        log.info("backfill: generating %.1f days of history", (now - start) / DAY_NS)
        generator = self.simulator.history(start, now, rate=settings.backfill_rate)
        while True:
            batch = await asyncio.to_thread(next, generator, None)
            if batch is None:
                break
            if len(batch):
                await self.tickplant.submit(batch)
                state.ticks += len(batch)
                state.reached = int(batch.ts[-1])
            if progress:
                progress(state)
        await self.tickplant.flush()
        # history must be queryable before the node calls itself ready
        await self.writer.wait_caught_up(self.journal.last_offset)
        state.reached, state.done = now, True
        if progress:
            progress(state)
        log.info("backfill: %d ticks", state.ticks)
        return now

    async def _run_retention(self, clock: Callable[[], int]) -> None:
        keep_ns = int(self.settings.tick_retention_days * DAY_NS)
        while True:
            try:
                dropped = await self.store.prune_ticks(clock() - keep_ns)
                if dropped:
                    log.info("retention: dropped %d raw ticks (bars kept)", dropped)
                segments = await asyncio.to_thread(
                    self.journal.drop_segments,
                    up_to_offset=self.writer.applied_offset,
                    older_than=clock() / 1e9 - keep_ns / 1e9,
                )
                if segments:
                    log.info("retention: deleted %d journal segment(s)", segments)
            except Exception:
                log.exception("retention failed")
            await asyncio.sleep(3600)


def _log_recovery(report: RecoveryReport) -> None:
    log.info(
        "journal: epoch %d, last offset %d, %d segment(s), scanned %d ticks in %.2f s",
        report.epoch,
        report.last_offset,
        report.segments,
        report.ticks_scanned,
        report.seconds,
    )
    if report.truncated_bytes:
        log.warning("journal: truncated %d bytes of torn tail", report.truncated_bytes)
    for span in report.dropped:
        log.error("journal: DROPPED offsets from %d on: %s", span.first_offset, span.reason)
