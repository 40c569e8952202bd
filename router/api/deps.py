"""What the routes depend on, built once per app by `create_app` and kept in `app.state`:
the settings, the NATS bridge, the KV buckets, the clock and randomness (passed in so tests
control them), and the rate limiter. A route asks for it with a `Deps` parameter."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from gateway import session_store
from gateway.nats_bridge import NatsBridge

from ..config import RouterConfig
from ..gateway_directory import GatewayDirectory
from ..listing import ListingCache
from .rate_limits import RateLimits, RateRules


class EndedBucket:
    """The ended-sessions bucket, opened (or made, with a TTL outliving the join tokens minted
    here; gateways raise it for their resume tokens) at the first end, not at start-up."""

    def __init__(self, bridge: NatsBridge, cfg: RouterConfig) -> None:
        self._bridge = bridge
        self._cfg = cfg
        self._kv: Any = None

    async def get(self) -> Any:
        if self._kv is None:
            self._kv = await self._bridge.call(
                session_store.ensure_ended_bucket,
                self._bridge.js,
                session_store.ended_ttl(self._cfg.token_ttl),
                self._cfg.stream.storage,
                self._cfg.stream.replicas,
            )
        return self._kv


@dataclass(frozen=True)
class ApiDeps:
    """Everything a route uses besides its request."""

    cfg: RouterConfig
    bridge: NatsBridge
    kv_sessions: Any
    kv_codes: Any
    kv_gateways: Any
    ended: EndedBucket
    clock: Callable[[], float]
    codes_rng: random.Random | random.SystemRandom
    limiter: RateLimits
    rules: RateRules
    directory: GatewayDirectory  # the registry's gateways for creates and lookups
    listing: ListingCache = field(default_factory=ListingCache)


async def api_deps(request: Request) -> ApiDeps:
    """The dependencies of the app serving `request` (set by `create_app`). `async` so that
    FastAPI calls it in the event loop, not in a worker thread (router/api/auth.py)."""
    return request.app.state.deps


Deps = Annotated[ApiDeps, Depends(api_deps)]
