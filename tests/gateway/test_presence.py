"""Visitor presence as agents are told it (gateway/presence.py): stale news from an older
visitor connection never overrides a newer one, and nothing is said twice."""

from __future__ import annotations

import itertools

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from gateway.client import Client
from gateway.presence import PresenceView, VisitorClose, VisitorState, after_close
from tests.support.keys import mint, new_sid

LIVE, AWAY, LEFT = VisitorState.LIVE, VisitorState.AWAY, VisitorState.LEFT


@pytest.mark.parametrize(
    ("how", "said"),
    [
        (VisitorClose.BYE, LEFT),
        (VisitorClose.DROPPED, AWAY),
        (VisitorClose.REPLACED, None),  # the newer connection announces itself
        (VisitorClose.ENDED, None),  # agents hear the end instead
    ],
)
def test_what_a_closing_visitor_connection_announces(how, said):
    assert after_close(how) is said


def test_a_reload_seen_out_of_order_stays_live():
    view = PresenceView()
    assert view.on_news(LIVE, 1) is LIVE
    assert view.on_news(LIVE, 2) is LIVE  # the reloaded page's connection
    assert view.on_news(AWAY, 1) is None  # the old socket's drop, noticed late
    assert view.on_news(LIVE, 2) is None  # re-announced when another agent joined


def test_a_drop_then_a_resume():
    view = PresenceView()
    assert [view.on_news(s, g) for s, g in [(LIVE, 3), (AWAY, 3), (LIVE, 4), (LEFT, 4)]] == [
        LIVE,
        AWAY,
        LIVE,
        LEFT,
    ]


def test_a_connection_that_went_does_not_come_back():
    view = PresenceView()
    view.on_news(LIVE, 5)
    view.on_news(LEFT, 5)
    assert view.on_news(LIVE, 5) is None  # a late re-announcement of the same connection


news = st.lists(st.tuples(st.sampled_from(list(VisitorState)), st.integers(0, 6)), max_size=30)


@given(news)
def test_what_an_agent_is_told_follows_the_newest_connection(items):
    view = PresenceView()
    told = [(s, g) for s, g in items if view.on_news(s, g) is not None]
    gens = [g for _, g in told]
    assert gens == sorted(gens)  # never back to an older connection
    assert all(a != b for a, b in itertools.pairwise(told))  # never the same news twice
    for g in set(gens):
        states = [s for s, gg in told if gg == g]
        assert LIVE not in states[1:]  # once away or left, that connection stays so
    if told:
        newest = max(g for _, g in items)
        said_newest = [s for s, g in items if g == newest]
        assert told[-1][1] == newest or not said_newest


# ---- through real gateways: the visitor on gw-a, agents on gw-b and gw-a ------------------------


class Heard:
    """An agent's `ctl` `visitor` frames, in order, with a way to wait for the next."""

    def __init__(self) -> None:
        self.states: list[str] = []
        self._changed = trio.Event()

    def on_control(self, ctl) -> None:
        if ctl.op == "visitor":
            self.states.append(ctl.msg)
            self._changed.set()
            self._changed = trio.Event()

    async def until(self, n: int) -> list[str]:
        with trio.fail_after(10):
            while len(self.states) < n:
                await self._changed.wait()
        return self.states


async def test_agents_hear_the_visitor_come_drop_resume_and_leave(two_gateways):
    g = two_gateways
    sid = new_sid()
    visitor = Client([g.url("gw-a")], sid, mint(sid, "visitor"), "visitor")
    first, second = Heard(), Heard()
    agent = Client([g.url("gw-b")], sid, mint(sid, "agent"), "agent", on_control=first.on_control)
    other = Client([g.url("gw-a")], sid, mint(sid, "agent"), "agent", on_control=second.on_control)
    async with trio.open_nursery() as n:
        await n.start(agent.run)
        await trio.sleep(0.3)
        assert first.states == []  # no visitor yet: nothing to say
        async with trio.open_nursery() as vn:
            await vn.start(visitor.run)
            assert await first.until(1) == ["live"]
            vn.cancel_scope.cancel()  # the visitor's network drops: no bye
        assert await first.until(2) == ["live", "away"]
        await n.start(visitor.run)  # resumes
        assert await first.until(3) == ["live", "away", "live"]
        await n.start(other.run)  # a second agent learns the visitor is here
        assert await second.until(1) == ["live"]
        visitor.close()  # bye, without ending the session
        assert await first.until(4) == ["live", "away", "live", "left"]
        assert await second.until(2) == ["live", "left"]
        agent.close()
        other.close()
        n.cancel_scope.cancel()
