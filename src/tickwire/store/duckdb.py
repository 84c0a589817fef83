"""The embedded history store: one DuckDB file.

Schema (``SCHEMA_VERSION`` 1)::

    meta      one row: schema_version, hw_epoch, hw_offset (the high-water Position, NULL = empty)
    symbols   id USMALLINT, code VARCHAR                  symbol codes ↔ small ids
    ticks     sym_id, epoch, "offset", seq, ts, bid, ask   raw ticks in arrival (offset) order
    bars_1m   sym_id, minute,                              1-minute rollup, kept for good
              o_ts, o_epoch, o_offset, o_bid, o_ask,      the opening tick: key and prices
              c_ts, c_epoch, c_offset, c_bid, c_ask,      the closing tick
              h_bid, l_bid, h_ask, l_ask, h_mid, l_mid, n

All times are UTC nanoseconds in BIGINT columns. Tables have no index: rows arrive roughly in
time order, so DuckDB's per-row-group min/max (zone maps) on ``ts`` and ``minute`` let a time
filter skip everything outside the range.

Writes (:meth:`DuckDBStore.apply`) take one transaction: insert the ticks past the high-water
mark, merge their minute bars into ``bars_1m`` (open by the smallest ``(ts, epoch, offset)``
key, close by the largest, high/low by max/min, counts summed), move the high-water mark. A late
tick, with a ``ts`` earlier than ticks already stored, lands in its own minute and becomes that
minute's open if its key is the smallest. Replay is exact: ticks at or below the high-water mark
are skipped.

Reads: second bars are aggregated from raw ticks; every resolution whose width is a whole number
of minutes is re-aggregated from ``bars_1m`` (opens and closes by minute, which cannot tie), so it
survives :meth:`DuckDBStore.prune_ticks`. Both agree float for float with :mod:`tickwire.bars`.

Threads: DuckDB calls block, so none runs on the event loop. One writer thread owns the
connection; reads run on ``read_threads`` threads, each with its own cursor (a connection to the
same database, reading a consistent snapshot). At most ``max_pending_reads`` reads and
``max_pending_writes`` writes are queued or running; further callers wait for a slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import duckdb
import numpy as np
import numpy.typing as npt

from .. import bars as barlib
from ..errors import StoreError
from ..model import BarUnit, JournaledBatch, Position, PriceSide
from ..timeframes import NS_PER, Resolution
from .base import BarColumns, TickColumns, TickCursor, TickStore

__all__ = ["SCHEMA_VERSION", "WRITER_NICE", "DuckDBStore"]

log = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 1
MINUTE_NS: Final = NS_PER[BarUnit.MINUTE]
MAX_SYMBOLS: Final = 65_535
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

T = TypeVar("T")
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
U16 = npt.NDArray[np.uint16]
Connection = duckdb.DuckDBPyConnection

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (
    schema_version INTEGER NOT NULL,
    hw_epoch BIGINT,
    hw_offset BIGINT
);
CREATE TABLE IF NOT EXISTS symbols (
    id USMALLINT PRIMARY KEY,
    code VARCHAR NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS ticks (
    sym_id USMALLINT NOT NULL,
    epoch BIGINT NOT NULL,
    "offset" BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    ts BIGINT NOT NULL,
    bid DOUBLE NOT NULL,
    ask DOUBLE NOT NULL
);
CREATE TABLE IF NOT EXISTS bars_1m (
    sym_id USMALLINT NOT NULL,
    minute BIGINT NOT NULL,
    o_ts BIGINT NOT NULL,
    o_epoch BIGINT NOT NULL,
    o_offset BIGINT NOT NULL,
    o_bid DOUBLE NOT NULL,
    o_ask DOUBLE NOT NULL,
    c_ts BIGINT NOT NULL,
    c_epoch BIGINT NOT NULL,
    c_offset BIGINT NOT NULL,
    c_bid DOUBLE NOT NULL,
    c_ask DOUBLE NOT NULL,
    h_bid DOUBLE NOT NULL,
    l_bid DOUBLE NOT NULL,
    h_ask DOUBLE NOT NULL,
    l_ask DOUBLE NOT NULL,
    h_mid DOUBLE NOT NULL,
    l_mid DOUBLE NOT NULL,
    n BIGINT NOT NULL
);
"""

