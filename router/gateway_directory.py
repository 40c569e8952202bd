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

from collections.abc import Awaitable, Callable

import trio

from gateway.membership import GatewayInfo

from .read_cache import ReadCache

MEMBERS_TTL = 0.5  # seconds a read of the registry answers requests


class GatewayDirectory:
    """The registry's gateways for the API's requests; `read` reads the registry."""

    def __init__(
        self, read: Callable[[], Awaitable[list[GatewayInfo]]], ttl: float = MEMBERS_TTL
    ) -> None:
        self._read = read
        self._cache: ReadCache[list[GatewayInfo]] = ReadCache(ttl)
        self._lock = trio.Lock()

    async def gateways(self) -> list[GatewayInfo]:
        found = self._cache.get(trio.current_time())
        if found is not None:
            return found
        async with self._lock:
            started = trio.current_time()
            found = self._cache.get(started)  # another asker read it while this one waited
            if found is None:
                found = await self._read()
                self._cache.put(started, found)
            return found

    def clear(self) -> None:
        """This router asked for a change (a drain) and had its answer: the next asker reads
        the registry again, where the gateway recorded "draining" before it answered."""
        self._cache.clear()
