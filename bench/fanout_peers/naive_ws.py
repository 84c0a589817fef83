"""Peer: the naive Python WebSocket server (websockets on uvloop), one awaited send per tick.

For every tick and every client subscribed to its symbol: ``await ws.send(json.dumps(tick))``.
This is how a first version is usually written; it is here as the floor.

A client sends ``{"action": "subscribe", "symbols": [...]}`` (other fields are ignored; the
native protocol's subscribe message works) and gets ``{"type": "ack"}``, then one JSON tick
object per message. Ticks come from :class:`~bench.fanout_peers.ticksource.TickSource`.

    python -m bench.fanout_peers.naive_ws --port P --rate R --symbols EURUSD,GBPUSD,...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

import uvloop
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from .ticksource import TickSource, go_event

clients: dict[ServerConnection, frozenset[str]] = {}


async def handler(ws: ServerConnection) -> None:
    async for message in ws:
        try:
            request = json.loads(message)
        except ValueError:
            continue
        if isinstance(request, dict) and request.get("action") == "subscribe":
            clients[ws] = frozenset(request.get("symbols") or ())
            await ws.send(json.dumps({"type": "ack", "id": request.get("id")}))
    clients.pop(ws, None)


async def publish(source: TickSource, go: asyncio.Event) -> None:
    await go.wait()
    async for batch in source.batches():
        for tick in batch:
            message = source.tick_dict(tick)
            symbol = tick[0]
            for ws, symbols in list(clients.items()):
                if symbol in symbols:
                    try:
                        await ws.send(json.dumps(message))
                    except ConnectionClosed:
                        clients.pop(ws, None)


async def main(port: int, rate: int, symbols: list[str], wait_go: bool, step_ms: float) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    go = go_event(wait_go)
    source = TickSource(symbols, rate, step_ns=round(step_ms * 1e6))
    async with serve(handler, "127.0.0.1", port, compression=None, max_queue=None, backlog=4096):
        task = asyncio.create_task(publish(source, go))
        print("listening", flush=True)
        await stop
        task.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=int, required=True)
    parser.add_argument("--symbols", required=True)
    parser.add_argument("--wait-go", action="store_true", help="start on SIGUSR2")
    parser.add_argument("--step-ms", type=float, default=100.0, help="wake-up step")
    args = parser.parse_args()
    uvloop.run(main(args.port, args.rate, args.symbols.split(","), args.wait_go, args.step_ms))
