"""The visitor's page as the console lists it: read from `nav` events, bounded, stored with
the newest snapshot pointer, forgotten on a new epoch without one (sans-I/O)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import session
from gateway.codec import Event
from gateway.page_info import MAX_TITLE, MAX_URL, PageInfo, from_nav, latest_nav
from gateway.session_store import SessionMeta, SnapshotPointer


def test_nav_payloads_are_typed_and_bounded():
    assert from_nav({"url": "https://a.example/", "title": "A"}) == PageInfo(
        "https://a.example/", "A"
    )
    assert from_nav({"url": "https://a.example/"}) == PageInfo("https://a.example/", "")
    assert from_nav({"url": "u" * 10_000, "title": "t" * 10_000}) == PageInfo(
        "u" * MAX_URL, "t" * MAX_TITLE
    )
    for bad in (None, [], "https://a.example/", {"title": "no url"}, {"url": 7}):
        assert from_nav(bad) is None
    events = [
        Event(1, "nav", 0, {"url": "https://a.example/1"}),
        Event(2, "mutation", 0, {"url": "not a nav"}),
        Event(3, "nav", 0, {"url": "https://a.example/2", "title": "Two"}),
        Event(4, "nav", 0, {"bad": True}),  # a bad nav does not hide the good one before it
    ]
    assert latest_nav(events) == PageInfo("https://a.example/2", "Two")
    assert latest_nav(events[1:2]) is None


def test_stored_page_round_trips_and_bad_records_are_no_page():
    meta = SessionMeta(page=PageInfo("https://a.example/", "A"))
    assert SessionMeta.from_bytes(meta.to_bytes()).page == PageInfo("https://a.example/", "A")
    for bad in (b'{"page":"x"}', b'{"page":[1,2]}', b'{"page":["a"]}', b"{}"):
        assert SessionMeta.from_bytes(bad).page is None


pages = st.sampled_from([None, PageInfo("https://a.example/", "A"), PageInfo("https://b/", "B")])
pointers = st.builds(SnapshotPointer, st.integers(1, 4), st.integers(1, 9), st.integers(1, 99))


@settings(max_examples=60)
@given(st.lists(st.tuples(pointers, pages), min_size=1, max_size=8))
def test_the_page_is_the_newest_snapshots_or_its_epochs(recorded):
    """Whatever order pointers are written in, the page is the one written with the newest
    pointer; a newest pointer without a page keeps its epoch's page and drops an older one."""
    meta = SessionMeta()
    for pointer, page in recorded:
        session.record_snapshot(meta, pointer, page)
    best = max(p.key for p, _ in recorded)
    expected = None
    newest_so_far = None
    for pointer, page in recorded:  # replay the rule by hand, on keys only
        if newest_so_far is None or newest_so_far <= pointer.key:
            if page is not None:
                expected = page
            elif newest_so_far is None or newest_so_far[0] != pointer.epoch:
                expected = None
            newest_so_far = pointer.key
    assert meta.snap.key == best
    assert meta.page == expected
    # and a concrete case: a new page load that sent no `nav` lists no page
    session.record_snapshot(meta, SnapshotPointer(9, 1, 1000), None)
    assert meta.page is None
