"""The remote-control grant, sans-I/O (gateway/remote_control.py): what the visitor's events
decide, and the screen that keeps an agent's input off the page without a grant."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import remote_control as rc
from gateway.codec import AGENT_KINDS, VISITOR_KINDS, Close, Event, ProtocolError
from gateway.session_store import SessionMeta

AIDS = ["a1", "a2", "a3"]
aids = st.sampled_from(AIDS)
holders = st.none() | aids


def ev(seq: int, kind: str, payload=None) -> Event:
    return Event(seq, kind, 1_764_075_600_000 + seq, payload if payload is not None else {})


# A visitor's batch: grants and revokes among its other events.
visitor_steps = st.lists(
    st.tuples(st.sampled_from([rc.GRANT, rc.REVOKE, "mutation", "pointer"]), aids), max_size=12
)


def visitor_batch(steps) -> list[Event]:
    return [ev(i + 1, kind, {"aid": aid}) for i, (kind, aid) in enumerate(steps)]


def model(holder, steps):
    """The rule in its plainest words: grant sets the holder, a revoke of the holder clears it."""
    for kind, aid in steps:
        if kind == rc.GRANT:
            holder = aid
        elif kind == rc.REVOKE and holder == aid:
            holder = None
    return holder


@settings(max_examples=40)  # a few rules over small tables: 40 cover them, in 0.2 s
@given(holders, visitor_steps)
def test_the_visitors_last_word_decides_and_a_refusal_leaves_the_holder(holder, steps):
    change = rc.visitor_change(visitor_batch(steps), holder)
    want = model(holder, steps)
    if want == holder:
        assert change is None  # nothing to write, nobody to tell
    else:
        assert change == rc.GrantChange(want)
        meta = SessionMeta(control=holder)
        rc.write(meta, change)
        assert SessionMeta.from_bytes(meta.to_bytes()).control == want


@pytest.mark.parametrize("payload", [None, {}, {"aid": 5}, {"aid": ""}, {"aid": "a" * 65}, [1]])
@pytest.mark.parametrize("kind", [rc.GRANT, rc.REVOKE])
def test_a_grant_or_revoke_without_an_agent_id_is_a_bad_frame(kind, payload):
    with pytest.raises(ProtocolError) as e:
        rc.visitor_change([Event(1, kind, 0, payload)], None)
    assert e.value.code == "bad_shape" and e.value.close_code == Close.BAD_FRAME


agent_kinds = st.sampled_from(sorted(rc.INPUTS | {"pointer", "highlight", rc.DRAW, rc.REQUEST}))


@settings(max_examples=40)
@given(st.lists(agent_kinds, max_size=12), aids, holders)
def test_only_the_holder_acts_and_nothing_else_is_touched(kinds, aid, holder):
    events = [ev(i + 1, k, {"id": 7, "value": "secret"}) for i, k in enumerate(kinds)]
    out = rc.screen(events, aid, holder)
    inputs = sum(k in rc.INPUTS for k in kinds)
    assert [e.seq for e in out.events] == [e.seq for e in events]  # numbering stays gap-free
    if holder == aid:
        assert out.events == events and out.refused == 0
        return
    assert out.refused == inputs
    for before, after in zip(events, out.events, strict=True):
        if before.kind in rc.INPUTS:  # kept as a marker; the payload never reaches the page
            assert after == Event(before.seq, rc.REFUSED, before.ts, {"kind": before.kind})
        else:
            assert after == before


def test_a_holders_bye_ends_its_grant_and_no_one_elses():
    assert rc.released("a1", "a1") == rc.GrantChange(None)
    assert rc.released("a2", "a1") is None and rc.released(None, "a1") is None
    meta = SessionMeta(control="a2")  # the visitor granted a2 after a1's bye was read
    rc.release(meta, "a1")
    assert meta.control == "a2"
    rc.release(meta, "a2")
    assert meta.control is None


def test_the_kinds_are_in_the_protocols_tables():
    assert rc.VISITOR_KINDS <= VISITOR_KINDS and rc.AGENT_KINDS <= AGENT_KINDS
    assert rc.REFUSED not in VISITOR_KINDS | AGENT_KINDS  # only a gateway writes it
    assert SessionMeta.from_bytes(b'{"control": 5}').control is None  # junk reads as nobody
