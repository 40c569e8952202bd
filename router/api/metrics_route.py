"""`GET /metrics` on the API port, when the router has no metrics port of its own.

Behind an Ingress every path of the API port is public, and metrics are not for the public:
production sets `COBROWSE_API_METRICS_PORT` (router/serve.py serves /metrics there and this
route is not added). Without it, as in development, the API port serves /metrics, but a
request that came through one of the `COBROWSE_API_FORWARDED_HOPS` trusted proxies (it has
an `X-Forwarded-For`) gets 404: whatever reaches the router through its Ingress is refused.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..config import RouterConfig
from .errors import ApiError


def through_proxy(request: Request, cfg: RouterConfig) -> bool:
    """Did the request come through a trusted reverse proxy?"""
    return cfg.forwarded_hops > 0 and "x-forwarded-for" in request.headers


def add(app: FastAPI, cfg: RouterConfig) -> None:
    if cfg.metrics_port is not None:
        return

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        if through_proxy(request, cfg):
            raise ApiError(404, "not_found", f"no endpoint {request.url.path}")  # as if none
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
