"""`create_app`: the router's FastAPI app, put together from the parts of this package.

It takes the routes by resource, builds their dependencies once (`ApiDeps`, kept in
`app.state`), installs the error handlers, adds the browser routes (which depend on the
settings) and /metrics where it belongs (metrics_route.py), then the body limit and CORS
middleware (a preflight never reaches the body limit) and, outermost, the request metrics and
access log (gateway/http_observe.py).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from gateway import build_info, membership
from gateway.http_observe import HttpObserver
from gateway.nats_bridge import NatsBridge

from .. import metrics
from ..config import RouterConfig
from ..gateway_directory import GatewayDirectory
from . import (
    browser_routes,
    cluster_routes,
    errors,
    health_routes,
    metrics_route,
    replay_routes,
    session_routes,
)
from .body_limit import BodyLimit
from .deps import ApiDeps, EndedBucket
from .rate_limits import RateLimits, RateRules

API_VERSION = "1.0.0"

DESCRIPTION = """\
Control plane of a cobrowse cluster: create co-browsing sessions, join them as an agent by
short code, list, inspect and end sessions, and see the cluster's gateways.

* **Site key** (public, in the page's script tag): `POST /v1/sessions` body field `site_key`.
* **Agent API key** (secret): `Authorization: Bearer <key>` on every other `/v1` endpoint.
* **Join token** of a session: `Authorization: Bearer <token>` to end that session (DELETE)
  or find its gateways (connect).
* **Admin key** (secret): `Authorization: Bearer <key>` on `/v1/cluster` and the drain endpoint.

Every error is `{"error": {"code": "...", "message": "..."}}` with a stable `code`.
Times are Unix seconds. See docs/api.md for the rules (short codes, rate limits).
"""

RESOURCES = (session_routes, replay_routes, cluster_routes, health_routes)
"""The route modules, in the order their routes are matched and documented. Their routes are
handed to the app as they are, not by `include_router`: FastAPI 0.165 keeps an included router
as one lazy entry, and `app.routes` should list every path (tests/k8s/test_k8s.py checks the
probes and the ingress against it)."""


def create_app(
    cfg: RouterConfig,
    bridge: NatsBridge,
    kv_sessions: Any,
    kv_codes: Any,
    kv_gateways: Any,
    *,
    clock: Callable[[], float] = time.time,
    rng: random.Random | random.SystemRandom | None = None,
) -> FastAPI:
    """The API over an open bridge and the three KV buckets `router serve` makes sure exist.
    `clock` and `rng` (short codes; SystemRandom by default) are for tests."""
    app = FastAPI(
        title="cobrowse router API",
        version=API_VERSION,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        routes=[route for part in RESOURCES for route in part.routes.routes],
    )
    app.state.deps = ApiDeps(
        cfg=cfg,
        bridge=bridge,
        kv_sessions=kv_sessions,
        kv_codes=kv_codes,
        kv_gateways=kv_gateways,
        ended=EndedBucket(bridge, cfg),
        clock=clock,
        codes_rng=rng or random.SystemRandom(),
        limiter=RateLimits(clock),
        rules=RateRules.from_config(cfg),
        directory=GatewayDirectory(lambda: bridge.call(membership.list_gateways, kv_gateways)),
    )
    errors.install(app)
    browser_routes.add(app, cfg)
    metrics_route.add(app, cfg)
    build_info.register("router")
    app.add_middleware(BodyLimit, limit=cfg.max_body_bytes)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(cfg.cors_origins),
        allow_methods=["GET", "POST", "DELETE"],
        allow_headers=["Authorization", "Content-Type"],
        max_age=600,
    )
    # Outermost: it times and logs every answer, CORS preflights and the body limit's 413s too.
    app.add_middleware(HttpObserver, metrics=metrics.HTTP, forwarded_hops=cfg.forwarded_hops)
    return app
