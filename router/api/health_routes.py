"""`/healthz` (the process answers) and `/readyz` (and its NATS connection is up: the API can
do nothing without it), for the orchestrator's probes."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.nats_bridge import NatsBridge

from .deps import Deps
from .errors import ApiError, doc
from .models import Health

routes = APIRouter()


def nats_state(bridge: NatsBridge) -> str:
    """`connected`, `reconnecting` or `closed`."""
    nc = bridge.nc
    if nc.is_connected:
        return "connected"
    if nc.is_reconnecting:
        return "reconnecting"
    return "closed"


@routes.get("/healthz", response_model=Health, tags=["health"], summary="Liveness")
async def healthz(deps: Deps) -> Health:
    return Health(status="ok", nats=nats_state(deps.bridge))


@routes.get(
    "/readyz",
    response_model=Health,
    tags=["health"],
    summary="Readiness: NATS is connected",
    responses=doc((503, "not_ready")),
)
async def readyz(deps: Deps) -> Health:
    state = nats_state(deps.bridge)
    if state != "connected":
        raise ApiError(503, "not_ready", f"NATS is {state}")
    return Health(status="ok", nats=state)
