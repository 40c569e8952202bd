"""Which gateways the API hands out: the registry read at most once per `ttl`.

Every session create and code lookup answers with the session's gateway URLs (rendezvous
order over the active gateways, gateway/membership.py). Reading the registry is a KV keys
listing (an ordered consumer made and deleted) and a get per gateway: 15-20 ms of the
router's time here, about half of a create, and in a 300-session ramp those reads queued the
API's requests for 1-3 s. The directory shares one read among all requests for `ttl`
(0.5 s); askers that find it stale together wait for one read instead of each making one.
A gateway that starts draining is handed out for at most `ttl` after it recorded that in
the registry, and a client sent there is refused on the draining lane and tries the next
URL. A drain requested through this router is not handed out at all after the answer: a
gateway answers once the registry says "draining", and the answer clears the directory.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
import trio

from gateway.agent_roster import LiveGateways
from gateway.membership import GatewayInfo

from .read_cache import ReadCache

log = structlog.get_logger("router.directory")

MEMBERS_TTL = 0.5  # seconds a read of the registry answers requests
# An inspect or a listing waits at most this long for the registry (a read takes 15-20 ms);
# without it, they answer as if every gateway were up rather than stall on it.
LIVE_WAIT = 2.0


@dataclass(frozen=True, slots=True)
class RegistryRead:
    gateways: list[GatewayInfo]
    read_at: float  # Unix seconds, for judging agents' joins against it


class GatewayDirectory:
    """The registry's gateways for the API's requests; `read` reads the registry."""

    def __init__(
        self,
        read: Callable[[], Awaitable[list[GatewayInfo]]],
        ttl: float = MEMBERS_TTL,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._read = read
        self._wall = wall
        self._cache: ReadCache[RegistryRead] = ReadCache(ttl)
        self._lock = trio.Lock()

    async def gateways(self) -> list[GatewayInfo]:
        return (await self._registry()).gateways

    async def live(self) -> LiveGateways | None:
        """The registered gateway processes, for telling an agent whose gateway was killed
        from a connected one (gateway/agent_roster.py); None when the registry cannot be
        read within `LIVE_WAIT` (then every agent not marked away counts as connected, as
        without it)."""
        found = None
        try:
            with trio.move_on_after(LIVE_WAIT):
                found = await self._registry()
        except Exception as exc:
            log.warning("registry_unreadable", error=repr(exc))
            return None
        if found is None:
            log.warning("registry_unreadable", error=f"no answer in {LIVE_WAIT} s")
            return None
        instances = frozenset(g.instance for g in found.gateways if g.instance)
        return LiveGateways(instances, found.read_at)

    async def _registry(self) -> RegistryRead:
        found = self._cache.get(trio.current_time())
        if found is not None:
            return found
        async with self._lock:
            started = trio.current_time()
            found = self._cache.get(started)  # another asker read it while this one waited
            if found is None:
                wall = self._wall()
                found = RegistryRead(await self._read(), wall)
                self._cache.put(started, found)
            return found

    def clear(self) -> None:
        """This router asked for a change (a drain) and had its answer: the next asker reads
        the registry again, where the gateway recorded "draining" before it answered."""
        self._cache.clear()
