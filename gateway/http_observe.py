"""What an SRE sees of an HTTP service (the router's API, the asset proxy): per request, one
count by route and status, one latency observation by route, one access-log line.

An ASGI middleware, shared by both services. The route is the matched route's template
(`/v1/sessions/{session_id}`), never the raw path, so the metrics' label values are as many
as the app has routes plus one (`unmatched`: 404s of paths no route knows), whatever a
client requests. The access log's client is the caller behind `forwarded_hops` trusted
proxies (gateway/forwarded.py), as the rate limits see it. Probe and scrape routes are logged
at DEBUG: a kubelet asks every few seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import structlog
import trio
from prometheus_client import Counter, Histogram

from .forwarded import forwarded_client

UNMATCHED = "unmatched"
CLIENT_CLOSED = 499  # nginx's status for a client that left before its answer began
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
# Seconds: from a cache hit (~1 ms) to a proxied origin fetch at its timeout (10 s).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

log = structlog.get_logger("http")


@dataclass(frozen=True)
class HttpMetrics:
    """`cobrowse_<component>_requests_total{route,status}` and
    `cobrowse_<component>_request_duration_seconds{route}`."""

    requests: Counter
    duration: Histogram

    @classmethod
    def named(cls, component: str) -> HttpMetrics:
        return cls(
            Counter(
                f"cobrowse_{component}_requests_total",
                "HTTP requests by route template and status",
                ["route", "status"],
            ),
            Histogram(
                f"cobrowse_{component}_request_duration_seconds",
                "HTTP request time, from its start to the end of its answer, by route template",
                ["route"],
                buckets=BUCKETS,
            ),
        )


def route_of(scope: dict[str, Any]) -> str:
    """The template of the route that served the request (Starlette puts it in the scope)."""
    return getattr(scope.get("route"), "path", None) or UNMATCHED


def caller(scope: dict[str, Any], forwarded_hops: int) -> str:
    """The client's address behind `forwarded_hops` trusted proxies."""
    peer = scope.get("client")
    hops = [v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"x-forwarded-for"]
    return forwarded_client(hops, peer[0] if peer else "unknown", forwarded_hops)


@dataclass(frozen=True)
class HttpObserver:
    """ASGI middleware: metrics and an access-log line (`http_request`) for each request."""

    app: Any
    metrics: HttpMetrics
    forwarded_hops: int = 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status: int | None = None

        async def watched_send(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except BaseException as exc:
            if status is None:
                status = CLIENT_CLOSED if isinstance(exc, trio.Cancelled) else 500
            raise
        finally:
            self.record(scope, status or 500, time.perf_counter() - start)

    def record(self, scope: dict[str, Any], status: int, seconds: float) -> None:
        route = route_of(scope)
        self.metrics.requests.labels(route=route, status=str(status)).inc()
        self.metrics.duration.labels(route=route).observe(seconds)
        say = log.debug if route in QUIET_ROUTES else log.info
        say(
            "http_request",
            method=scope.get("method"),
            route=route,
            path=scope.get("path"),
            status=status,
            duration_ms=round(seconds * 1000, 1),
            client=caller(scope, self.forwarded_hops),
        )
