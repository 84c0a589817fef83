"""Closing handshakes on picows transports, the same for every stream surface.

RFC 6455 §5.5.1: after sending a CLOSE frame an endpoint sends no other frame, and it answers a
peer's CLOSE with one CLOSE, echoing the status code. A code that may not be sent (none, which
picows reports as ``NO_INFO`` and would put on the wire as 0, or 1005, 1006, 1015 and codes
outside the ranges) is answered with 1000. Whoever closes, a peer that stops reading cannot
hold the socket: it is aborted after a grace period.
"""

from __future__ import annotations

import asyncio

from picows import WSCloseCode, WSFrame, WSTransport

from ..protocol.session import MAX_CLOSE_REASON_BYTES

__all__ = ["answer_close", "echo_code", "send_close"]


def echo_code(received: int) -> int:
    """The status code to answer a peer's CLOSE with ``received`` (see the module docstring)."""
    if 1000 <= received <= 1003 or 1007 <= received <= 1014 or 3000 <= received <= 4999:
        return received
    return 1000


def send_close(transport: WSTransport, code: int, reason: str, *, grace: float) -> bool:
    """Send our CLOSE (``code``, ``reason`` cut to whole UTF-8 characters) unless one was sent
    or the transport is gone, and abort the socket if it is still open ``grace`` seconds later;
    True if the frame was sent now."""
    if transport.is_close_frame_sent or transport.is_disconnected:
        return False
    data = reason.encode()[:MAX_CLOSE_REASON_BYTES].decode("utf-8", "ignore").encode()
    transport.send_close(WSCloseCode(code), data)
    _abort_later(transport, grace)
    return True


def answer_close(transport: WSTransport, frame: WSFrame, *, grace: float) -> None:
    """Answer the peer's CLOSE ``frame`` with ours (if not sent yet), then disconnect once the
    send buffer drains, or abort after ``grace`` seconds if it does not."""
    if not transport.is_close_frame_sent:
        transport.send_close(WSCloseCode(echo_code(frame.get_close_code().value)))
        _abort_later(transport, grace)
    transport.disconnect()


def _abort_later(transport: WSTransport, grace: float) -> None:
    asyncio.get_running_loop().call_later(grace, _abort_if_connected, transport)


def _abort_if_connected(transport: WSTransport) -> None:
    if not transport.is_disconnected:
        transport.disconnect(graceful=False)
