"""TraderMade's own Python SDK stream client (PyPI ``tradermade`` 1.0) against tickwire.

``tradermade.stream.connect_tradermade()`` opens ``wss://marketdata.tradermade.com/feedadv``
with ``websockets.sync.client.connect``, imported into the module as ``cn``; the URL is a local
of the function, so there is no variable to point elsewhere. The test wraps ``cn`` to swap the
scheme and host for the test server's (``ws://127.0.0.1:PORT``), leaving the path and every
other argument alone: only the host changes. Key, symbols and callback are set with the SDK's
own ``set_ws_key``, ``set_symbols`` and ``stream_data``.

The SDK's loop never ends by itself: it stops when the callback raises. Ours raises after
enough ticks; if the SDK hangs instead, the server closes its connection, which ends the loop.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from picows import WSListener, WSUpgradeRequest, WSUpgradeResponseWithListener, ws_create_server

from tickwire.access.keys import FileKeyStore
from tickwire.config import Settings
from tickwire.gateway.connections import ConnectionCounter
from tickwire.gateway.tradermade_stream import close_all, tradermade_listener
from tickwire.journal.journal import SyncPolicy
from tickwire.node import Node

from .conftest import TIMEOUT_SCALE

stream: Any = pytest.importorskip(
    "tradermade.stream", reason="the SDK test needs tradermade (dev extra)"
)

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

TRADERMADE_FEED = "wss://marketdata.tradermade.com/feedadv"
TICKS = 25


class Server:
    """A node ticking at 500/s, its key store, and a picows server for the TraderMade paths."""

    def __init__(self, node: Node, keys: FileKeyStore, port: int) -> None:
        self.node = node
        self.keys = keys
        self.port = port


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    """A real node and a real picows server on a free port."""
    data = Path(tmp_path_factory.mktemp("tmsdk"))
    node = await Node.start(
        Settings(
            data_dir=data,
            backfill_days=0,
            weekend_closed=False,
            load_rate=500,
            sync=SyncPolicy.NONE,
        )
    )
    keys = FileKeyStore(data / "keys.json")
    connections = ConnectionCounter()

    def factory(request: WSUpgradeRequest) -> WSListener | WSUpgradeResponseWithListener | None:
        return tradermade_listener(request, node=node, keys=keys, connections=connections)

    ws_server = await ws_create_server(factory, "127.0.0.1", 0)
    try:
        yield Server(node, keys, ws_server.sockets[0].getsockname()[1])
    finally:
        ws_server.close()
        await node.stop()


class Enough(Exception):
    """Raised by the callback to end the SDK's receive loop."""


def host_swapped(connect: Callable[..., Any], port: int, urls: list[str]) -> Callable[..., Any]:
    """``connect`` with TraderMade's scheme and host replaced by the test server's."""

    def redirected(url: str, *args: Any, **kwargs: Any) -> Any:
        urls.append(url)
        local = url.replace("wss://marketdata.tradermade.com", f"ws://127.0.0.1:{port}", 1)
        return connect(local, *args, **kwargs)

    return redirected


async def test_official_sdk_stream_receives_live_ticks(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDK's connect_tradermade() gets Connected, then live EURUSD/GBPUSD ticks."""
    key, _ = server.keys.create("sdk-stream", plan="pro")
    urls: list[str] = []
    monkeypatch.setattr(stream, "cn", host_swapped(stream.cn, server.port, urls))
    for name in ("_api_key", "_symbol", "message_callback"):  # restored after the test
        monkeypatch.setattr(stream, name, getattr(stream, name))
    messages: list[str] = []

    def on_message(message: str) -> None:
        messages.append(message)
        if len(messages) > TICKS:
            raise Enough

    stream.set_ws_key(key)
    stream.set_symbols("EURUSD,GBPUSD")
    stream.stream_data(on_message)
    started = time.monotonic()
    sdk = asyncio.ensure_future(asyncio.to_thread(stream.connect_tradermade))
    try:
        await asyncio.wait_for(asyncio.shield(sdk), 30 * TIMEOUT_SCALE)
    finally:
        if not sdk.done():  # the SDK hangs: close its socket so that its loop ends
            close_all(server.node)
            await asyncio.wait_for(sdk, 10)
    elapsed = time.monotonic() - started
    assert urls == [TRADERMADE_FEED]
    assert messages[0] == "Connected"
    ticks = [json.loads(m) for m in messages[1:]]
    assert len(ticks) == TICKS
    for tick in ticks:
        assert list(tick) == ["symbol", "ts", "bid", "ask", "mid"]
        assert tick["symbol"] in ("EURUSD", "GBPUSD") and isinstance(tick["ts"], str)
        assert abs(int(tick["ts"]) / 1000 - time.time()) < 60 * TIMEOUT_SCALE
    assert {t["symbol"] for t in ticks} == {"EURUSD", "GBPUSD"}
    print(f"SDK received {TICKS} ticks in {elapsed:.2f} s")
