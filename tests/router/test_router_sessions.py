"""The router's side of sessions (router/sessions.py): ids, short-code liveness, and the code
claim against a real nats-server."""

from __future__ import annotations

import random
import time

import pytest

from gateway import session_store, streams
from gateway.codec import SESSION_ID_RE
from gateway.nats_bridge import open_bridge
from gateway.session_store import SessionMeta
from router import sessions


def test_session_ids_are_gateway_valid_and_subject_safe():
    for _ in range(2000):
        sid = sessions.new_session_id()
        assert len(sid) == 16 and SESSION_ID_RE.fullmatch(sid)
        assert not set(sid) & set(".*> \t")
    with pytest.raises(ValueError):
        sessions.new_session_id(lambda n: "a.b" * 6)


def test_code_live_rules():
    m = SessionMeta(code="123456", created=1000.0)
    assert sessions.code_live(m, "123456", 1000.0, 60)
    assert sessions.code_live(m, "123456", 1059.9, 60)
    assert not sessions.code_live(m, "123456", 1060.0, 60)  # expired
    assert not sessions.code_live(m, "654321", 1001.0, 60)  # another session's code
    assert not sessions.code_live(None, "123456", 1001.0, 60)
    m.agents = {"a000000000001": 1010.0}
    assert sessions.code_live(m, "123456", 99999.0, 60)  # an agent joined: no expiry
    m.ended = True
    assert not sessions.code_live(m, "123456", 1001.0, 60)
    assert sessions.code_expires_at(SessionMeta(created=5.0), 10) == 15.0


async def test_codes_are_unique_and_stale_codes_are_reused(nats_server):
    """With a one-code space, a second live session cannot get a code, but once the first
    session's code has expired its code is taken over."""
    async with open_bridge(nats_server.url) as bridge:
        kv_s = await bridge.call(streams.ensure_stream, bridge.js, streams.StreamSettings())
        kv_c = await bridge.call(
            sessions.ensure_codes_bucket, bridge.js, "codes_t", 60, "memory", 1
        )

        class One(random.Random):
            def randrange(self, *a):
                return 424242

        now = time.time()

        async def create(sid: str, at: float):
            args = (sessions.create, kv_s, kv_c, sid)
            return await bridge.call(*args, site="s", now=at, code_ttl=10, rng=One())

        assert (await create("sess-first-0001", now)).code == "424242"
        with pytest.raises(sessions.CodeSpaceExhausted):
            await create("sess-second-001", now + 1)
        assert (await create("sess-third-0001", now + 11)).code == "424242"
        got = await bridge.call(sessions.resolve_code, kv_s, kv_c, "424242", now + 12, 10)
        assert got[0] == "sess-third-0001"


async def test_create_writes_the_metadata_with_its_code_and_refuses_a_taken_id(nats_server):
    """Three writes and no reads: what it records is what a gateway and a lookup then read."""
    async with open_bridge(nats_server.url) as bridge:
        kv_s = await bridge.call(streams.ensure_stream, bridge.js, streams.StreamSettings())
        kv_c = await bridge.call(
            sessions.ensure_codes_bucket, bridge.js, "codes_w", 60, "memory", 1
        )
        now = time.time()
        rng = random.Random(7)

        async def create(sid: str):
            args = (sessions.create, kv_s, kv_c, sid)
            return await bridge.call(*args, site="shop", now=now, code_ttl=10, rng=rng)

        made = await create("sess-written-01")
        stored = await bridge.call(session_store.load, kv_s, "sess-written-01")
        assert (stored.site, stored.created, stored.code) == ("shop", now, made.code)
        assert made.meta == stored
        got = await bridge.call(sessions.resolve_code, kv_s, kv_c, made.code, now + 1, 10)
        assert got[0] == "sess-written-01"
        with pytest.raises(ValueError, match="already in use"):
            await create("sess-written-01")
        assert await bridge.call(session_store.load, kv_s, "sess-written-01") == stored
