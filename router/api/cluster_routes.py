"""`/v1/cluster`: the gateways registered in the membership bucket (agent or admin key), and
draining one gateway or one of its workers (admin key). The drain request itself, over NATS,
is `router.gateway_control.request_drain`, shared with `python -m router drain`."""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Path

from gateway import membership

from .. import gateway_control
from .auth import admin_only, agent_or_admin
from .deps import Deps
from .errors import BAD_API_KEY, INVALID, UNAVAILABLE, ApiError, doc
from .models import ClusterResponse, DrainResponse, GatewayOut

log = structlog.get_logger("router.api")

DRAIN_TIMEOUT = 5.0
"""Seconds to wait for a gateway's drain answers; `router drain` uses the same."""

routes = APIRouter()


@routes.get(
    "/v1/cluster",
    response_model=ClusterResponse,
    tags=["cluster"],
    summary="The cluster's gateways (agent API key or admin key)",
    responses=doc(BAD_API_KEY, UNAVAILABLE),
)
async def cluster(key: Annotated[str, Depends(agent_or_admin)], deps: Deps) -> ClusterResponse:
    gws = await deps.bridge.call(membership.list_gateways, deps.kv_gateways)
    return ClusterResponse(
        gateways=[
            GatewayOut(
                id=g.id,
                url=g.url,
                admin_url=g.admin_url,
                state=g.state,
                connections=g.connections,
                load=g.load,
                updated=g.updated,
            )
            for g in gws
        ]
    )


@routes.post(
    "/v1/cluster/gateways/{gateway_id}/drain",
    response_model=DrainResponse,
    tags=["cluster"],
    summary="Drain a gateway (admin key)",
    responses=doc(
        BAD_API_KEY,
        (403, "admin_only"),
        (404, "unknown_gateway"),
        (502, "bad_gateway_reply"),
        UNAVAILABLE,
        INVALID,
    ),
)
async def drain(
    gateway_id: Annotated[
        str,
        Path(
            description="a gateway's id (`[A-Za-z0-9_-]{1,64}`): drains all its workers; "
            "or a worker's id as `GET /v1/cluster` lists it (`gw-1.w0`): drains that one"
        ),
    ],
    key: Annotated[str, Depends(admin_only)],
    deps: Deps,
) -> DrainResponse:
    if not gateway_control.valid_gateway_id(gateway_id):
        raise ApiError(404, "unknown_gateway", f"no gateway {gateway_id!r}")
    try:
        gws = await deps.bridge.call(membership.list_gateways, deps.kv_gateways)
        expect = len(membership.workers_of(gateway_id, gws)) or None
    except Exception:  # the registry unreachable: gather for a moment instead
        expect = None
    try:
        reply = await deps.bridge.call(
            gateway_control.request_drain, deps.bridge.nc, gateway_id, DRAIN_TIMEOUT, expect
        )
    except gateway_control.NoAnswer as exc:
        raise ApiError(404, "unknown_gateway", str(exc)) from None
    except gateway_control.BadReply as exc:
        raise ApiError(502, "bad_gateway_reply", str(exc)) from None
    deps.directory.clear()
    log.info("gateway_drain_requested", gateway=gateway_id)
    return DrainResponse(**reply)