_ROLLUP_COLUMNS: Final = (
    "sym_id, minute, o_ts, o_epoch, o_offset, o_bid, o_ask, c_ts, c_epoch, c_offset, c_bid, c_ask,"
    " h_bid, l_bid, h_ask, l_ask, h_mid, l_mid, n"
)


def _merge_sql() -> str:
    """UPDATE existing minutes of ``bars_1m`` with the batch's minute bars in ``nb``."""
    new_open = "(nb.o_ts, nb.o_epoch, nb.o_offset) < (b.o_ts, b.o_epoch, b.o_offset)"
    new_close = "(nb.c_ts, nb.c_epoch, nb.c_offset) > (b.c_ts, b.c_epoch, b.c_offset)"
    sets = [
        f"{p}_{c} = CASE WHEN {cond} THEN nb.{p}_{c} ELSE b.{p}_{c} END"
        for p, cond in (("o", new_open), ("c", new_close))
        for c in ("ts", "epoch", "offset", "bid", "ask")
    ]
    sets += [f"h_{s} = greatest(b.h_{s}, nb.h_{s})" for s in ("bid", "ask", "mid")]
    sets += [f"l_{s} = least(b.l_{s}, nb.l_{s})" for s in ("bid", "ask", "mid")]
    sets.append("n = b.n + nb.n")
    return (
        "UPDATE bars_1m AS b SET "
        + ", ".join(sets)
        + " FROM nb WHERE b.sym_id = nb.sym_id AND b.minute = nb.minute"
        " AND b.minute BETWEEN $lo AND $hi"
    )


_MERGE_SQL: Final = _merge_sql()
_INSERT_NEW_SQL: Final = (
    f"INSERT INTO bars_1m SELECT {_ROLLUP_COLUMNS} FROM nb WHERE NOT EXISTS ("
    " SELECT 1 FROM bars_1m AS b WHERE b.sym_id = nb.sym_id AND b.minute = nb.minute"
    " AND b.minute BETWEEN $lo AND $hi)"
)

# per side: (open, high, low, close) expressions over bars_1m
_ROLLUP_SIDE: Final = {
    PriceSide.BID: ("o_bid", "h_bid", "l_bid", "c_bid"),
    PriceSide.ASK: ("o_ask", "h_ask", "l_ask", "c_ask"),
    PriceSide.MID: ("(o_bid + o_ask) / 2", "h_mid", "l_mid", "(c_bid + c_ask) / 2"),
}
_TICK_PRICE: Final = {
    PriceSide.BID: "bid",
    PriceSide.ASK: "ask",
    PriceSide.MID: "(bid + ask) / 2",
}


def _bucket_sql(column: str) -> str:
    """Bucket start of ``column`` for ``$anchor`` and ``$width``, as timeframes.bucket_start.

    DuckDB's ``%`` truncates toward zero; a negative remainder (before the anchor) is moved to
    the floor without adding ``$width`` first, which could overflow for very wide buckets.
    """
    rem = f"(({column} - $anchor) % $width)"
    return f"({column} - {rem} - CASE WHEN {rem} < 0 THEN $width ELSE 0 END)"


