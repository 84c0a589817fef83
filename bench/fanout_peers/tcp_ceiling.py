"""Peer: the ceiling, a bare asyncio TCP server (uvloop) writing pre-encoded ticks, coalesced.

No WebSocket, no protocol, no journal: per batch of the tick source it encodes each tick once
(msgspec JSON, the native protocol's tick object), joins each symbol's ticks into one piece,
and writes to every client, in one ``transport.write``, the pieces of its symbols joined by
``,`` and ended by a newline. Clients with the same symbol set share the bytes. This is the
fan-out technique of tickwire's gateway with everything else taken away.

A client sends one line ``{"symbols": [...]}\\n`` (a native subscribe message works too), then
reads lines ``{tick},{tick},...\\n``, one per batch. Nothing is sent back.

    python -m bench.fanout_peers.tcp_ceiling --port P --rate R --symbols EURUSD,GBPUSD,...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from typing import cast

import msgspec
import uvloop

from .ticksource import TickSource, go_event

_encode = msgspec.json.Encoder().encode


class Client(asyncio.Protocol):
    def __init__(self, clients: set[Client]) -> None:
        self.clients = clients
        self.transport: asyncio.Transport | None = None
        self.symbols: tuple[str, ...] = ()
        self.key: frozenset[str] = frozenset()
        self.buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if b"\n" in self.buf and not self.symbols:
            line = self.buf.split(b"\n", 1)[0]
            self.symbols = tuple(sorted(set(json.loads(line).get("symbols") or ())))
            self.key = frozenset(self.symbols)
            self.clients.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.clients.discard(self)


async def publish(source: TickSource, clients: set[Client], go: asyncio.Event) -> None:
    await go.wait()
    async for batch in source.batches():
        grouped: dict[str, list[bytes]] = {}
        for tick in batch:
            grouped.setdefault(tick[0], []).append(_encode(source.tick_dict(tick)))
        pieces = {s: b",".join(ticks) for s, ticks in grouped.items()}
        frames: dict[frozenset[str], bytes] = {}
        for client in list(clients):
            frame = frames.get(client.key)
            if frame is None:
                mine = [pieces[s] for s in client.symbols if s in pieces]
                frame = frames[client.key] = b",".join(mine) + b"\n" if mine else b""
            if frame and client.transport is not None:
                client.transport.write(frame)


async def main(port: int, rate: int, symbols: list[str], wait_go: bool, step_ms: float) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    go = go_event(wait_go)
    source = TickSource(symbols, rate, step_ns=round(step_ms * 1e6))
    clients: set[Client] = set()
    server = await loop.create_server(lambda: Client(clients), "127.0.0.1", port, backlog=4096)
    task = asyncio.create_task(publish(source, clients, go))
    print("listening", flush=True)
    await stop
    task.cancel()
    server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=int, required=True)
    parser.add_argument("--symbols", required=True)
    parser.add_argument("--wait-go", action="store_true", help="start on SIGUSR2")
    parser.add_argument("--step-ms", type=float, default=100.0, help="wake-up step")
    args = parser.parse_args()
    uvloop.run(main(args.port, args.rate, args.symbols.split(","), args.wait_go, args.step_ms))
