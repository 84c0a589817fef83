"""The AsyncAPI 3.0 document of the native stream, generated from the message Structs.

The schemas come from :mod:`tickwire.protocol.messages` through msgspec, so the document cannot
drift from the code; ``docs/asyncapi.json`` is this document, and a test checks that it is
current. Regenerate it with ``python -m tickwire.protocol.asyncapi > docs/asyncapi.json``.
"""

from __future__ import annotations

import typing
from typing import Any

import msgspec

from .. import __version__
from . import messages

__all__ = ["asyncapi_document", "main"]


def _members(union: Any) -> list[type[msgspec.Struct]]:
    return [t for t in typing.get_args(union)]


def _tag(struct: type[msgspec.Struct]) -> str:
    return str(struct.__struct_config__.tag)


def asyncapi_document() -> dict[str, Any]:
    """The document (see the module docstring)."""
    client = _members(messages.ClientMessage)
    server = _members(messages.ServerMessage)
    (_, components) = msgspec.json.schema_components(
        [*client, *server], ref_template="#/components/schemas/{name}"
    )
    message_refs: dict[str, Any] = {}
    for struct in [*client, *server]:
        name = struct.__name__
        message_refs[name] = {
            "name": _tag(struct),
            "title": _tag(struct),
            "summary": (struct.__doc__ or "").strip().split("\n")[0],
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{name}"},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "tickwire native stream",
            "version": f"{__version__} (protocol {messages.PROTOCOL_VERSION})",
            "description": (
                "Lossless, ordered, resumable ticks; conflated quotes; live bars. JSON in text "
                "frames by default, MessagePack in binary frames with ?encoding=msgpack. "
                "See docs/protocol.md for the rules, positions and close codes."
            ),
        },
        "servers": {
            "local": {
                "host": "127.0.0.1:8001",
                "protocol": "ws",
                "description": "The stream port (--stream-port).",
            }
        },
        "channels": {
            "stream": {
                "address": "/v1/stream",
                "messages": {
                    name: {"$ref": f"#/components/messages/{name}"} for name in message_refs
                },
                "bindings": {
                    "ws": {
                        "query": {
                            "type": "object",
                            "properties": {
                                "api_key": {"type": "string"},
                                "encoding": {"type": "string", "enum": ["json", "msgpack"]},
                            },
                        }
                    }
                },
            }
        },
        "operations": {
            "sendAction": {
                "action": "send",
                "channel": {"$ref": "#/channels/stream"},
                "summary": "Client actions: login, subscribe, unsubscribe, subscriptions, ping.",
                "messages": [{"$ref": f"#/channels/stream/messages/{t.__name__}"} for t in client],
            },
            "receiveMessage": {
                "action": "receive",
                "channel": {"$ref": "#/channels/stream"},
                "summary": "Server messages, each with a type.",
                "messages": [{"$ref": f"#/channels/stream/messages/{t.__name__}"} for t in server],
            },
        },
        "components": {"messages": message_refs, "schemas": components},
    }


def main() -> None:
    """Print the document as indented JSON."""
    print(msgspec.json.format(msgspec.json.encode(asyncapi_document()), indent=2).decode())


if __name__ == "__main__":
    main()
