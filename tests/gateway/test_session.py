"""The session protocol core (gateway/session.py): every rule alone, sans-I/O."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import session, tokens
from gateway.codec import Close, Hello, ProtocolError, Resume
from gateway.presence import VisitorClose, VisitorState
from gateway.session import (
    AwaitSnapshot,
    ControlHolder,
    CtlOp,
    EndConnection,
    FromResume,
    FromSnapshot,
    Join,
    ResumeClaims,
    Role,
    SessionControl,
    TellAgent,
    TellVisitor,
)
from gateway.session_store import (
    ENDED_SKEW,
    EndedRecord,
    SessionMeta,
    SnapshotPointer,
    ended_ttl,
)

KEYS = tokens.Keyring.parse("k1:" + "s" * 32 + ",k0:" + "t" * 32)
OTHER = tokens.Keyring.parse("k1:" + "x" * 32)  # same key id, another secret
NOW = 1_000_000.0
SID = "session-1"

epochs = st.integers(0, 50)
seqs = st.integers(0, 10_000)


def token(role: str, *, ttl: float = 60, sid: str = SID, keys=KEYS, **claims) -> str:
    return tokens.mint(keys, sid=sid, role=role, now=NOW, ttl=ttl, **claims)


def hello(role: str, tok: str, resume: Resume | None = None) -> Hello:
    return Hello(role=role, sid=SID, token=tok, resume=resume)


def resume_of(role: str, rt: str, epoch: int = 0, recv=None) -> Resume:
    return Resume(rt=rt, epoch=epoch, recv=recv)


# ---- the hello ----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["visitor", "agent"])
def test_a_valid_join_token_alone_is_a_fresh_join(role):
    join = session.check_hello(hello(role, token(role)), KEYS, NOW)
    assert join == Join(Role(role), SID, hello(role, token(role)), None)


JOIN_ERRORS = {
    "forged": (lambda r: token(r, keys=OTHER), "bad_token"),
    "expired": (lambda r: token(r, ttl=-1), "token_expired"),
    "other_session": (lambda r: token(r, sid="session-2"), "wrong_session"),
    "other_role": (lambda r: token("agent" if r == "visitor" else "visitor"), "wrong_role"),
    "garbage": (lambda r: "v1.nope", "bad_token"),
}


@pytest.mark.parametrize("case", sorted(JOIN_ERRORS))
@pytest.mark.parametrize("role", ["visitor", "agent"])
def test_a_bad_join_token_is_refused_with_its_code(case, role):
    make, code = JOIN_ERRORS[case]
    with pytest.raises(ProtocolError) as ei:
        session.check_hello(hello(role, make(role)), KEYS, NOW)
    assert (ei.value.code, ei.value.close_code) == (code, Close.UNAUTHORIZED)


def test_a_valid_resume_token_waives_only_the_join_tokens_expiry():
    rt = token("resume", ttl=3600, r="visitor", epoch=3)
    h = hello("visitor", token("visitor", ttl=-1), resume_of("visitor", rt, 3))
    join = session.check_hello(h, KEYS, NOW)
    assert join.claims == ResumeClaims(epoch=3)
    # ... but not a forged one, nor another session's
    for bad in (token("visitor", ttl=-1, keys=OTHER), token("visitor", ttl=-1, sid="session-2")):
        with pytest.raises(ProtocolError) as ei:
            session.check_hello(hello("visitor", bad, resume_of("visitor", rt, 3)), KEYS, NOW)
        assert ei.value.close_code == Close.UNAUTHORIZED


def test_an_expired_resume_token_makes_a_fresh_join_and_cannot_rescue_an_expired_join_token():
    old = token("resume", ttl=-1, r="agent", aid="aabcdef")
    join = session.check_hello(hello("agent", token("agent"), resume_of("agent", old)), KEYS, NOW)
    assert join.claims is None
    with pytest.raises(ProtocolError) as ei:
        session.check_hello(
            hello("agent", token("agent", ttl=-1), resume_of("agent", old)), KEYS, NOW
        )
    assert ei.value.code == "token_expired"


@pytest.mark.parametrize(
    "rt",
    [
        token("resume", keys=OTHER, r="agent", aid="aabcdef"),  # forged
        token("resume", sid="session-2", r="agent", aid="aabcdef"),  # another session's
        token("resume", r="visitor", epoch=1),  # another role's
        token("agent"),  # not a resume token
    ],
)
def test_a_resume_token_that_is_not_ours_is_bad_resume(rt):
    with pytest.raises(ProtocolError) as ei:
        session.check_hello(hello("agent", token("agent"), resume_of("agent", rt)), KEYS, NOW)
    assert (ei.value.code, ei.value.close_code) == ("bad_resume", Close.UNAUTHORIZED)


metas = st.one_of(st.none(), st.builds(SessionMeta, ended=st.booleans(), epoch=epochs))
ended_records = st.one_of(st.none(), st.builds(EndedRecord, st.floats(0, 2e9)))


@settings(max_examples=60)
@given(
    role=st.sampled_from(["visitor", "agent"]),
    resume=st.booleans(),
    join_expired=st.booleans(),
    meta=metas,
    ended=ended_records,
)
def test_a_hello_is_refused_with_4004_exactly_when_the_session_has_ended(
    role, resume, join_expired, meta, ended
):
    """Either role, fresh or resuming (on an expired join token too), with or without
    metadata: an ended record, or metadata that says ended, refuses with 4004. No metadata
    and no ended record is a session that may go on (a new session's first hello)."""
    claims = {"epoch": 1} if role == "visitor" else {"aid": "aabcdef"}
    rt = resume_of(role, token("resume", r=role, **claims), epoch=1) if resume else None
    tok = token(role, ttl=-1 if join_expired and resume else 60)
    session.check_hello(hello(role, tok, rt), KEYS, NOW)
    should_refuse = ended is not None or (meta is not None and meta.ended)
    if not should_refuse:
        session.refuse_ended(meta, ended)
        return
    with pytest.raises(ProtocolError) as ei:
        session.refuse_ended(meta, ended)
    assert (ei.value.code, ei.value.close_code) == ("session_ended", Close.SESSION_ENDED)


@settings(max_examples=60)
@given(
    join_ttl=st.floats(1, 7 * 86400),
    resume_ttl=st.floats(1, 7 * 86400),
    minted_after_end=st.floats(-86400, 60),
    after_end=st.floats(0, 30 * 86400),
    role=st.sampled_from(["visitor", "agent"]),
)
def test_every_token_of_an_ended_session_is_refused_for_good(
    join_ttl, resume_ttl, minted_after_end, after_end, role
):
    """The ended record lives `ended_ttl(join, resume)` after the end. A hello made of a
    join token and a resume token minted before the end (or up to a minute after: a hello
    under way at the end) is refused at every later time: with 4004 while the record lives,
    and as expired once it is gone. No moment lets the session back in."""
    end = NOW
    minted = end + minted_after_end
    record_ttl = ended_ttl(join_ttl, resume_ttl)
    now = end + after_end
    record = EndedRecord(end) if after_end < record_ttl else None
    claims = {"epoch": 1} if role == "visitor" else {"aid": "aabcdef"}
    join_tok = tokens.mint(KEYS, sid=SID, role=role, now=minted, ttl=join_ttl)
    rt = tokens.mint(KEYS, sid=SID, role="resume", now=minted, ttl=resume_ttl, r=role, **claims)
    try:
        session.check_hello(hello(role, join_tok, resume_of(role, rt, 1)), KEYS, now)
    except ProtocolError as e:
        assert (e.code, e.close_code) == ("token_expired", Close.UNAUTHORIZED)
        return
    assert record is not None  # a token is still valid: the record must still be there
    with pytest.raises(ProtocolError) as ei:
        session.refuse_ended(None, record)  # the metadata has long expired
    assert ei.value.close_code == Close.SESSION_ENDED


@pytest.mark.parametrize("role", ["visitor", "agent"])
def test_a_join_is_refused_when_the_session_ended_after_its_hello_was_checked(role):
    """The end may come between the hello's check and the join's compare-and-set (and its
    "end" message before the connection listens): the change itself refuses, unchanged."""
    meta = SessionMeta(ended=True, epoch=3)
    join = session.check_hello(hello(role, token(role)), KEYS, NOW)
    with pytest.raises(ProtocolError) as ei:
        if role == "visitor":
            session.bump_visitor(meta, join, 0)
        else:
            session.add_agent(meta, "aabcdef", NOW)
    assert ei.value.close_code == Close.SESSION_ENDED
    assert (meta.epoch, meta.vgen, meta.agents) == (3, 0, {})
    session.add_agent(fresh := SessionMeta(), "aabcdef", NOW)
    assert fresh.agents == {"aabcdef": NOW}


def test_the_ended_record_outlives_the_longest_token_by_the_skew():
    assert ended_ttl(3600.0, 86400.0) == 86400.0 + ENDED_SKEW
    assert ended_ttl(7 * 86400.0, 86400.0) == 7 * 86400.0 + ENDED_SKEW


@pytest.mark.parametrize("data", [b'{"at":12.5}', b"garbage", b"[]", b'{"at":"x"}'])
def test_an_ended_record_always_reads_as_ended(data):
    """The key exists only for ended sessions: unreadable content still says ended."""
    record = EndedRecord.from_bytes(data)
    with pytest.raises(ProtocolError):
        session.refuse_ended(None, record)
    assert EndedRecord.from_bytes(EndedRecord(12.5).to_bytes()) == EndedRecord(12.5)


# ---- the visitor's join -----------------------------------------------------------------------


def visitor_join(claims_epoch: int | None, resume_epoch: int | None, recv=None) -> Join:
    resume = None if resume_epoch is None else Resume(rt="rt", epoch=resume_epoch, recv=recv)
    claims = None if claims_epoch is None else ResumeClaims(epoch=claims_epoch)
    return Join(Role.VISITOR, SID, Hello("visitor", SID, "t", resume), claims)


@given(epochs, st.none() | epochs, st.none() | epochs, epochs, st.integers(0, 9))
def test_the_visitor_keeps_its_epoch_only_on_a_real_resume_of_the_current_one(
    meta_epoch, claims_epoch, resume_epoch, floor, vgen
):
    meta = SessionMeta(epoch=meta_epoch, vgen=vgen, durable={"v": 5, "a1": 2}, control="a1")
    join = visitor_join(claims_epoch, resume_epoch)
    session.bump_visitor(meta, join, floor)
    kept = claims_epoch is not None and claims_epoch == resume_epoch == meta_epoch
    assert meta.vgen == vgen + 1  # every visitor connection takes a new generation
    if kept:
        assert meta.epoch == meta_epoch and meta.durable["v"] == 5
        assert meta.control == "a1"  # the same page resumed: its grant stands
    else:
        assert meta.epoch == max(meta_epoch, floor) + 1  # above the metadata and the stream
        assert "v" not in meta.durable and meta.durable["a1"] == 2
        assert meta.control is None  # a new page never granted anyone
    # Resumed: the epoch the client asks for is the session's now. (Also when a new epoch
    # happens to take its number: nothing of it was stored, so durable is 0 and it resends.)
    claimed = claims_epoch is not None and claims_epoch == resume_epoch
    assert session.visitor_resumed(join, meta) == (claimed and resume_epoch == meta.epoch)


def test_a_compare_and_set_retry_sees_the_newer_epoch_and_starts_another():
    """Another visitor moved the epoch between our read and our write: we do not resume."""
    join = visitor_join(3, 3)
    meta = SessionMeta(epoch=4)  # what the retried change reads
    session.bump_visitor(meta, join, 0)
    assert meta.epoch == 5 and not session.visitor_resumed(join, meta)


@given(st.none() | st.tuples(epochs, seqs), epochs)
def test_durable_is_the_newest_stored_event_of_the_same_epoch(newest, epoch):
    got = session.durable_prefix(newest, epoch)
    assert got == (newest[1] if newest is not None and newest[0] == epoch else 0)


aid_lists = st.lists(st.sampled_from(["a1111", "a2222", "a3333", "a4444"]), unique=True)


@given(aid_lists, st.dictionaries(st.sampled_from(["a1111", "a2222"]), seqs), st.booleans())
def test_where_each_agents_events_restart_for_the_visitor(agents, recv, resumed):
    join = visitor_join(1, 1, recv=recv)
    newest = {aid: 100 + i for i, aid in enumerate(agents)}
    starts = session.visitor_starts(dict.fromkeys(agents, 0.0), join, resumed, newest)
    assert set(starts) == set(agents)
    for aid in agents:
        if resumed:
            assert starts[aid] == recv.get(aid, 0)  # what it says it has, else from the start
        else:
            assert starts[aid] == newest[aid]  # a new page: only what comes from now on


@given(st.integers(0, 9), st.integers(0, 9))
def test_the_newest_visitor_generation_wins(mine, other):
    assert session.takeover_lost(mine, other) == (other > mine)


# ---- the agent's join ---------------------------------------------------------------------------


def agent_join(aid: str | None, recv=None) -> Join:
    resume = Resume(rt="rt", epoch=0, recv=recv) if aid is not None else None
    claims = ResumeClaims(aid=aid) if aid is not None else None
    return Join(Role.AGENT, SID, Hello("agent", SID, "t", resume), claims)


def test_an_agent_keeps_its_id_only_with_a_valid_resume_token():
    assert session.agent_identity(agent_join("aold1"), "anew1") == ("aold1", True)
    assert session.agent_identity(agent_join(None), "anew1") == ("anew1", False)


pointers = st.builds(SnapshotPointer, st.integers(1, 9), st.integers(1, 99), st.integers(1, 999))


@given(st.none() | st.tuples(epochs, seqs), st.none() | pointers, st.booleans())
def test_where_an_agent_starts(recv, snap, resumed):
    join = agent_join("aold1", recv=list(recv) if recv else None)
    start = session.agent_start(join, resumed, SessionMeta(snap=snap))
    if resumed and recv is not None:
        assert start == FromResume(recv)
        assert session.welcome_delivered(start) == list(recv)
    elif snap is not None:
        assert start == FromSnapshot(snap)  # the latest snapshot's part 0 comes first
        assert session.welcome_delivered(start) == [snap.epoch, snap.seq - 1]
    else:
        assert start == AwaitSnapshot()
        assert session.welcome_delivered(start) is None


@given(st.none() | pointers, st.none() | st.integers(1, 999))
def test_an_agent_whose_resume_point_is_gone_restarts_at_a_snapshot_still_kept(snap, first):
    got = session.agent_recovery(SessionMeta(snap=snap), first)
    if snap is not None and first is not None and first <= snap.sseq:
        assert got == FromSnapshot(snap)
    else:
        assert got == AwaitSnapshot()  # ask the visitor for a new one
    assert session.agent_recovery(None, first) == AwaitSnapshot()


# ---- snapshots ---------------------------------------------------------------------------------


@given(st.lists(pointers, min_size=1, max_size=6), st.booleans())
def test_the_newest_snapshot_pointer_wins_whatever_order_they_are_recorded_in(ps, wanted):
    meta = SessionMeta(snap_wanted=wanted)
    for p in ps:
        session.record_snapshot(meta, p)
    assert meta.snap.key == max(p.key for p in ps)
    assert meta.snap_wanted is False
    session.want_snapshot(meta)
    assert meta.snap_wanted is True


# ---- control messages ---------------------------------------------------------------------------

controls = st.builds(
    SessionControl,
    st.sampled_from(list(CtlOp)),
    st.none() | st.integers(0, 99),
    st.none() | st.text(max_size=8),
)


@given(controls)
def test_a_control_message_round_trips(ctl):
    assert SessionControl.decode(ctl.encode()) == ctl


@pytest.mark.parametrize(
    "data", [b"", b"{", b"[]", b'{"op":"nope"}', b'{"vgen":1}', b"\xff", b'{"op":5}']
)
def test_a_malformed_control_message_is_ignored(data):
    assert SessionControl.decode(data) is None


@given(controls, st.sampled_from(list(Role)), st.integers(0, 99))
def test_what_a_connection_does_with_a_control_message(ctl, role, vgen):
    action = session.on_control(role, vgen, ctl)
    presence = ctl.op in (CtlOp.VISITOR_LIVE, CtlOp.VISITOR_AWAY, CtlOp.VISITOR_LEFT)
    if ctl.op is CtlOp.END:
        assert action == EndConnection(session.SESSION_ENDED)
    elif ctl.op is CtlOp.CONTROL:  # either role hears who holds remote control
        assert action == ControlHolder(ctl.aid)
    elif role is Role.AGENT:
        if presence and ctl.vgen is not None:
            state = VisitorState(ctl.op.value.removeprefix("visitor_"))
            assert action == TellAgent(state, ctl.vgen)
        else:
            assert action is None
    elif presence:
        assert action is None  # the visitor's own announcements are for agents
    elif ctl.op is CtlOp.TAKEOVER:
        lost = ctl.vgen is not None and ctl.vgen > vgen
        assert action == (EndConnection(session.REPLACED) if lost else None)
    else:
        joined = ctl.op is CtlOp.JOINED
        assert action == TellVisitor(ctl.op.value, ctl.aid, announce=joined)


@pytest.mark.parametrize(
    ("error", "said_bye", "how"),
    [
        (None, True, VisitorClose.BYE),
        (None, False, VisitorClose.DROPPED),  # the socket went, or a drain
        (session.REPLACED, False, VisitorClose.REPLACED),
        (session.SESSION_ENDED, True, VisitorClose.ENDED),
        (ProtocolError("bad_shape", "x", Close.BAD_FRAME), True, VisitorClose.DROPPED),
    ],
)
def test_how_a_visitor_connection_ended(error, said_bye, how):
    assert session.visitor_close(error, said_bye) is how
