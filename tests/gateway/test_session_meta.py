"""A session's stored metadata (gateway/session_store.py's `SessionMeta`) across versions.

In a rolling upgrade old and new gateways write the same entries: a field that only a newer
version knows must survive an older gateway's compare-and-set rewrite of the entry.
"""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from gateway import agent_roster, session
from gateway.session_store import SessionMeta

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
KNOWN = set(SessionMeta.__dataclass_fields__) - {"unknown"}
newer_fields = st.dictionaries(
    st.text(min_size=1, max_size=12).filter(lambda k: k not in KNOWN), json_values, max_size=4
)


def test_an_older_gateways_rewrite_keeps_a_newer_field():
    newer = b'{"epoch": 3, "agents": {"a1": 5.0}, "notes": {"a1": ["gw-2", 86405.0]}}'
    meta = SessionMeta.from_bytes(newer)
    session.add_agent(meta, "a2", 7.0)  # what this version changes
    stored = json.loads(meta.to_bytes())
    assert stored["notes"] == {"a1": ["gw-2", 86405.0]}
    assert stored["agents"] == {"a1": 5.0, "a2": 7.0} and stored["epoch"] == 3


@given(newer_fields, st.integers(0, 9), st.sampled_from(["join", "bye", "none"]))
def test_fields_this_version_does_not_know_round_trip_through_any_change(extra, epoch, change):
    written = SessionMeta(epoch=epoch, agents={"a1": 1.0})
    raw = json.dumps({**extra, **json.loads(written.to_bytes())}).encode()
    meta = SessionMeta.from_bytes(raw)
    assert meta == written  # the known fields read as before
    if change == "join":
        session.add_agent(meta, "a2", 2.0)
    elif change == "bye":
        agent_roster.left(meta, "a1")
    stored = json.loads(meta.to_bytes())
    assert {k: stored[k] for k in extra} == extra
    assert SessionMeta.from_bytes(meta.to_bytes()) == meta
    assert set(stored) == KNOWN | set(extra)  # nothing of ours leaks in


def test_a_stored_field_named_like_the_attribute_is_kept_too():
    meta = SessionMeta.from_bytes(b'{"epoch": 1, "unknown": [1, 2]}')
    assert json.loads(meta.to_bytes())["unknown"] == [1, 2]


def test_an_entry_that_is_not_a_map_reads_as_empty():
    assert SessionMeta.from_bytes(b"[1, 2]") == SessionMeta()