def _first_boundary(t: int, resolution: Resolution) -> int:
    """The first bucket boundary at or after ``t``."""
    width, anchor = resolution.width_ns, resolution.anchor_ns
    return anchor + -((anchor - t) // width) * width


def _uses_rollup(resolution: Resolution) -> bool:
    return resolution.width_ns % MINUTE_NS == 0 and resolution.anchor_ns % MINUTE_NS == 0


def _tick_order(ts: I64, epoch: I64, offset: I64) -> I64 | None:
    """None if the ticks are already ordered by ``(ts, epoch, offset)``, else the permutation."""
    d_ts = np.diff(ts)
    if bool(np.all(d_ts > 0)):
        return None
    d_epoch, d_offset = np.diff(epoch), np.diff(offset)
    later = (d_epoch > 0) | ((d_epoch == 0) & (d_offset > 0))
    if bool(np.all((d_ts > 0) | ((d_ts == 0) & later))):
        return None
    order: I64 = np.lexsort((offset, epoch, ts)).astype(np.int64, copy=False)
    return order


def _empty_bars(symbol: str) -> BarColumns:
    i, f = np.empty(0, np.int64), np.empty(0, np.float64)
    return BarColumns(symbol, i, f, f, f, f, i)


def _empty_ticks(symbol: str) -> TickColumns:
    i, f = np.empty(0, np.int64), np.empty(0, np.float64)
    return TickColumns(symbol, i, i, i, i, f, f)


def _i64(value: Any) -> I64:
    return np.ascontiguousarray(value, dtype=np.int64)


def _f64(value: Any) -> F64:
    return np.ascontiguousarray(value, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class _Prepared:
    """One apply's new ticks as columns, the symbols to add, and the resulting high water."""

    ticks: dict[str, npt.NDArray[Any]]
    rollup: dict[str, npt.NDArray[Any]]
    new_symbols: dict[str, int]
    high_water: Position


class DuckDBStore(TickStore):
    """The embedded :class:`TickStore`; create it with :meth:`open`, never directly."""

    def __init__(
        self,
        con: Connection,
        writer: ThreadPoolExecutor,
        readers: ThreadPoolExecutor,
        cursors: queue.Queue[Connection],
        high_water: Position | None,
        symbol_ids: dict[str, int],
        *,
        max_pending_reads: int,
        max_pending_writes: int,
    ) -> None:
        self._con = con
        self._writer = writer
        self._readers = readers
        self._cursors = cursors
        self._hw = high_water
        self._symbol_ids = symbol_ids
        self._read_slots = asyncio.Semaphore(max_pending_reads)
        self._write_slots = asyncio.Semaphore(max_pending_writes)
        self._closed = False
        self._close_task: asyncio.Task[None] | None = None

    # -- lifecycle --------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        read_threads: int = 2,
        max_pending_reads: int = 64,
        max_pending_writes: int = 4,
    ) -> DuckDBStore:
        """Open the store file at ``path``, creating it (and its directory and schema) if needed.

        ``read_threads`` threads run queries, each on its own cursor. At most
        ``max_pending_reads`` queries and ``max_pending_writes`` writes (apply, prune) are
        queued or running at once; further callers wait for a slot. Raises StoreError if the
        file cannot be opened or holds another schema version.
        """
        if read_threads < 1 or max_pending_reads < 1 or max_pending_writes < 1:
            raise ValueError("read_threads and the pending limits must be at least 1")
        writer = ThreadPoolExecutor(
            1, thread_name_prefix="tickwire-store-writer", initializer=_background_priority
        )
        opening = writer.submit(_open_sync, Path(path), read_threads)
        try:
            con, hw, ids, cursors = await asyncio.wrap_future(opening)
        except BaseException:
            opening.add_done_callback(_close_if_opened)  # cancelled while connecting
            writer.shutdown(wait=False)
            raise
        readers = ThreadPoolExecutor(read_threads, thread_name_prefix="tickwire-store-reader")
        return cls(
            con,
            writer,
            readers,
            cursors,
            hw,
            ids,
            max_pending_reads=max_pending_reads,
            max_pending_writes=max_pending_writes,
        )

    async def aclose(self) -> None:
        if self._close_task is None:
            self._closed = True
            self._close_task = asyncio.create_task(self._close())
        await asyncio.shield(self._close_task)

    async def _close(self) -> None:
        try:
            # the writer is FIFO: this runs after every write already queued
            await asyncio.wrap_future(self._writer.submit(self._close_sync))
        finally:
            self._writer.shutdown(wait=False)

    def _close_sync(self) -> None:
        self._readers.shutdown(wait=True)  # lets queued reads finish first
        try:
            while not self._cursors.empty():
                self._cursors.get_nowait().close()
            self._con.execute("CHECKPOINT")
        except duckdb.Error as exc:
            raise StoreError(f"closing the store failed: {exc}") from exc
        finally:
            self._con.close()

    async def __aenter__(self) -> DuckDBStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- running blocking work --------------------------------------------------------------

    async def _submit(self, executor: Executor, slots: asyncio.Semaphore, fn: Callable[[], T]) -> T:
        """Run ``fn`` on ``executor``; the slot is held until the job ends, even if cancelled."""
        loop = asyncio.get_running_loop()
        await slots.acquire()
        try:
            if self._closed:
                raise StoreError("the store is closed")
            future: Future[T] = executor.submit(fn)
        except BaseException:
            slots.release()
            raise

        def release(_: object) -> None:
            try:
                loop.call_soon_threadsafe(slots.release)
            except RuntimeError:  # the loop is gone; nobody waits for the slot any more
                pass

        future.add_done_callback(release)
        return await asyncio.wrap_future(future)

    async def _write(self, fn: Callable[[], T]) -> T:
        return await self._submit(self._writer, self._write_slots, fn)

    async def _read(self, fn: Callable[[Connection], T]) -> T:
        def job() -> T:
            cursor = self._cursors.get_nowait()  # never empty: one cursor per reader thread
            try:
                return fn(cursor)
            except duckdb.Error as exc:
                raise StoreError(f"store query failed: {exc}") from exc
            finally:
                self._cursors.put_nowait(cursor)

        return await self._submit(self._readers, self._read_slots, job)

    # -- writes -----------------------------------------------------------------------------

    async def high_water(self) -> Position | None:
        return self._hw

    async def apply(self, batches: Sequence[JournaledBatch]) -> None:
        """Store the ticks after the high-water mark and merge their bars, in one transaction.

        Raises StoreError if a batch would leave a gap after the high-water mark within the
        same epoch (the store must stay a prefix of the journal). A new, larger epoch may start
        at any offset. If the caller is cancelled, a transaction already running still
        completes; :meth:`high_water` tells what is stored.
        """
        if not batches:
            return
        await self._write(lambda: self._apply_sync(batches))

    def _apply_sync(self, batches: Sequence[JournaledBatch]) -> None:
        prepared = self._prepare(batches)
        if prepared is None:
            return
        con = self._con
        rollup = prepared.rollup
        bounds = {"lo": int(rollup["minute"].min()), "hi": int(rollup["minute"].max())}
        try:
            con.begin()
            try:
                for code, sym_id in prepared.new_symbols.items():
                    con.execute("INSERT INTO symbols VALUES ($1, $2)", [sym_id, code])
                con.register("nt", prepared.ticks)
                con.execute(
                    'INSERT INTO ticks SELECT sym_id, epoch, "offset", seq, ts, bid, ask FROM nt'
                )
                con.register("nb", rollup)
                con.execute(_MERGE_SQL, bounds)
                con.execute(_INSERT_NEW_SQL, bounds)
                hw = prepared.high_water
                con.execute("UPDATE meta SET hw_epoch = $1, hw_offset = $2", [hw.epoch, hw.offset])
                con.commit()
            except BaseException:
                with contextlib.suppress(duckdb.Error):  # keep the first error
                    con.rollback()
                raise
            finally:
                con.unregister("nt")
                con.unregister("nb")
        except duckdb.Error as exc:
            raise StoreError(f"storing ticks failed: {exc}") from exc
        self._symbol_ids.update(prepared.new_symbols)
        self._hw = prepared.high_water

    def _prepare(self, batches: Sequence[JournaledBatch]) -> _Prepared | None:
        """Cut the batches at the high-water mark and build the tick and rollup columns."""
        hw = self._hw
        parts: list[JournaledBatch] = []
        for batch in batches:
            if hw is not None and batch.epoch <= hw.epoch:
                if batch.epoch < hw.epoch or batch.last_offset <= hw.offset:
                    continue
                if batch.first_offset > hw.offset + 1:
                    raise StoreError(
                        f"gap: the store holds up to {hw}, the next batch starts at "
                        f"{batch.epoch}:{batch.first_offset}"
                    )
                batch = batch.since(hw.offset)
            if len(batch) == 0:
                continue
            parts.append(batch)
            hw = Position(batch.epoch, batch.last_offset)
        if not parts or hw is None:
            return None

        ids = self._symbol_ids
        new_symbols: dict[str, int] = {}
        sym_parts: list[U16] = []
        for batch in parts:
            lut = np.empty(len(batch.symbols), dtype=np.uint16)
            for i, code in enumerate(batch.symbols):
                sym_id = ids.get(code)
                if sym_id is None:
                    sym_id = new_symbols.get(code)
                if sym_id is None:
                    sym_id = len(ids) + len(new_symbols)
                    if sym_id > MAX_SYMBOLS:
                        raise StoreError(f"too many symbols (at most {MAX_SYMBOLS})")
                    new_symbols[code] = sym_id
                lut[i] = sym_id
            sym_parts.append(lut[batch.sym])

        sym = np.concatenate(sym_parts)
        epoch = np.concatenate([np.full(len(b), b.epoch, dtype=np.int64) for b in parts])
        offset = np.concatenate(
            [np.arange(b.first_offset, b.last_offset + 1, dtype=np.int64) for b in parts]
        )
        seq = np.concatenate([b.seq for b in parts]).astype(np.int64)
        ts = np.concatenate([b.ts for b in parts]).astype(np.int64, copy=False)
        bid = np.concatenate([b.bid for b in parts]).astype(np.float64, copy=False)
        ask = np.concatenate([b.ask for b in parts]).astype(np.float64, copy=False)
        ticks = {
            "sym_id": sym,
            "epoch": epoch,
            "offset": offset,
            "seq": seq,
            "ts": ts,
            "bid": bid,
            "ask": ask,
        }

        minute = ts - ts % MINUTE_NS
        grouping = barlib.group(ts, offset, minute, epoch=epoch, by=sym)
        b_bars = barlib.ohlc(grouping, bid)
        a_bars = barlib.ohlc(grouping, ask)
        m_bars = barlib.ohlc(grouping, barlib.mid(bid, ask))
        oi, ci = grouping.open_index, grouping.close_index
        assert grouping.by is not None
        rollup: dict[str, npt.NDArray[Any]] = {
            "sym_id": grouping.by,
            "minute": grouping.start,
            "o_ts": ts[oi],
            "o_epoch": epoch[oi],
            "o_offset": offset[oi],
            "o_bid": b_bars.open,
            "o_ask": a_bars.open,
            "c_ts": ts[ci],
            "c_epoch": epoch[ci],
            "c_offset": offset[ci],
            "c_bid": b_bars.close,
            "c_ask": a_bars.close,
            "h_bid": b_bars.high,
            "l_bid": b_bars.low,
            "h_ask": a_bars.high,
            "l_ask": a_bars.low,
            "h_mid": m_bars.high,
            "l_mid": m_bars.low,
            "n": grouping.ticks,
        }
        return _Prepared(ticks, rollup, new_symbols, hw)

    async def prune_ticks(self, before: int) -> int:
        def job() -> int:
            try:
                row = self._con.execute("DELETE FROM ticks WHERE ts < $1", [before]).fetchone()
                dropped = int(row[0]) if row else 0
            except duckdb.Error as exc:
                raise StoreError(f"pruning ticks failed: {exc}") from exc
            if dropped:
                try:  # frees the space now rather than at the next automatic checkpoint
                    self._con.execute("CHECKPOINT")
                except duckdb.Error as exc:
                    log.warning("checkpoint after pruning %d ticks failed: %s", dropped, exc)
            return dropped

        return await self._write(job)

    # -- reads ------------------------------------------------------------------------------

    async def ticks(
        self,
        symbol: str,
        start: int,
        end: int,
        *,
        limit: int,
        after: TickCursor | None = None,
    ) -> TickColumns:
        """Up to ``limit`` ticks of ``symbol`` with ``start <= ts < end``, after ``after``.

        Sorting in DuckDB costs more than the scan, so the ticks are first read in storage
        order, which is nearly ``ts`` order, and sorted with numpy. Only when the range holds
        more than ``limit`` ticks does a second query (same snapshot) sort in SQL, bounded by
        the ``limit``-th smallest ``ts`` read so far.
        """
        sym_id = self._symbol_ids.get(symbol)
        lo, hi = max(start, INT64_MIN), min(end, INT64_MAX)
        if after is not None:
            lo = max(lo, after.ts)
        if sym_id is None or limit <= 0 or lo >= hi:
            return _empty_ticks(symbol)
        params: dict[str, int] = {"sym": sym_id, "lo": lo, "hi": hi, "limit": limit + 1}
        sql = (
            'SELECT epoch, "offset", seq, ts, bid, ask FROM ticks'
            " WHERE sym_id = $sym AND ts >= $lo AND ts < $hi"
        )
        if after is not None:
            params.update(cts=after.ts, cep=after.epoch, cof=after.offset)
            sql += ' AND (ts, epoch, "offset") > ($cts, $cep, $cof)'

        def query(cur: Connection) -> TickColumns:
            cur.begin()  # one snapshot for both queries
            try:
                cols = cur.execute(sql + " LIMIT $limit", params).fetchnumpy()
                ts = _i64(cols["ts"])
                if len(ts) > limit:  # more than a page: every tick of the page has ts <= cut
                    cut = int(np.partition(ts, limit - 1)[limit - 1])
                    page_sql = sql + ' AND ts <= $cut ORDER BY ts, epoch, "offset" LIMIT $limit'
                    cols = cur.execute(
                        page_sql, {**params, "cut": cut, "limit": limit}
                    ).fetchnumpy()
                    ts = _i64(cols["ts"])
            finally:
                with contextlib.suppress(duckdb.Error):
                    cur.rollback()
            epoch, offset = _i64(cols["epoch"]), _i64(cols["offset"])
            seq, bid, ask = _i64(cols["seq"]), _f64(cols["bid"]), _f64(cols["ask"])
            order = _tick_order(ts, epoch, offset)
            if order is not None:
                ts, epoch, offset = ts[order], epoch[order], offset[order]
                seq, bid, ask = seq[order], bid[order], ask[order]
            return TickColumns(symbol, epoch=epoch, offset=offset, seq=seq, ts=ts, bid=bid, ask=ask)

        return await self._read(query)

    async def bars(
        self,
        symbol: str,
        resolution: Resolution,
        side: PriceSide,
        start: int,
        end: int,
        *,
        limit: int,
    ) -> BarColumns:
        sym_id = self._symbol_ids.get(symbol)
        if sym_id is None or limit <= 0 or start >= end:
            return _empty_bars(symbol)
        sql, params = _bars_query(resolution, side, start, end, [sym_id], limit)

        def query(cur: Connection) -> BarColumns:
            cols = cur.execute(sql, params).fetchnumpy()
            return _bar_columns(symbol, cols, slice(None))

        return await self._read(query)

    async def bars_many(
        self,
        symbols: Sequence[str],
        resolution: Resolution,
        side: PriceSide,
        start: int,
        end: int,
    ) -> dict[str, BarColumns]:
        result = {symbol: _empty_bars(symbol) for symbol in symbols}
        known = {self._symbol_ids[s]: s for s in result if s in self._symbol_ids}
        if not known or start >= end:
            return result
        sql, params = _bars_query(resolution, side, start, end, sorted(known), None)

        def query(cur: Connection) -> dict[str, BarColumns]:
            cols = cur.execute(sql, params).fetchnumpy()
            sym = np.asarray(cols["sym_id"])
            cuts = np.flatnonzero(sym[1:] != sym[:-1]) + 1
            lo = np.concatenate(([0], cuts)).tolist()
            hi = np.concatenate((cuts, [len(sym)])).tolist()
            for a, b in zip(lo, hi, strict=True):
                if a < b:
                    code = known[int(sym[a])]
                    result[code] = _bar_columns(code, cols, slice(a, b))
            return result

        return await self._read(query)


# -- helpers running on the store's threads ---------------------------------------------------


WRITER_NICE: Final = 10
"""How much lower than the event loop the writer thread (and DuckDB's workers) is scheduled."""


def _background_priority() -> None:
    """Lower this thread's scheduling priority (Linux: nice is per thread, inherited by the
    threads it starts, so DuckDB's worker threads, created when the writer connects, follow)."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WRITER_NICE)


def _close_if_opened(future: Future[tuple[Connection, Any, Any, Any]]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result()[0].close()


def _open_sync(
    path: Path, read_threads: int
) -> tuple[Connection, Position | None, dict[str, int], queue.Queue[Connection]]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(path))
    except (OSError, duckdb.Error) as exc:
        raise StoreError(f"cannot open the store at {path}: {exc}") from exc
    try:
        con.execute(_SCHEMA)
        row = con.execute("SELECT schema_version, hw_epoch, hw_offset FROM meta").fetchone()
        if row is None:
            con.execute("INSERT INTO meta VALUES ($1, NULL, NULL)", [SCHEMA_VERSION])
            row = (SCHEMA_VERSION, None, None)
        if row[0] != SCHEMA_VERSION:
            raise StoreError(f"{path} has schema version {row[0]}, expected {SCHEMA_VERSION}")
        hw = None if row[1] is None else Position(int(row[1]), int(row[2]))
        ids = {
            str(code): int(i) for i, code in con.execute("SELECT id, code FROM symbols").fetchall()
        }
        cursors: queue.Queue[Connection] = queue.Queue(maxsize=read_threads)
        for _ in range(read_threads):
            cursors.put_nowait(con.cursor())
    except BaseException as exc:
        con.close()
        if isinstance(exc, duckdb.Error):
            raise StoreError(f"cannot open the store at {path}: {exc}") from exc
        raise
    return con, hw, ids, cursors


def _bars_query(
    resolution: Resolution,
    side: PriceSide,
    start: int,
    end: int,
    sym_ids: list[int],
    limit: int | None,
) -> tuple[str, dict[str, int]]:
    """SQL for the bars of ``sym_ids`` whose start lies in ``[start, end)``, by symbol and start."""
    width = resolution.width_ns
    params = {
        "lo": max(_first_boundary(start, resolution), INT64_MIN),
        "hi": min(_first_boundary(end, resolution), INT64_MAX),
        "anchor": resolution.anchor_ns,
        "width": width,
    }
    syms = ", ".join(str(int(s)) for s in sym_ids)  # ints only: safe to inline
    tail = " ORDER BY sym_id, start"
    if limit is not None:
        params["limit"] = limit
        tail += " LIMIT $limit"
    if _uses_rollup(resolution):
        o, h, low, c = _ROLLUP_SIDE[side]
        where = f"sym_id IN ({syms}) AND minute >= $lo AND minute < $hi"
        if width == MINUTE_NS:
            sql = (
                f"SELECT sym_id, minute AS start, {o} AS open, {h} AS high, {low} AS low,"
                f" {c} AS close, n AS ticks FROM bars_1m WHERE {where}"
            )
            del params["anchor"], params["width"]
        else:
            sql = (
                "SELECT sym_id, start, arg_min(o, minute) AS open, max(h) AS high,"
                " min(l) AS low, arg_max(c, minute) AS close, sum(n)::BIGINT AS ticks"
                f" FROM (SELECT sym_id, {_bucket_sql('minute')} AS start, minute,"
                f" {o} AS o, {h} AS h, {low} AS l, {c} AS c, n FROM bars_1m WHERE {where})"
                " GROUP BY sym_id, start"
            )
    else:
        p = _TICK_PRICE[side]
        key = '(ts, epoch, "offset")'
        sql = (
            f"SELECT sym_id, start, arg_min(p, {key}) AS open, max(p) AS high, min(p) AS low,"
            f" arg_max(p, {key}) AS close, count(*)::BIGINT AS ticks"
            f' FROM (SELECT sym_id, {_bucket_sql("ts")} AS start, ts, epoch, "offset", {p} AS p'
            f" FROM ticks WHERE sym_id IN ({syms}) AND ts >= $lo AND ts < $hi)"
            " GROUP BY sym_id, start"
        )
    return sql + tail, params


def _bar_columns(symbol: str, cols: dict[str, Any], rows: slice) -> BarColumns:
    return BarColumns(
        symbol,
        start=_i64(cols["start"][rows]),
        open=_f64(cols["open"][rows]),
        high=_f64(cols["high"][rows]),
        low=_f64(cols["low"][rows]),
        close=_f64(cols["close"][rows]),
        ticks=_i64(cols["ticks"][rows]),
    )
