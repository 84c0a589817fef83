"""The live web dashboard at ``/``: a quote board and a candlestick chart.

The page is static HTML, CSS and JavaScript served from this package (no CDN, so the server
works offline). It reads history over REST (``/v1/bars``, ``/v1/symbols``) and live data over
the native stream (``ticks`` with resume, ``bars``), with the API key given in the page URL
(``/?api_key=KEY``) or typed into the page. The only server-side logic is telling the page
where the stream gateway listens, since it is on its own port.
"""

from __future__ import annotations

import html
import ipaddress
import re
from functools import cache
from importlib import resources
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from .. import __version__

__all__ = ["STATIC_DIR", "routes"]

STATIC_DIR = Path(str(resources.files(__package__) / "static"))
"""The page's files; ``vendor/`` holds the pinned libraries (see ``web/README.md``)."""

_STREAM_PORT_PLACEHOLDER = "{{stream_port}}"
_HOSTNAME = re.compile(r"[A-Za-z0-9.-]{1,253}")
_VERSION_PLACEHOLDER = "{{version}}"


@cache
def _render(stream_port: int) -> str:
    """The page for a stream port, read from the package once (no file I/O per request)."""
    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    return page.replace(_STREAM_PORT_PLACEHOLDER, str(stream_port)).replace(
        _VERSION_PLACEHOLDER, html.escape(__version__)
    )


def _csp_host(host: str) -> str:
    """``host`` as a CSP host-source (an IPv6 address in brackets), or "" if it is not one."""
    if _HOSTNAME.fullmatch(host):
        return host
    # an IPv6 literal: ``request.url.hostname`` gives it without its brackets (``::1``)
    literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if ":" not in literal or "%" in literal:
        return ""  # not IPv6, or with a zone index (which no browser puts in an origin)
    try:
        address = ipaddress.IPv6Address(literal)
    except ValueError:
        return ""
    return f"[{address.compressed}]"  # the form a browser's URL parser gives


async def dashboard(request: Request) -> Response:
    """The page, told the stream gateway's port (it may have been picked at start)."""
    stream_port = getattr(request.app.state, "stream_port", 0)
    host = request.url.hostname or ""
    # the page talks only to this host (its REST origin and the stream port): never a key to
    # another host, whatever a link's ?stream= says
    stream = f"ws://{source}:* wss://{source}:*" if (source := _csp_host(host)) else ""
    return HTMLResponse(
        _render(int(stream_port)),
        headers={
            "Cache-Control": "no-cache",
            "Content-Security-Policy": (
                f"default-src 'self'; connect-src 'self' {stream}; img-src 'self' data:; "
                "style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'"
            ),
            "Referrer-Policy": "no-referrer",  # the page URL may carry the key
        },
    )


def routes() -> list[BaseRoute]:
    """``/`` and its static files under ``/static/dashboard``."""
    return [
        Route("/", dashboard, methods=["GET"]),
        Mount(
            "/static/dashboard",
            app=StaticFiles(directory=STATIC_DIR),
            name="dashboard-static",
        ),
    ]
