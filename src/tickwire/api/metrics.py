"""Prometheus metrics: HTTP requests and latencies, plus the node's tick path, at ``/metrics``.

Request metrics are labelled by route template (``/v1/bars/{symbol}``), never by raw path, so
label cardinality is bounded by the number of routes. Node figures are read at scrape time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..node import Node

__all__ = ["Metrics", "MetricsMiddleware"]

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class _NodeCollector(Collector):
    def __init__(self, node: Callable[[], Node | None]) -> None:
        self._node = node

    def collect(self) -> Iterator[Metric]:
        node = self._node()
        if node is None:
            return
        yield _gauge("tickwire_epoch", "Current journal epoch.", node.journal.epoch)
        yield _gauge("tickwire_journal_offset", "Last journaled offset.", node.journal.last_offset)
        yield _counter(
            "tickwire_ticks_committed",
            "Ticks journaled since start.",
            node.tickplant.committed_ticks,
        )
        yield _counter("tickwire_commits", "Group commits since start.", node.tickplant.commits)
        yield _gauge(
            "tickwire_store_offset", "Last offset in the store.", node.writer.applied_offset
        )
        yield _gauge(
            "tickwire_store_lag_ticks", "Journaled ticks not yet in the store.", node.writer.lag
        )
        yield _gauge("tickwire_ring_ticks", "Ticks held in the resume ring.", len(node.bus.ring))
        yield _gauge(
            "tickwire_journal_failing",
            "1 while the journal refuses writes.",
            int(node.tickplant.failure is not None),
        )
        yield _gauge("tickwire_ready", "1 once the node is ready.", int(node.ready))


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


class Metrics:
    """One registry per application (no global state), with HTTP and node metrics."""

    def __init__(self, node: Callable[[], Node | None]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "tickwire_http_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tickwire_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "tickwire_http_requests_in_flight",
            "HTTP requests being served.",
            registry=self.registry,
        )
        self.connections = Gauge(
            "tickwire_connections",
            "Open client connections by protocol.",
            ["protocol"],
            registry=self.registry,
        )
        self.registry.register(_NodeCollector(node))

    async def endpoint(self, request: Request) -> Response:
        """``GET /metrics`` in the Prometheus text format."""
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class MetricsMiddleware:
    """Counts and times every HTTP request; a pure ASGI middleware (no body buffering)."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, record_status)
        finally:
            self.metrics.in_flight.dec()
            route: Any = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(label, scope["method"], str(status)).inc()
            self.metrics.latency.labels(label).observe(time.perf_counter() - started)
