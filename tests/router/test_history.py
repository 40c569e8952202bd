"""router/history.py's sans-I/O part: a page of stored messages as replay events."""

from __future__ import annotations

import json

import msgpack

from router.history import MAX_PAGE_MESSAGES, Page, page_request


def test_a_page_expands_batches_and_skips_what_is_not_one():
    page = Page()
    batch = {"t": "ev", "e": 2, "ev": [[7, "mutation", 1000, {"x": 1}], [8, "scroll", 1001, {}]]}
    page.add(40, msgpack.packb(batch))
    page.add(41, b"\xc1 not msgpack")  # skipped, but read: the next page starts after it
    page.add(42, msgpack.packb([2, 9, "nav", 1002, {"url": "u"}]))  # the one-event layout
    assert page.messages == 3 and page.last_pos == 42
    assert page.events == [
        [40, 2, 7, "mutation", 1000, {"x": 1}],
        [40, 2, 8, "scroll", 1001, {}],
        [42, 2, 9, "nav", 1002, {"url": "u"}],
    ]
    page.next = page.last_pos + 1
    assert msgpack.unpackb(page.encode()) == {"events": page.events, "next": 43, "messages": 3}


def test_a_page_request_is_one_bounded_batched_direct_get():
    req = json.loads(page_request("sid1", 0, 10_000))
    assert req["seq"] == 1 and req["next_by_subj"] == "cb.sid1.v"
    assert req["batch"] == MAX_PAGE_MESSAGES and req["max_bytes"] > 0
