"""Through the HTTP API with real gateways: a session is created, joined by short code,
streamed, and ended (its connections close with 4004 and its stream data is removed)."""

from __future__ import annotations

import time
from functools import partial

import msgpack
import pytest
import trio

from gateway import session_store, streams, tokens
from gateway.client import Client, ClientError
from gateway.codec import Close
from gateway.config import GatewayConfig
from tests.router.test_api import AGENT_KEY, assert_error, auth, has_events, serving
from tests.support.keys import KEYRING


async def run_until_fatal(
    ends: dict[str, ClientError], name: str, c: Client, task_status=trio.TASK_STATUS_IGNORED
) -> None:
    """Run a client; the error that ended it goes into `ends[name]`."""
    try:
        await c.run(task_status=task_status)
    except ClientError as exc:
        ends[name] = exc


async def check_history(api, sid: str) -> None:
    """The replay's reads: the stored visitor events page by page, for an agent key only."""
    opened = await api.http.post(f"/v1/sessions/{sid}/replay", headers=auth())
    assert opened.status_code == 200, opened.text
    tokens.verify(KEYRING, opened.json()["agent_token"], sid=sid, role="agent", now=time.time())
    r = await api.http.get(f"/v1/sessions/{sid}/history", headers=auth())
    assert r.status_code == 200 and r.headers["content-type"] == "application/msgpack"
    page = msgpack.unpackb(r.content, raw=False)
    kinds = [(e[1], e[2], e[3]) for e in page["events"]]  # epoch, seq, kind
    assert kinds == [(1, 1, "snapshot"), (1, 2, "mutation")] and page["next"] is None
    assert page["events"][1][5] == {"x": 1}
    # One message a page: the first page names where the second starts.
    first = msgpack.unpackb(
        (await api.http.get(f"/v1/sessions/{sid}/history?limit=1", headers=auth())).content
    )
    assert [e[2] for e in first["events"]] == [1] and first["next"] == page["events"][1][0]
    rest = msgpack.unpackb(
        (
            await api.http.get(f"/v1/sessions/{sid}/history?from={first['next']}", headers=auth())
        ).content
    )
    assert [e[2] for e in rest["events"]] == [2] and rest["next"] is None
    bad = await api.http.get(f"/v1/sessions/{sid}/history", headers={"Authorization": "Bearer x"})
    assert_error(bad, 401, "bad_api_key")
    assert_error(
        await api.http.get("/v1/sessions/nope/history", headers=auth()), 404, "unknown_session"
    )
    assert (
        await api.http.get(f"/v1/sessions/{sid}/history?from=0", headers=auth())
    ).status_code == 422


async def test_create_join_stream_and_end(nats_server, gateways_factory):
    g = gateways_factory(nats_server.url)
    g.start("gw-a")
    g.start("gw-b")
    async with serving(nats_server.url, gateways=False) as api:
        with trio.fail_after(20):  # both gateways have registered themselves
            while True:
                r = await api.http.get("/v1/cluster", headers=auth())
                if len([x for x in r.json()["gateways"] if x["state"] == "active"]) == 2:
                    break
                await trio.sleep(0.2)
        created = await api.create()
        sid = created["session_id"]
        assert set(created["gateways"]) == {g.url("gw-a"), g.url("gw-b")}
        looked = (await api.lookup(created["short_code"])).json()
        assert looked["session_id"] == sid and looked["gateways"] == created["gateways"]
        visitor = Client(created["gateways"], sid, created["visitor_token"], "visitor")
        agent = Client(looked["gateways"], sid, looked["agent_token"], "agent")
        ends: dict[str, ClientError] = {}
        run = partial(run_until_fatal, ends)

        async with trio.open_nursery() as n:
            await n.start(run, "visitor", visitor)
            await visitor.send_snapshot(b"<html>")
            await visitor.wait_acked(1)
            await n.start(run, "agent", agent)
            await visitor.send("mutation", {"x": 1})
            with trio.fail_after(10):
                got = [await agent.events.receive() for _ in range(2)]
            assert visitor.gateway == agent.gateway  # rendezvous order: they meet
            await check_history(api, sid)
            r = await api.http.delete(
                f"/v1/sessions/{sid}", headers={"Authorization": f"Bearer {AGENT_KEY}"}
            )
            assert r.status_code in (200, 204), r.text
            with trio.fail_after(10):
                while len(ends) < 2:
                    await trio.sleep(0.05)
        assert [d.seq for d in got] == [1, 2]
        assert ends["visitor"].close_code == ends["agent"].close_code == Close.SESSION_ENDED
        assert not await has_events(api.bridge, "COBROWSE", streams.subject_v(sid))
        # An ended session cannot be joined again.
        again = Client(created["gateways"], sid, created["visitor_token"], "visitor")
        with pytest.raises(ClientError) as exc:
            with trio.fail_after(10):
                await again.run()
        assert exc.value.close_code == Close.SESSION_ENDED


