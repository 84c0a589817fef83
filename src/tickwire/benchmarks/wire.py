"""Sans-I/O wire pieces for the measuring clients: HTTP/1.1, WebSocket frames, SSE, counting.

Nothing here touches a socket, an event loop or a clock: bytes go in through ``feed()`` and
parsed items come out, so the clients in :mod:`.clients` only move bytes and every parser can be
tested by feeding it bytes. The parsers accept input split at any byte boundary.

Only what the benchmark needs is implemented: responses with ``Content-Length`` or
``Transfer-Encoding: chunked``, server-to-client (unmasked) WebSocket frames without extensions,
client-to-server masked frames, and the ``event`` / ``id`` / ``data`` fields of Server-Sent
Events.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field

__all__ = [
    "MAX_HEAD",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "ChunkedDecoder",
    "Frame",
    "FrameReader",
    "HttpResponse",
    "HttpResponseReader",
    "MarkerCounter",
    "ProtocolError",
    "SseEvent",
    "SseReader",
    "http_get",
    "parse_head",
    "ws_client_frame",
    "ws_upgrade_request",
]

OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

MAX_HEAD = 64 * 1024
"""The largest response head accepted, in bytes."""


class ProtocolError(Exception):
    """The peer sent bytes that do not parse (a bad status line, a bad chunk size ...)."""


# -- requests -----------------------------------------------------------------------------------


def http_get(host: str, port: int, target: str, headers: dict[str, str] | None = None) -> bytes:
    """A minimal HTTP/1.1 keep-alive ``GET`` request: request line, ``Host`` and ``headers``."""
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def ws_upgrade_request(host: str, port: int, target: str) -> bytes:
    """A WebSocket upgrade request (RFC 6455 section 4.1), without extensions."""
    key = base64.b64encode(os.urandom(16)).decode()
    return http_get(
        host,
        port,
        target,
        {
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": key,
            "Sec-WebSocket-Version": "13",
        },
    )


def ws_client_frame(opcode: int, payload: bytes, *, mask: bytes | None = None) -> bytes:
    """One final, masked client frame (clients must mask, RFC 6455 section 5.3)."""
    mask = os.urandom(4) if mask is None else mask
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    if not n:
        return head + mask
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return head + mask + (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big")


# -- HTTP responses -----------------------------------------------------------------------------


@dataclass
class HttpResponse:
    """A response: status, headers (names lower-cased) and body."""

    status: int
    headers: dict[str, str]
    body: bytes = b""


class ChunkedDecoder:
    """Decodes ``Transfer-Encoding: chunked`` incrementally; ``done`` after the last chunk.

    The body ends with the zero-size chunk, any trailer lines and a blank line; the decoder
    consumes exactly that much, and :meth:`take_rest` hands back the bytes fed after it (the
    next response on a keep-alive connection).
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._left = 0  # bytes left in the current chunk, then its CRLF
        self._in_chunk = False
        self._trailers = False  # after the zero-size chunk: trailer lines, then a blank line
        self.done = False

    def feed(self, data: bytes) -> bytes:
        """The body bytes decoded from ``data`` (possibly none)."""
        self._buf += data
        out = bytearray()
        buf = self._buf
        pos = 0
        while not self.done:
            if self._in_chunk:
                take = min(self._left, len(buf) - pos)
                out += buf[pos : pos + take]
                pos += take
                self._left -= take
                if self._left:
                    break
                if len(buf) - pos < 2:
                    break
                pos += 2  # the CRLF after the chunk data
                self._in_chunk = False
                continue
            end = buf.find(b"\r\n", pos)
            if end < 0:
                if len(buf) - pos > 1024:
                    raise ProtocolError("chunk size line too long")
                break
            if self._trailers:
                self.done = end == pos  # the blank line ends the body; trailers are ignored
                pos = end + 2
                continue
            size_text = bytes(buf[pos:end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size {size_text!r}") from None
            pos = end + 2
            if size == 0:
                self._trailers = True
                continue
            self._left = size
            self._in_chunk = True
        del buf[:pos]
        return bytes(out)

    def take_rest(self) -> bytes:
        """The bytes fed but not decoded (after the body, once ``done``); empties the decoder."""
        rest = bytes(self._buf)
        self._buf.clear()
        return rest


class HttpResponseReader:
    """Parses a sequence of HTTP/1.1 responses on one keep-alive connection.

    ``feed()`` returns the responses completed by the bytes given, bodies included (by
    ``Content-Length`` or chunked).
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._head: HttpResponse | None = None
        self._length = 0
        self._chunked: ChunkedDecoder | None = None
        self._body = bytearray()

    def feed(self, data: bytes) -> list[HttpResponse]:
        """Complete responses found after adding ``data``."""
        self._buf += data
        done: list[HttpResponse] = []
        while True:
            if self._head is None:
                end = self._buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._buf) > MAX_HEAD:
                        raise ProtocolError("response head too large")
                    return done
                self._head = parse_head(bytes(self._buf[:end]))
                del self._buf[: end + 4]
                encoding = self._head.headers.get("transfer-encoding", "").lower()
                self._chunked = ChunkedDecoder() if "chunked" in encoding else None
                self._length = int(self._head.headers.get("content-length", "0") or 0)
                self._body.clear()
            if self._chunked is not None:
                self._body += self._chunked.feed(bytes(self._buf))
                self._buf.clear()
                if not self._chunked.done:
                    return done
                self._buf += self._chunked.take_rest()  # the next response's bytes
                self._chunked = None
            else:
                take = min(self._length - len(self._body), len(self._buf))
                self._body += self._buf[:take]
                del self._buf[:take]
                if len(self._body) < self._length:
                    return done
            head, self._head = self._head, None
            head.body = bytes(self._body)
            done.append(head)


def parse_head(raw: bytes) -> HttpResponse:
    """A response head (status line and headers, without the blank line); names lower-cased."""
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if (
        len(parts) < 2
        or not parts[0].startswith("HTTP/1.")
        or not (parts[1].isascii() and parts[1].isdigit())
    ):
        raise ProtocolError(f"bad status line {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return HttpResponse(int(parts[1]), headers)


# -- WebSocket frames ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    """One WebSocket frame as received: opcode and unmasked payload."""

    opcode: int
    payload: bytes


class FrameReader:
    """Splits server-to-client WebSocket bytes into frames, one at a time.

    Call :meth:`feed` with bytes, then :meth:`next_frame` until it returns None. Fragmented
    messages are returned frame by frame (tickwire never fragments). :meth:`take_buffer` hands
    back the bytes not parsed yet, so a caller can switch to counting raw bytes at a frame
    boundary.
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        """Add received bytes."""
        self._buf += data

    def next_frame(self) -> Frame | None:
        """The next complete frame, or None when more bytes are needed."""
        buf = self._buf
        if len(buf) < 2:
            return None
        length = buf[1] & 0x7F
        masked = buf[1] & 0x80
        pos = 2
        if length == 126:
            if len(buf) < 4:
                return None
            length = int.from_bytes(buf[2:4], "big")
            pos = 4
        elif length == 127:
            if len(buf) < 10:
                return None
            length = int.from_bytes(buf[2:10], "big")
            pos = 10
        mask = b""
        if masked:
            if len(buf) < pos + 4:
                return None
            mask = bytes(buf[pos : pos + 4])
            pos += 4
        if len(buf) < pos + length:
            return None
        payload = bytes(buf[pos : pos + length])
        if mask:
            key = int.from_bytes((mask * (length // 4 + 1))[:length], "big")
            payload = (int.from_bytes(payload, "big") ^ key).to_bytes(length, "big")
        opcode = buf[0] & 0x0F
        del buf[: pos + length]
        return Frame(opcode, payload)

    def take_buffer(self) -> bytes:
        """The bytes fed but not parsed into frames; the reader is empty afterwards."""
        rest = bytes(self._buf)
        self._buf.clear()
        return rest


# -- Server-Sent Events -------------------------------------------------------------------------


@dataclass(slots=True)
class SseEvent:
    """One event: its ``event`` name (``message`` if none), ``id`` and joined ``data``."""

    event: str = "message"
    id: str | None = None
    data: bytes = b""


@dataclass
class SseReader:
    """Splits a decoded ``text/event-stream`` body into events (blank-line separated)."""

    _buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[SseEvent]:
        """The events completed by ``data``."""
        self._buf += data
        events: list[SseEvent] = []
        while True:
            end = self._buf.find(b"\n\n")
            if end < 0:
                return events
            block = bytes(self._buf[:end])
            del self._buf[: end + 2]
            event = SseEvent()
            data_lines: list[bytes] = []
            for line in block.split(b"\n"):
                name, _, value = line.partition(b":")
                value = value[1:] if value.startswith(b" ") else value
                if name == b"event":
                    event.event = value.decode()
                elif name == b"id":
                    event.id = value.decode()
                elif name == b"data":
                    data_lines.append(value)
            event.data = b"\n".join(data_lines)
            events.append(event)


# -- counting -----------------------------------------------------------------------------------


class MarkerCounter:
    """Counts occurrences of a byte marker in a stream split at arbitrary points.

    A marker split across two ``feed()`` calls is counted once: the last ``len(marker) - 1``
    bytes of each call are kept and searched with the next one. The search itself runs in C
    (``bytes.count``), which is what lets one process keep up with many streaming clients.
    """

    __slots__ = ("_keep", "_marker", "_tail", "count")

    def __init__(self, marker: bytes) -> None:
        if not marker:
            raise ValueError("the marker must not be empty")
        self._marker = marker
        self._keep = len(marker) - 1
        self._tail = b""
        self.count = 0

    def feed(self, data: bytes) -> int:
        """Count the markers completed by ``data``; returns how many were added."""
        marker = self._marker
        added = data.count(marker)
        keep = self._keep
        if keep and self._tail:
            added += (self._tail + data[:keep]).count(marker)
        if keep:
            self._tail = data[-keep:] if len(data) >= keep else (self._tail + data)[-keep:]
        self.count += added
        return added
