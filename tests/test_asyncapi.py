"""The AsyncAPI document matches the protocol code, and docs/protocol.md names every message."""

from __future__ import annotations

import json
from pathlib import Path

from tickwire.protocol import messages
from tickwire.protocol.asyncapi import asyncapi_document

DOCS = Path(__file__).parent.parent / "docs"


def test_committed_asyncapi_is_current() -> None:
    """docs/asyncapi.json equals the document generated from the message Structs."""
    committed = json.loads((DOCS / "asyncapi.json").read_text())
    assert committed == json.loads(json.dumps(asyncapi_document()))


def test_every_message_is_documented() -> None:
    """Each client action and server message type appears in the AsyncAPI and protocol.md."""
    document = asyncapi_document()
    names = {m["name"] for m in document["components"]["messages"].values()}
    assert names >= set(messages.CLIENT_ACTIONS)
    server_types = {
        "welcome",
        "ack",
        "subscriptions",
        "snapshot",
        "ticks",
        "quotes",
        "bar",
        "heartbeat",
        "resume",
        "lag",
        "error",
        "pong",
    }
    assert names >= server_types
    reference = (DOCS / "protocol.md").read_text()
    for name in names:
        assert f"`{name}`" in reference, name
