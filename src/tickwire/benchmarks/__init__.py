"""Benchmarks that run against a real tickwire server: ``tickwire bench``.

* :mod:`.rest_vs_ws`: REST polling against WebSocket streaming (``tickwire bench rest-vs-ws``);
  the grid, the cells and their figures;
* :mod:`.clients`: the measuring clients, one asyncio protocol per way of receiving ticks;
* :mod:`.wire`: their sans-I/O HTTP, WebSocket and SSE parsing;
* :mod:`.target`: the server under test (spawned, or given by URL);
* :mod:`.report`: the Markdown and HTML report, ``results.csv`` and the plots;
* :mod:`.cli`: the ``bench`` command group.
"""

from __future__ import annotations

__all__: list[str] = []
