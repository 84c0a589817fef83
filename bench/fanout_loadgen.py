"""Load generator for :mod:`bench.fanout_bench`: many stream clients in one uvloop process.

Clients talk to the server over raw asyncio connections: a hand-written WebSocket handshake and
frame reader (or newline-delimited frames for the bare TCP peer), so that most of them cost
almost nothing per tick. Parsing every tick caps a Python client at ~0.3 M ticks/s
(``../shared/measurements/fanout.md``), so there are two kinds of clients:

* **observers** (a sample, given by the orchestrator) decode every frame and check every tick:
  per symbol ``q`` gap-free and ``o`` increasing, and every frame's offsets above the previous
  frame's; they time every tick received in the measurement window (see ``latency`` below);
* **sinks** (all others) never decode a tick. They walk the frame headers and count the ticks of
  each frame with ``bytes.count(b'{"s":')`` over the payload, in C, without copying it. For the
  exact check, a sink keeps two frames: the first tick frame that starts after the window opens
  and the first one that starts after it closes. After the run it decodes them; every tick
  between the lowest offset of the first and the highest offset of the last must have arrived in
  between (frames of a live subscription carry increasing offset ranges): with symbols assigned
  round-robin by offset, the expected count is exact, so ``received - expected`` is the loss
  (negative: duplicates).

**Latency.** A tick's ``t`` is not its publish time: the simulator (and the peers' copy of it)
wakes every 100 ms and stamps the ticks of the elapsed 100 ms evenly, so ``t`` is up to 100 ms
older than the moment the tick is emitted. The emission moment is the first 100 ms wall-clock
boundary after ``t`` (plus the feed's wake-up delay, which this estimate leaves in the latency,
so it errs high), and ``latency = receipt - that boundary``. If that is negative the tick was
emitted late in the previous wake-up (it fell in the wake-up delay); then ``receipt - t`` is used
(an upper bound). ``age = receipt - t`` is recorded too. For tickwire the emission moment is
before the journal commit, so this is "journal to client" plus the commit.

Protocol with the orchestrator: the config is a JSON file (argv[1]); when every client is
connected (upgraded, and welcomed by tickwire), print ``{"event":"ready",...}``; then read
commands on stdin: ``subscribe`` sends every client's subscription at once and prints
``{"event":"subscribed",...}`` when all are acknowledged (so no server streams to some clients
while others are still connecting); ``start`` and ``stop`` mark the window; after ``stop``,
wait for each sink's closing frame and print ``{"event":"result",...}``; ``exit`` closes
everything.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any, cast

import msgspec
import numpy as np
import uvloop

from tickwire.benchmarks.wire import ws_client_frame, ws_upgrade_request

PATTERN = b'{"s":'
# Sinks count ticks by their opening braces: every tick is one flat JSON object, and a batch
# frame adds one brace for its {"type":"ticks",...} envelope. Counting one byte is cheap, and
# numpy counts a large chunk ~6x faster than bytes.count (measured: 17.8 against 3.0 GB/s).
BRACE = ord("{")
NUMPY_COUNT_FROM = 16_384  # bytes; below this bytes.count is faster
ENVELOPE_HEAD = b'{"t'
STEP_NS = 100_000_000  # the source's wake-up step (config: step_ns)
SMALL_FRAME = 512  # control frames and small tick frames are always kept whole
HIST_EDGES = np.concatenate(([0.0], np.geomspace(1e3, 1e11, 1853)))  # ns, ~1 % wide bins


class Tick(msgspec.Struct):
    s: str
    t: int
    o: int
    q: int


class TicksFrame(msgspec.Struct):
    type: str
    ticks: list[Tick] = []


class LegacyTick(msgspec.Struct):
    """A TraderMade ``/feedadv`` tick: no offset or seq, ``ts`` in epoch ms as a string."""

    symbol: str
    ts: str


_frame_decoder = msgspec.json.Decoder(TicksFrame)
_legacy_decoder = msgspec.json.Decoder(LegacyTick)
_tick_decoder = msgspec.json.Decoder(Tick)
_tick_list_decoder = msgspec.json.Decoder(list[Tick])
_json_decode = msgspec.json.decode


def decode_ticks(payload: bytes) -> list[Tick]:
    """The ticks of a frame: ``{"type":"ticks",...}``, one tick object, or ``{tick},{tick}``."""
    if payload.startswith(b'{"type"'):
        return _frame_decoder.decode(payload).ticks
    if payload.count(PATTERN) == 1:
        return [_tick_decoder.decode(payload)]
    return _tick_list_decoder.decode(b"[" + payload + b"]")


def decode_legacy(payload: bytes) -> list[Tick]:
    """A ``/feedadv`` frame (one tick) as a :class:`Tick` without a position (o = q = 0)."""
    tick = _legacy_decoder.decode(payload)
    return [Tick(tick.symbol, int(tick.ts) * 1_000_000, 0, 0)]


def count_ticks(payload: bytes) -> int:
    """Ticks in a whole frame or line: its braces, less one for a ``{"type":...}`` envelope."""
    return payload.count(b"{") - payload.startswith(ENVELOPE_HEAD)


def expected_count(lo: int, hi: int, wanted: set[int], phase: int, n_symbols: int) -> int:
    """How many offsets in ``[lo, hi]`` belong to ``wanted`` symbol indices, round-robin."""
    span = hi - lo + 1
    if span <= 0:
        return 0
    full, rem = divmod(span, n_symbols)
    extra = sum(1 for j in range(rem) if (lo + j + phase) % n_symbols in wanted)
    return full * len(wanted) + extra


class Conn(asyncio.Protocol):
    """One client: handshake, subscribe, then count (sink) or check (observer) every frame."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        path: str,
        framing: str,
        subscribe: bytes | None,
        symbols: list[str] = (),  # type: ignore[assignment]
        observer: bool = False,
        expect_welcome: bool = False,
        keep_all: bool = False,
        step_ns: int = STEP_NS,
        dialect: str = "native",
    ) -> None:
        self.step_ns = step_ns
        # "native" (or a peer speaking its tick format) or "feedadv": TraderMade's legacy
        # stream, whose ticks carry no position (latency only; loss cannot be checked per tick)
        self.legacy = dialect == "feedadv"
        # a /feedadv sink counts frame starts instead of walking frames (see _count_legacy)
        self.legacy_sink = self.legacy and not observer and not keep_all
        self.framing = framing
        self.subscribe_msg = subscribe
        self.symbols = list(symbols)
        self.observer = observer
        self.expect_welcome = expect_welcome
        self.keep_all = keep_all  # keep every frame (resume check)
        self.welcome: dict[str, Any] | None = None
        self.resumes: list[tuple[int, int, dict[str, Any]]] = []
        if framing == "ws":
            self.request = ws_upgrade_request(host, port, path)
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = loop.create_future()  # connected (and welcomed)
        self.acked: asyncio.Future[None] = loop.create_future()  # subscribed
        self.handshaking = framing == "ws"
        self.hbuf = b""
        self.subscribed = False
        self.closed: str | None = None
        # frame walker
        self.hdr = b""
        self.remaining = 0
        self.in_frame = False
        self.opcode = 0x1
        self.frame_ticks = 0
        self.head = b""  # the first bytes of the frame (envelope or bare ticks)
        self.collect: bytearray | None = None
        self.cur_capture = False
        # counters
        self.nbytes = 0
        self.ticks = 0
        self.frames = 0
        self.controls: dict[str, int] = {}
        self.frames_kept: list[tuple[int, bool, bytes]] = []
        # window: 0 before, 1 open (waiting for first frame), 2 open, 3 closed (waiting for the
        # closing frame), 4 done
        self.win = 0
        self.start_ticks = self.stop_ticks = 0
        self.start_bytes = self.stop_bytes = 0
        self.check_base = self.check_end = 0
        self.first: bytes | None = None
        self.last: bytes | None = None
        self.now = 0
        # observer state
        self.last_q: dict[str, int] = {}
        self.last_o: dict[str, int] = {}
        self.max_o = 0
        self.gaps = 0
        self.dups = 0
        self.order_errors = 0
        self.seen = 0
        self.lat: list[int] = []
        self.age: list[int] = []

    # -- connection -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        transport = self.transport
        if self.framing == "ws":
            transport.write(self.request)
        else:
            self._begin_frame()
            self.ready.set_result(None)

    def subscribe(self) -> None:
        """Send the subscription (all clients subscribe at once, after every one connected)."""
        if self.transport is None or self.subscribe_msg is None:
            return
        if self.framing == "ws":
            self.send_text(self.subscribe_msg)
            if self.legacy:  # the legacy login has no answer: ticks just start
                self.subscribed = True
                self.acked.set_result(None)
        else:
            self.transport.write(self.subscribe_msg + b"\n")
            self.subscribed = True
            self.acked.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed is None:
            self.closed = f"lost: {exc}" if exc else "lost"
        for future in (self.ready, self.acked):
            if not future.done():
                future.set_exception(ConnectionError(self.closed))
                future.exception()  # retrieved: no "never retrieved" warning

    def send_text(self, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(ws_client_frame(0x1, payload))

    def data_received(self, data: bytes) -> None:
        if self.handshaking:
            self.hbuf += data
            end = self.hbuf.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = self.hbuf[:end], self.hbuf[end + 4 :]
            self.hbuf = b""
            self.handshaking = False
            if not head.startswith(b"HTTP/1.1 101"):
                self.closed = head.split(b"\r\n", 1)[0].decode("latin-1")
                if not self.ready.done():
                    self.ready.set_exception(ConnectionError(self.closed))
                if self.transport is not None:
                    self.transport.close()
                return
            if not self.expect_welcome and not self.ready.done():
                self.ready.set_result(None)  # a server without a welcome: ready once upgraded
            if not data:
                return
        self.nbytes += len(data)
        if self.legacy_sink and self.subscribed:
            self._count_legacy(data)
            return
        if self.observer or self.keep_all:
            self.now = time.time_ns()
        if self.framing == "ws":
            self._ws(data)
        else:
            self._lines(data)

    def _count_legacy(self, data: bytes) -> None:
        """Count /feedadv ticks without walking frames: every tick is one short unmasked text
        frame, whose first byte 0x81 cannot occur in its ASCII payload nor in a length byte
        (< 126), so the count of 0x81 bytes is the count of ticks (one per frame, exactly).
        A 0x88 byte is likewise a close frame's first byte."""
        count = data.count(b"\x81")
        self.ticks += count
        self.frames += count
        close = data.find(b"\x88")
        if close >= 0 and self.closed is None:
            length = data[close + 1] & 0x7F if close + 1 < len(data) else 0
            body = data[close + 2 : close + 2 + length]
            code = int.from_bytes(body[:2], "big") if len(body) >= 2 else 0
            self.closed = f"close {code} {body[2:].decode('utf-8', 'replace')}".strip()
            if self.transport is not None:
                self.transport.close()

    # -- frame walkers --------------------------------------------------------------------------

    def _payload(self, data: bytes, pos: int, end: int) -> None:
        collect = self.collect
        if collect is not None:
            collect += memoryview(data)[pos:end]
            return
        if len(self.head) < len(ENVELOPE_HEAD):
            self.head += data[pos : pos + len(ENVELOPE_HEAD) - len(self.head)]
        size = end - pos
        if size >= NUMPY_COUNT_FROM:
            chunk = np.frombuffer(data, np.uint8, size, pos)
            self.frame_ticks += int(np.count_nonzero(chunk == BRACE))
        else:
            self.frame_ticks += data.count(b"{", pos, end)

    def _ws(self, data: bytes) -> None:
        if self.hdr:
            data = self.hdr + data
            self.hdr = b""
        n = len(data)
        pos = 0
        while pos < n:
            if not self.in_frame:
                if n - pos < 2:
                    self.hdr = data[pos:]
                    return
                b0 = data[pos]
                length = data[pos + 1] & 0x7F
                if length < 126:
                    pos += 2
                elif length == 126:
                    if n - pos < 4:
                        self.hdr = data[pos:]
                        return
                    length = int.from_bytes(data[pos + 2 : pos + 4], "big")
                    pos += 4
                else:
                    if n - pos < 10:
                        self.hdr = data[pos:]
                        return
                    length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                    pos += 10
                self.opcode = b0 & 0x0F
                self.remaining = length
                self.in_frame = True
                self._begin_frame(length)
                if length == 0:
                    self._end_frame()
                    continue
            take = min(self.remaining, n - pos)
            end = pos + take
            self._payload(data, pos, end)
            pos = end
            self.remaining -= take
            if self.remaining == 0:
                self._end_frame()

    def _lines(self, data: bytes) -> None:
        n = len(data)
        pos = 0
        while pos < n:
            nl = data.find(b"\n", pos)
            if nl < 0:
                self._payload(data, pos, n)
                return
            self._payload(data, pos, nl)
            pos = nl + 1
            self.opcode = 0x1
            self._end_frame()
            self._begin_frame()

    def _begin_frame(self, length: int = -1) -> None:
        self.frame_ticks = 0
        self.head = b""
        self.cur_capture = self.win in (1, 3)
        small = 0 <= length < SMALL_FRAME
        keep = (
            self.observer
            or self.keep_all
            or self.cur_capture
            or small
            or not self.subscribed
            or self.opcode not in (0x1, 0x2)
        )
        self.collect = bytearray() if keep else None

    def _end_frame(self) -> None:
        self.in_frame = False
        opcode = self.opcode
        collect = self.collect
        payload = bytes(collect) if collect is not None else None
        self.collect = None
        if opcode == 0x9:
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(ws_client_frame(0xA, payload or b""))
            return
        if opcode == 0x8:
            code = int.from_bytes(payload[:2], "big") if payload and len(payload) >= 2 else 0
            reason = payload[2:].decode("utf-8", "replace") if payload else ""
            self.closed = f"close {code} {reason}".strip()
            if self.transport is not None:
                self.transport.close()
            return
        if opcode not in (0x1, 0x2):
            return
        if payload is not None:
            if payload.startswith(b'{"type"') and not payload.startswith(b'{"type":"ticks"'):
                self._control(payload)
                return
            count = count_ticks(payload)
            if count and (self.keep_all or self.observer):
                # decoded after the run (see analyze), so that decoding does not delay receipt
                self.frames_kept.append((self.now, self.win in (1, 2), payload))
        else:
            count = self.frame_ticks - (self.head == ENVELOPE_HEAD)
        if not count:
            return
        self.ticks += count
        self.frames += 1
        if self.win == 1 and self.cur_capture:
            self.first = payload
            self.check_base = self.ticks - count
            self.win = 2
        elif self.win == 3 and self.cur_capture:
            self.last = payload
            self.check_end = self.ticks
            self.win = 4

    def _control(self, payload: bytes) -> None:
        try:
            message = _json_decode(payload)
        except msgspec.DecodeError:
            return
        kind = str(message.get("type"))
        self.controls[kind] = self.controls.get(kind, 0) + 1
        if kind == "welcome":
            self.welcome = message
            if not self.ready.done():
                self.ready.set_result(None)
        elif kind == "resume":
            self.resumes.append((time.perf_counter_ns(), len(self.frames_kept), message))
        elif kind == "ack" and not self.subscribed:
            self.subscribed = True
            if not self.acked.done():
                self.acked.set_result(None)

    def analyze(self) -> None:
        """Check and time every kept frame (observers), after the run."""
        decode = decode_legacy if self.legacy else decode_ticks
        for now, in_window, payload in self.frames_kept:
            self._observe(now, in_window, decode(payload))
        self.frames_kept.clear()

    def _observe(self, now: int, in_window: bool, ticks: list[Tick]) -> None:
        if not self.legacy:
            self._check_positions(ticks)
        self.seen += len(ticks)
        if in_window:
            lat = self.lat
            age = self.age
            step = self.step_ns
            for tick in ticks:
                t = tick.t
                late = now - (t // step + 1) * step
                lat.append(late if late >= 0 else now - t)
                age.append(now - t)

    def _check_positions(self, ticks: list[Tick]) -> None:
        last_q = self.last_q
        last_o = self.last_o
        if min(t.o for t in ticks) <= self.max_o:
            self.order_errors += 1
        top = self.max_o
        for tick in ticks:
            s = tick.s
            q = tick.q
            o = tick.o
            prev = last_q.get(s)
            if prev is not None:
                if q != prev + 1:
                    if q > prev:
                        self.gaps += q - prev - 1
                    else:
                        self.dups += 1
                if o <= last_o[s]:
                    self.order_errors += 1
            last_q[s] = q
            last_o[s] = o
            if o > top:
                top = o
        self.max_o = top

    # -- window ---------------------------------------------------------------------------------

    def mark_start(self) -> None:
        self.win = 1
        self.start_ticks = self.ticks
        self.start_bytes = self.nbytes

    def mark_stop(self) -> None:
        if self.win == 1:  # no frame started and ended in the window
            self.first = None
        self.win = 3
        self.stop_ticks = self.ticks
        self.stop_bytes = self.nbytes

    def check(self, symbols: list[int], phase_of: dict[str, int], n_symbols: int) -> int | None:
        """Ticks received minus ticks expected between the two kept frames (None: unknown)."""
        if self.first is None or self.last is None or self.legacy:
            return None
        first = decode_ticks(self.first)
        last = decode_ticks(self.last)
        phases = {(phase_of[t.s] - t.o) % n_symbols for t in (*first, *last)}
        if len(phases) != 1:
            raise AssertionError(f"symbols are not round-robin by offset: phases {phases}")
        lo = min(t.o for t in first)
        hi = max(t.o for t in last)
        got = self.check_end - self.check_base
        return got - expected_count(lo, hi, set(symbols), phases.pop(), n_symbols)


def histogram(values: list[int]) -> list[int]:
    counts, _ = np.histogram(np.asarray(values, dtype=np.float64), bins=HIST_EDGES)
    return [int(c) for c in counts]


async def run(cfg: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    host, port, path, framing = cfg["host"], cfg["port"], cfg["path"], cfg["framing"]
    names: list[str] = cfg["symbols"]
    index = {s: i for i, s in enumerate(names)}
    idle = bool(cfg.get("idle"))
    dialect = str(cfg.get("dialect", "native"))
    conns: list[Conn] = []
    for client in cfg["clients"]:
        if idle:
            message = None
        elif dialect == "feedadv":
            login = {"userKey": cfg["key"], "symbol": ",".join(client["symbols"])}
            message = json.dumps(login).encode()
        elif framing == "ws":
            message = json.dumps(
                {
                    "action": "subscribe",
                    "id": 1,
                    "channel": "ticks",
                    "symbols": client["symbols"],
                    "snapshot": False,
                }
            ).encode()
        else:
            message = json.dumps({"symbols": client["symbols"]}).encode()
        conns.append(
            Conn(
                host=host,
                port=port,
                path=path,
                framing=framing,
                subscribe=message,
                symbols=client["symbols"],
                observer=bool(client.get("observer")),
                expect_welcome=bool(cfg.get("welcome")),
                step_ns=int(cfg.get("step_ns", STEP_NS)),
                dialect=dialect,
            )
        )
    semaphore = asyncio.Semaphore(int(cfg.get("concurrency", 64)))
    failures: list[str] = []

    async def open_one(conn: Conn) -> None:
        async with semaphore:
            for attempt in range(5):
                try:
                    await loop.create_connection(lambda: conn, host, port)
                    await asyncio.wait_for(asyncio.shield(conn.ready), 60)
                    return
                except (OSError, ConnectionError, TimeoutError) as exc:
                    if attempt == 4 or conn.transport is not None:
                        failures.append(f"{type(exc).__name__}: {exc}")
                        return
                    await asyncio.sleep(0.2 * (attempt + 1))

    started = time.monotonic()
    await asyncio.gather(*(open_one(c) for c in conns))
    connected = sum(1 for c in conns if c.ready.done() and not c.ready.exception())
    print(
        json.dumps(
            {
                "event": "ready",
                "connected": connected,
                "failed": len(failures),
                "errors": sorted(set(failures))[:5],
                "connect_s": round(time.monotonic() - started, 3),
            }
        ),
        flush=True,
    )
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    t_start = t_stop = 0
    cpu_start = cpu_stop = 0.0
    while True:
        line = (await reader.readline()).decode().strip()
        if line == "subscribe":
            began = time.monotonic()
            live = [c for c in conns if c.ready.done() and not c.ready.exception()]
            for c in live:
                c.subscribe()
            done, _ = await asyncio.wait([c.acked for c in live], timeout=120)
            ok = sum(1 for f in done if not f.exception())
            event = {"event": "subscribed", "subscribed": ok, "s": time.monotonic() - began}
            print(json.dumps(event), flush=True)
        elif line == "start":
            t_start = time.monotonic_ns()
            cpu_start = time.process_time()
            for c in conns:
                c.mark_start()
        elif line == "stop":
            t_stop = time.monotonic_ns()
            cpu_stop = time.process_time()
            for c in conns:
                c.mark_stop()
            deadline = time.monotonic() + float(cfg.get("drain_s", 3.0))
            while time.monotonic() < deadline and any(  # noqa: ASYNC110 (polls many conns)
                c.win == 3 and c.closed is None for c in conns
            ):
                await asyncio.sleep(0.05)
            print(json.dumps(result(conns, names, index, t_start, t_stop, cpu_start, cpu_stop)))
            sys.stdout.flush()
        elif line in ("exit", ""):
            break
    for c in conns:
        if c.transport is not None:
            c.transport.abort()


def result(
    conns: list[Conn],
    names: list[str],
    index: dict[str, int],
    t_start: int,
    t_stop: int,
    cpu_start: float,
    cpu_stop: float,
) -> dict[str, Any]:
    window = (t_stop - t_start) / 1e9
    observers = [c for c in conns if c.observer]
    sinks = [c for c in conns if not c.observer]
    for c in observers:
        c.analyze()
    checked = missing = extra = unchecked = bad = 0
    for c in sinks:
        diff = c.check([index[s] for s in c.symbols], index, len(names))
        if diff is None:
            unchecked += 1
            continue
        checked += 1
        if diff < 0:
            missing -= diff
            bad += 1
        elif diff > 0:
            extra += diff
            bad += 1
    lat = [v for c in observers for v in c.lat]
    age = [v for c in observers for v in c.age]
    closes: dict[str, int] = {}
    controls: dict[str, int] = {}
    for c in conns:
        if c.closed is not None:
            closes[c.closed] = closes.get(c.closed, 0) + 1
        for kind, n in c.controls.items():
            controls[kind] = controls.get(kind, 0) + n
    return {
        "event": "result",
        "window_s": window,
        "cpu_s": cpu_stop - cpu_start,
        "ticks": sum(c.stop_ticks - c.start_ticks for c in conns),
        "bytes": sum(c.stop_bytes - c.start_bytes for c in conns),
        "frames": sum(c.frames for c in conns),
        "ticks_total": sum(c.ticks for c in conns),
        "sinks_checked": checked,
        "sinks_unchecked": unchecked,
        "sinks_bad": bad,
        "sink_missing": missing,
        "sink_extra": extra,
        "observers": len(observers),
        "observer_ticks": sum(c.seen for c in observers),
        "gaps": sum(c.gaps for c in observers),
        "dups": sum(c.dups for c in observers),
        "order_errors": sum(c.order_errors for c in observers),
        "lat_hist": histogram(lat),
        "age_hist": histogram(age),
        "lat_max": max(lat, default=0),
        "lat_n": len(lat),
        "closes": closes,
        "controls": controls,
    }


def main() -> None:
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    uvloop.run(run(cfg))


if __name__ == "__main__":
    main()
