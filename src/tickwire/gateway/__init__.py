"""Gateways: the streaming surfaces (Server-Sent Events; the WebSocket gateway)."""
