"""The console's listing, sans-I/O: what it shows and how long one read of the bucket is
shared (router/listing.py)."""

from __future__ import annotations

from gateway.session_store import SessionMeta
from router.listing import ListingCache, summaries

TTL = 1200.0


def test_cache_is_shared_for_its_ttl_and_cleared_by_this_routers_changes():
    cache = ListingCache(ttl=1.0)
    assert cache.get(100.0) is None
    found = [("s1", SessionMeta(created=1.0))]
    cache.put(100.0, found)
    assert cache.get(100.0) is found and cache.get(100.99) is found
    assert cache.get(101.0) is None  # stale after the ttl
    assert cache.get(99.0) is None  # a clock that went back does not pin an old read
    cache.put(200.0, found)
    cache.clear()
    assert cache.get(200.0) is None


def test_summaries_are_live_newest_first_bounded_and_say_who_can_be_joined():
    now = 10_000.0
    found = [
        ("old", SessionMeta(site="shop", created=now - 2000, code="111111")),  # code expired
        ("kept", SessionMeta(site="shop", created=now - 2000, code="222222", agents={"a1": 1})),
        ("new", SessionMeta(site="blog", created=now - 5, code="333333")),
        ("gone", SessionMeta(site="shop", created=now - 1, code="444444", ended=True)),
        ("dev", SessionMeta(created=now - 3)),  # started with development tokens: no code
    ]
    count, rows = summaries(found, site=None, limit=10, now=now, code_ttl=TTL)
    assert count == 4
    assert [(r.sid, r.joinable) for r in rows] == [
        ("dev", False),
        ("new", True),
        ("kept", True),  # an agent joined: its code keeps working
        ("old", False),
    ]
    count, rows = summaries(found, site="shop", limit=1, now=now, code_ttl=TTL)
    assert count == 2 and [r.sid for r in rows] == ["kept"]  # ties on `created` by id
    assert summaries([], site=None, limit=5, now=now, code_ttl=TTL) == (0, [])
