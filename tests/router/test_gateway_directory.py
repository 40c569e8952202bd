"""The API's view of the gateways' registry (router/gateway_directory.py): one read shared
for its ttl, one read for askers that find it stale together, cleared by this router's drain.
The registry here is a counted function; the routes use it over real NATS in test_api.py."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from gateway.agent_roster import LiveGateways
from gateway.membership import GatewayInfo
from router.gateway_directory import LIVE_WAIT, GatewayDirectory
from router.read_cache import ReadCache


class Registry:
    """A registry whose reads take `delay` seconds and return what it holds at their end."""

    def __init__(self, delay: float = 0.01) -> None:
        self.delay = delay
        self.gateways = [GatewayInfo(id="gw-a", url="ws://a/")]
        self.reads = 0

    async def read(self) -> list[GatewayInfo]:
        self.reads += 1
        await trio.sleep(self.delay)
        return list(self.gateways)


def test_a_read_cache_answers_for_its_ttl_only():
    cache: ReadCache[list[int]] = ReadCache(ttl=0.5)
    assert cache.get(10.0) is None
    cache.put(10.0, [1])
    assert cache.get(10.0) == [1] and cache.get(10.49) == [1]
    assert cache.get(10.5) is None  # stale
    assert cache.get(9.0) is None  # a clock that went back does not pin an old read
    cache.put(20.0, [])
    assert cache.get(20.1) == []  # an empty read is a read, not a miss
    cache.clear()
    assert cache.get(20.1) is None


def test_askers_share_one_read_for_the_ttl_then_see_a_change():
    async def main():
        registry = Registry()
        directory = GatewayDirectory(registry.read, ttl=0.5)
        assert [g.id for g in await directory.gateways()] == ["gw-a"]
        registry.gateways.append(GatewayInfo(id="gw-b", url="ws://b/"))
        await trio.sleep(0.3)
        assert [g.id for g in await directory.gateways()] == ["gw-a"]  # within the ttl
        assert registry.reads == 1
        await trio.sleep(0.3)
        assert [g.id for g in await directory.gateways()] == ["gw-a", "gw-b"]
        assert registry.reads == 2

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_askers_that_find_it_stale_together_wait_for_one_read():
    async def main():
        registry = Registry(delay=0.2)
        directory = GatewayDirectory(registry.read, ttl=0.5)
        answers = []

        async def ask():
            answers.append(await directory.gateways())

        async with trio.open_nursery() as n:
            for _ in range(20):
                n.start_soon(ask)
        assert registry.reads == 1 and len(answers) == 20
        assert all([g.id for g in a] == ["gw-a"] for a in answers)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_drain_through_this_router_clears_it_and_a_failed_read_is_not_kept():
    async def main():
        registry = Registry()
        directory = GatewayDirectory(registry.read, ttl=0.5)
        await directory.gateways()
        registry.gateways[0] = GatewayInfo(id="gw-a", url="ws://a/", state="draining")
        directory.clear()
        assert (await directory.gateways())[0].state == "draining"
        assert registry.reads == 2

        tries = 0

        async def broken() -> list[GatewayInfo]:
            nonlocal tries
            tries += 1
            raise OSError("NATS is away")

        failing = GatewayDirectory(broken, ttl=0.5)
        for _ in range(2):  # each asker gets the error; nothing stale is cached in its place
            try:
                await failing.gateways()
            except OSError:
                pass
            else:
                raise AssertionError("a failed read must raise")
        assert tries == 2  # the second asker read again: the failure was not cached

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_the_live_instances_are_those_of_one_read_stamped_when_it_started():
    """`live()` judges agents' joins (gateway/agent_roster.py): it is stamped with the wall
    time before the read (a join before that whose instance is missing was not registered),
    gateways of a version without instances are left out, and an unreadable registry gives
    None (every agent not marked away then counts as connected) instead of an error."""

    async def main():
        registry = Registry(delay=0.2)
        registry.gateways = [
            GatewayInfo(id="gw-a", url="ws://a/", instance="i-a"),
            GatewayInfo(id="gw-old", url="ws://o/"),
        ]
        walls = iter([1000.0, 2000.0])
        directory = GatewayDirectory(registry.read, ttl=0.5, wall=lambda: next(walls))
        live = await directory.live()
        assert live == LiveGateways(frozenset({"i-a"}), 1000.0)
        assert [g.id for g in await directory.gateways()] == ["gw-a", "gw-old"]  # the same read
        assert registry.reads == 1

        async def broken() -> list[GatewayInfo]:
            raise OSError("NATS is away")

        assert await GatewayDirectory(broken, ttl=0.5).live() is None
        stuck = GatewayDirectory(Registry(delay=60).read, ttl=0.5)
        start = trio.current_time()
        assert await stuck.live() is None  # a registry that does not answer is not waited on
        assert trio.current_time() - start == pytest.approx(LIVE_WAIT)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
