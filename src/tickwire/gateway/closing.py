"""Closing handshakes on picows transports, the same for every stream surface.

RFC 6455 §5.5.1: after sending a CLOSE frame an endpoint sends no other frame, and it answers a
peer's CLOSE with one CLOSE (echoing the status code). picows reports a CLOSE without a status
code as ``NO_INFO`` and would put that value, 0, on the wire if echoed: such a close is answered
with 1000 instead.
"""

from __future__ import annotations

from picows import WSCloseCode, WSFrame, WSTransport

from ..protocol.session import MAX_CLOSE_REASON_BYTES

__all__ = ["answer_close", "send_close"]


def send_close(transport: WSTransport, code: int, reason: str) -> bool:
    """Send our CLOSE (``code``, ``reason`` cut to whole UTF-8 characters) unless one was sent
    or the transport is gone; True if it was sent now."""
    if transport.is_close_frame_sent or transport.is_disconnected:
        return False
    data = reason.encode()[:MAX_CLOSE_REASON_BYTES].decode("utf-8", "ignore").encode()
    transport.send_close(WSCloseCode(code), data)
    return True


def answer_close(transport: WSTransport, frame: WSFrame) -> None:
    """Answer the peer's CLOSE ``frame`` with ours (if not sent yet), then disconnect."""
    if not transport.is_close_frame_sent:
        code = frame.get_close_code()
        transport.send_close(WSCloseCode.OK if code == WSCloseCode.NO_INFO else code)
    transport.disconnect()
