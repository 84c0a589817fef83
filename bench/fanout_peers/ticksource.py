"""The peers' tick source: the same stream as tickwire's simulator in load mode, in process.

Like ``SimulatorFeed`` with ``load_rate`` (``tickwire.feeds.simulator``), it wakes at each
multiple of ``step`` (100 ms) of the wall clock and emits the ticks due since the previous
wake-up: exactly ``floor(rate × elapsed)`` in total, their times ``t`` spread evenly over the
elapsed range (so every ``t`` is earlier than the moment it is published), symbols taken
round-robin in the order given (offset 1 is the first symbol), per-symbol ``q`` from 1, one
``e`` for the run. When the consumer is late it does not sleep, and the next batch is bigger:
no tick is skipped. Prices are a random walk with 5 decimals (tickwire uses each symbol's own
decimals, so its ticks are a few bytes shorter or longer; the benchmark reports bytes per tick).

A tick is the tuple ``(symbol, bid, ask, t, o, q)``; :func:`tick_dict` gives the wire object
``{"s","b","a","t","e","o","q"}`` in the native protocol's key order.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

STEP_NS = 100_000_000
Tick = tuple[str, float, float, int, int, int]


class TickSource:
    """Ticks at ``rate`` per second over ``symbols``, in batches per ``step_ns`` of wall clock."""

    def __init__(
        self, symbols: Sequence[str], rate: int, *, step_ns: int = STEP_NS, seed: int = 7
    ) -> None:
        if rate <= 0 or not symbols:
            raise ValueError("need a positive rate and at least one symbol")
        self.symbols = tuple(symbols)
        self.rate = int(rate)
        self.step_ns = step_ns
        self.epoch = time.time_ns() // 1_000_000_000
        self.offset = 0
        self._rng = random.Random(seed)
        self._mid = [1.0 + 0.37 * (i % 7) + self._rng.random() for i in range(len(symbols))]
        self._seq = [0] * len(symbols)
        self._next_sym = 0

    def _make(self, start: int, end: int, n: int) -> list[Tick]:
        gauss = self._rng.gauss
        names = self.symbols
        count = len(names)
        mids = self._mid
        seqs = self._seq
        dur = end - start
        out: list[Tick] = []
        sym = self._next_sym
        offset = self.offset
        for k in range(n):
            mid = mids[sym] * (1.0 + 2e-5 * gauss(0.0, 1.0))
            mids[sym] = mid
            seqs[sym] += 1
            offset += 1
            out.append(
                (
                    names[sym],
                    round(mid * 0.99999, 5),
                    round(mid * 1.00001, 5),
                    start + k * dur // n,
                    offset,
                    seqs[sym],
                )
            )
            sym = sym + 1 if sym + 1 < count else 0
        self._next_sym = sym
        self.offset = offset
        return out

    async def batches(self) -> AsyncIterator[list[Tick]]:
        """Batches forever, one per wake-up (see the module docstring); never an empty one."""
        start = last = time.time_ns()
        emitted = 0
        step = self.step_ns
        while True:
            boundary = (last // step + 1) * step
            now = time.time_ns()
            if now < boundary:
                await asyncio.sleep((boundary - now) / 1e9)
                now = time.time_ns()
            else:
                # behind: still let the loop run its I/O (drain the sockets) before the next
                # batch, as Node's setTimeout(wake, 0) does
                await asyncio.sleep(0)
            end = max(now, last)
            due = self.rate * (end - start) // 1_000_000_000
            n = due - emitted
            if n <= 0:
                last = end
                continue
            emitted = due
            batch = self._make(last, end, n)
            last = end
            yield batch

    def tick_dict(self, tick: Tick) -> dict[str, Any]:
        """The wire object of ``tick``: ``{"s","b","a","t","e","o","q"}``."""
        s, b, a, t, o, q = tick
        return {"s": s, "b": b, "a": a, "t": t, "e": self.epoch, "o": o, "q": q}


def go_event(wait: bool) -> asyncio.Event:
    """An event set now, or (``wait``) on SIGUSR2: the orchestrator's "clients are connected"."""
    go = asyncio.Event()
    if wait:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, go.set)
    else:
        go.set()
    return go