async def test_a_visitor_ends_for_good(nats_server, gateways_factory):
    """The visitor's End (DELETE with its own join token, what `Cobrowse.end()` sends): the
    visitor and the agent close with 4004; the old resume token is refused with 4004, and
    so are a new agent token and the code; and once the session's metadata has expired (the
    issue's case: an expired join token with a resume token got a welcome), still 4004."""
    g = gateways_factory(nats_server.url)
    g.start("gw-a")
    async with serving(nats_server.url, gateways=False) as api:
        with trio.fail_after(20):
            while not (await api.http.get("/v1/cluster", headers=auth())).json()["gateways"]:
                await trio.sleep(0.2)
        created = await api.create()
        sid, urls = created["session_id"], created["gateways"]
        looked = (await api.lookup(created["short_code"])).json()
        visitor = Client(urls, sid, created["visitor_token"], "visitor")
        agent = Client(urls, sid, looked["agent_token"], "agent")
        ends: dict[str, ClientError] = {}
        run = partial(run_until_fatal, ends)

        async with trio.open_nursery() as n:
            await n.start(run, "visitor", visitor)
            await n.start(run, "agent", agent)
            await visitor.send_snapshot(b"<html>")
            await visitor.wait_acked(1)
            rts = {"visitor": visitor.rt, "agent": agent.rt}
            r = await api.http.delete(f"/v1/sessions/{sid}", headers=auth(created["visitor_token"]))
            assert r.status_code == 200, r.text
            with trio.fail_after(10):
                while len(ends) < 2:
                    await trio.sleep(0.05)
        assert {k: e.close_code for k, e in ends.items()} == {
            "visitor": Close.SESSION_ENDED,
            "agent": Close.SESSION_ENDED,
        }
        assert_error(await api.lookup(created["short_code"]), 404, "unknown_code")

        async def refused(role: str, token: str, rt: str | None) -> int | None:
            c = Client(urls, sid, token, role)
            c.rt = rt
            with pytest.raises(ClientError) as exc:
                with trio.fail_after(10):
                    await c.run()
            return exc.value.close_code

        expired = {
            role: tokens.mint(KEYRING, sid=sid, role=role, now=time.time() - 7200, ttl=3600)
            for role in ("visitor", "agent")
        }
        fresh_agent = tokens.mint(KEYRING, sid=sid, role="agent", now=time.time(), ttl=3600)
        assert (
            await refused("visitor", created["visitor_token"], rts["visitor"])
            == Close.SESSION_ENDED
        )
        assert await refused("agent", fresh_agent, None) == Close.SESSION_ENDED
        # The session's metadata expires (COBROWSE_STREAM_MAX_AGE): the ended record answers.
        await api.bridge.call(api.kv_sessions.purge, sid)
        assert await api.bridge.call(session_store.load, api.kv_sessions, sid) is None
        for role in ("visitor", "agent"):
            assert await refused(role, expired[role], rts[role]) == Close.SESSION_ENDED
        assert await refused("visitor", created["visitor_token"], None) == Close.SESSION_ENDED
        # The record outlives every token: the bucket's TTL covers the gateway's resume
        # tokens (24 h) and the router's join tokens, plus the skew.
        info = await api.bridge.call(api.bridge.js.stream_info, f"KV_{session_store.ENDED_BUCKET}")
        longest = max(GatewayConfig(keyring=KEYRING).resume_ttl, api.cfg.token_ttl)
        assert info.config.max_age >= longest + session_store.ENDED_SKEW
