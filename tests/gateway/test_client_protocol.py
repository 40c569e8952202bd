"""The client's protocol core (gateway/client_protocol.py), without sockets or clocks: a model
gateway drives it through random connections, drops, drains and epoch changes, and the
gateway's own SequenceCheck must accept every frame it sends."""

from __future__ import annotations

import random

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from gateway.backoff import Backoff
from gateway.client_protocol import (
    FATAL_CLOSE,
    SNAPSHOT_CHUNK,
    Acked,
    AgentPresence,
    ClientError,
    ClientProtocol,
    Delivery,
    DeliveryReset,
    Fatal,
    Reconnect,
    ReconnectNotice,
    RetryCause,
    ServerError,
    SnapshotRequested,
    Stopped,
    VisitorPresence,
    Welcomed,
)
from gateway.codec import (
    MAX_EVENTS_PER_BATCH,
    MAX_FRAME_BYTES,
    Ack,
    Bye,
    Close,
    Control,
    Event,
    Events,
    Hello,
    Welcome,
    decode_frame,
    encode_frame,
)
from gateway.sequencer import SequenceCheck, Sequencer

URLS = ["ws://gw-a:1/", "ws://gw-b:2/", "ws://gw-c:3/"]


def client(role: str = "visitor", urls=URLS, seed: int = 0) -> ClientProtocol:
    return ClientProtocol(urls, "session-1", "tok", role, backoff=Backoff(rng=random.Random(seed)))


def welcome(epoch=1, durable=0, rt="rt-1", gw="gw-a", aid=None, delivered=None) -> bytes:
    return encode_frame(
        Welcome(gw=gw, epoch=epoch, rt=rt, durable=durable, aid=aid, delivered=delivered)
    )


def ctl(op: str, **kw) -> bytes:
    return encode_frame(Control(op=op, **kw))


def connect(p: ClientProtocol, **kw) -> tuple[Hello, Welcomed]:
    p.connect_url()
    hello = decode_frame(p.hello())
    assert isinstance(hello, Hello)
    (w,) = p.receive(welcome(**kw), 10.0)
    assert isinstance(w, Welcomed) and p.connected
    return hello, w


def sent_events(frames: list[bytes]) -> list[Event]:
    out = []
    for f in frames:
        ev = decode_frame(f)
        assert isinstance(ev, Events) and 1 <= len(ev.events) <= MAX_EVENTS_PER_BATCH
        assert len(f) <= MAX_FRAME_BYTES
        out += ev.events
    return out


# ---- the sender, against a model gateway ------------------------------------------------------


class SenderAgainstGateway(RuleBasedStateMachine):
    """A visitor and a gateway that stores in arrival order, acks what it stored, drops
    connections, drains, and sometimes starts a new epoch. Whatever happens, every frame is
    the exact continuation the gateway expects (its SequenceCheck), nothing numbered is left
    unsent on an open connection, and the client never holds an ack for what is not stored."""

    @initialize(seed=st.integers(0, 2**16))
    def start(self, seed):
        self.p = client(seed=seed)
        self.epoch = 1
        self.stored = 0  # highest seq of this epoch JetStream holds, all before it too
        self.inflight: list[int] = []  # received on this connection, not yet stored
        self.check: SequenceCheck | None = None
        self.acked_sent = 0
        self.hellos = 0
        self._welcome(resume_ok=True)

    def _welcome(self, resume_ok: bool) -> None:
        hello = decode_frame(self.p.hello())
        self.hellos += 1
        if hello.resume is not None:
            assert hello.resume.rt == f"rt-{self.hellos - 1}"
            assert hello.resume.epoch == self.p.seq.epoch
            assert isinstance(hello.resume.recv, dict)
        if not resume_ok or hello.resume is None and self.hellos > 1:
            self.epoch += 1  # a new page: the old epoch's unacked events are abandoned
            self.stored = 0
        (w,) = self.p.receive(
            welcome(epoch=self.epoch, durable=self.stored, rt=f"rt-{self.hellos}"), 1.0
        )
        assert w.epoch_restarted == (self.epoch != 1 and not resume_ok)
        self.check = SequenceCheck(self.stored + 1)
        self.inflight = []

    @rule(n=st.integers(1, 40), size=st.sampled_from([10, 1000, 60_000]))
    def push(self, n, size):
        for i in range(n):
            if self.p.seq.can_push():
                self.p.seq.push("mutation", i, {"d": b"x" * size})

    @precondition(lambda self: self.check is not None)
    @rule()
    def flush(self):
        for f in self.p.frames_to_send():
            ev = decode_frame(f)
            assert ev.epoch == self.epoch
            self.check.check(ev.events)  # raises on a gap or a repeat
            self.inflight += [e.seq for e in ev.events]
        assert not self.p.has_unsent()

    @precondition(lambda self: self.check is not None)
    @rule(k=st.integers(0, 50), ack=st.booleans())
    def store(self, k, ack):
        done, self.inflight = self.inflight[:k], self.inflight[k:]
        if done:
            self.stored = done[-1]
        if ack and self.stored > self.acked_sent:
            (a,) = self.p.receive(encode_frame(Ack(self.stored)), 2.0)
            assert isinstance(a, Acked) and a.seq == self.stored
            self.acked_sent = self.stored

    @precondition(lambda self: self.check is not None)
    @rule(
        how=st.sampled_from(["drop", "1011", "4010", "notice", "notice-hint"]),
        resume_ok=st.booleans(),
        delay_ms=st.integers(0, 5000),
    )
    def reconnect(self, how, resume_ok, delay_ms):
        if how.startswith("notice"):
            hint = ["ws://hinted:9/"] if how == "notice-hint" else None
            (n,) = self.p.receive(ctl("reconnect", delay_ms=delay_ms, hint=hint), 3.0)
            assert isinstance(n, ReconnectNotice) and n.delay == delay_ms / 1000
        code = {"drop": None, "1011": Close.INTERNAL, "4010": Close.OVER_BUDGET}.get(
            how, Close.GOING_AWAY
        )  # over_budget (4010) is retried with backoff, like a drop
        d = self.p.connection_lost(code, "", 4.0)
        assert isinstance(d, Reconnect)
        if how.startswith("notice"):
            assert d.cause is RetryCause.NOTICE and d.delay == delay_ms / 1000
            if how == "notice-hint":
                assert d.url == "ws://hinted:9/"
        else:
            assert d.cause is RetryCause.DROPPED and 0 <= d.delay <= 20
        assert self.p.connect_url().startswith(d.url.rstrip("/"))
        self.check = None
        self.acked_sent = 0
        self._welcome(resume_ok)

    @invariant()
    def acks_never_pass_the_store(self):
        assert self.p.seq.acked <= self.stored or self.p.seq.epoch != self.epoch


TestSenderAgainstGateway = SenderAgainstGateway.TestCase
TestSenderAgainstGateway.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)


@given(st.lists(st.integers(1, 200), max_size=30), st.integers(0, 300), st.integers(0, 300))
def test_sequencer_since_is_the_unacked_tail(sizes, acked, after):
    s = Sequencer()
    for i, n in enumerate(sizes):
        s.push("pointer", i, "x" * n)
    s.ack(min(acked, s.next_seq - 1))
    assert s.since(after) == [e for e in s.unacked() if e.seq > after]


@given(st.lists(st.integers(0, SNAPSHOT_CHUNK), min_size=1, max_size=40))
def test_frames_stay_under_the_limits_and_carry_every_event_once(sizes):
    p = client()
    for i, n in enumerate(sizes):
        p.seq.push("snapshot", i, {"i": 0, "n": 1, "d": b"y" * n})
    assert p.frames_to_send() == []  # nothing goes out before the welcome
    connect(p)
    got = sent_events(p.frames_to_send())
    assert [e.seq for e in got] == list(range(1, len(sizes) + 1))
    assert p.frames_to_send() == []
    p.seq.push("mutation", 0, {})
    assert [e.seq for e in sent_events(p.frames_to_send())] == [len(sizes) + 1]


def test_many_small_events_are_batched_512_a_frame():
    p = client()
    connect(p)
    for i in range(1200):
        p.seq.push("pointer", i, {"x": i})
    frames = p.frames_to_send()
    assert [len(decode_frame(f).events) for f in frames] == [512, 512, 176]


# ---- the receiver ----------------------------------------------------------------------------


@st.composite
def deliveries(draw):
    """Frames of visitor events over epochs, as a gateway sends them across reconnects:
    windows that may repeat what came before (resend), never skip ahead unless asked."""
    frames = []
    for epoch in range(1, draw(st.integers(1, 3)) + 1):
        top = 0
        for _ in range(draw(st.integers(1, 6))):
            lo = draw(st.integers(1, top + 1))
            hi = draw(st.integers(lo, lo + 8))
            frames.append((epoch, list(range(lo, hi + 1))))
            top = max(top, hi)
    return frames


@given(deliveries())
def test_an_agent_delivers_every_key_once_in_order(frames):
    p = client("agent")
    connect(p, aid="a123456789abc", delivered=[0, 0])
    got = []
    total = 0
    for epoch, seqs in frames:
        evs = [Event(s, "mutation", 0, None) for s in seqs]
        total += len(evs)
        (d,) = p.receive(encode_frame(Events(epoch=epoch, events=evs)), 5.0)
        assert isinstance(d, Delivery) and d.src is None
        got += [(epoch, e.seq) for e in d.events]
    assert got == sorted(set(got)) == sorted({(e, s) for e, seqs in frames for s in seqs})
    assert p.stats.duplicates_dropped == total - len(got)
    assert p.stats.gaps == 0 and p.last_v == got[-1]


@given(st.lists(st.integers(1, 5), min_size=1, max_size=20))
def test_a_skip_ahead_is_counted_as_a_gap(steps):
    p = client("agent")
    connect(p, aid="a123456789abc", delivered=[1, 0])
    seq = 0
    for step in steps:
        seq += step
        p.receive(encode_frame(Events(epoch=1, events=[Event(seq, "pointer", 0, 1)])), 1.0)
    assert p.stats.gaps == sum(1 for s in steps if s > 1)


@given(st.lists(st.tuples(st.sampled_from(["aaaaa1", "aaaaa2"]), st.integers(1, 30)), max_size=40))
def test_the_visitor_drops_repeats_per_agent(frames):
    p = client("visitor")
    connect(p)
    best: dict[str, int] = {}
    for aid, top in frames:
        lo = best.get(aid, 0) + 1 if top > best.get(aid, 0) else 1
        evs = [Event(s, "pointer", 0, 1) for s in range(max(1, lo - 2), top + 1)]
        (d,) = p.receive(encode_frame(Events(epoch=0, events=evs, src=aid)), 1.0)
        assert [e.seq for e in d.events] == list(range(best.get(aid, 0) + 1, top + 1))
        best[aid] = max(best.get(aid, 0), top)
    assert p.last_a == {a: s for a, s in best.items() if s}
    assert p.stats.gaps == 0


# ---- welcome and resume -------------------------------------------------------------------


def test_first_welcome_adopts_the_epoch_for_events_queued_before_it():
    p = client()
    for i in range(3):
        p.seq.push("mutation", i, {})
    _, w = connect(p, epoch=7)
    assert (w.resumed, w.epoch_restarted, w.resend) == (False, False, 3)
    f = decode_frame(p.frames_to_send()[0])
    assert f.epoch == 7 and [e.seq for e in f.events] == [1, 2, 3]
    assert p.stats.connects == 1 and p.stats.welcomes == [10.0]


def test_visitor_resume_resends_after_durable_and_a_new_epoch_abandons():
    p = client()
    connect(p, epoch=3)
    for i in range(10):
        p.seq.push("mutation", i, {})
    p.frames_to_send()
    p.receive(encode_frame(Ack(4)), 11.0)
    p.receive(ctl("joined", msg="aaaaa1"), 11.0)
    p.receive(encode_frame(Events(epoch=0, events=[Event(2, "pointer", 0, 1)], src="aaaaa1")), 12)
    assert isinstance(p.connection_lost(None, "", 20.0), Reconnect)
    assert p.frames_to_send() == []  # not while disconnected
    p.connect_url()
    hello = decode_frame(p.hello())
    assert hello.resume.rt == "rt-1" and hello.resume.epoch == 3
    assert hello.resume.recv == {"aaaaa1": 2}
    (w,) = p.receive(welcome(epoch=3, durable=6, rt="rt-2"), 21.5)
    assert w.resumed and w.resend == 4 and p.stats.resume_times == [1.5]
    assert [e.seq for e in sent_events(p.frames_to_send())] == [7, 8, 9, 10]
    # The session moved to a new epoch meanwhile: the unacked events are gone for good.
    p.connection_lost(None, "", 30.0)
    p.connect_url()
    p.hello()
    (w,) = p.receive(welcome(epoch=4, durable=0, rt="rt-3"), 31.0)
    assert w.epoch_restarted and w.abandoned == 4 and p.seq.epoch == 4 and p.seq.next_seq == 1


def test_agent_resume_keeps_its_id_or_restarts_with_a_new_one():
    p = client("agent")
    _, w = connect(p, epoch=2, aid="a111111111111", delivered=[2, 5])
    assert p.last_v == (2, 5)
    p.receive(encode_frame(Events(epoch=2, events=[Event(6, "mutation", 0, {})])), 11)
    p.seq.push("pointer", 0, {})
    p.frames_to_send()
    p.connection_lost(Close.INTERNAL, "unavailable", 12.0)
    p.connect_url()
    hello = decode_frame(p.hello())
    assert hello.resume.recv == [2, 6] and hello.resume.epoch == 0
    (w,) = p.receive(welcome(epoch=2, aid="a111111111111", delivered=[2, 6], rt="rt-2"), 13)
    assert w.resumed and not w.identity_restarted and p.last_v == (2, 6)
    p.connection_lost(None, "", 14.0)
    p.connect_url()
    p.hello()
    (w,) = p.receive(welcome(epoch=2, aid="a222222222222", delivered=[2, 3], rt="rt-3"), 15)
    assert w.identity_restarted and not w.resumed and w.abandoned == 1
    assert p.last_v == (2, 3) and p.seq.next_seq == 1


def test_reset_forgets_the_last_key_and_controls_are_named():
    p = client("agent")
    connect(p, aid="a111111111111", delivered=[1, 9])
    (r,) = p.receive(ctl("reset", msg="gone"), 1.0)
    assert isinstance(r, DeliveryReset) and p.last_v is None
    part0 = {"i": 0, "n": 1, "d": b""}
    (d,) = p.receive(encode_frame(Events(epoch=1, events=[Event(4, "snapshot", 0, part0)])), 1)
    assert [e.seq for e in d.events] == [4]  # lower than before the reset: delivered
    v = client("visitor")
    connect(v)
    assert isinstance(v.receive(ctl("snapshot"), 1)[0], SnapshotRequested)
    (j,) = v.receive(ctl("joined", msg="aaaaa1"), 1)
    (gone,) = v.receive(ctl("left", msg="aaaaa1"), 1)
    assert isinstance(j, AgentPresence) and j.joined and j.aid == "aaaaa1" and not gone.joined
    (here,) = p.receive(ctl("visitor", msg="away"), 1)
    assert isinstance(here, VisitorPresence) and here.state == "away"
    (e,) = v.receive(ctl("error", code="overloaded", msg="slow"), 1)
    assert isinstance(e, ServerError) and (e.code, e.message) == ("overloaded", "slow")


def test_gateway_protocol_violations_are_client_errors():
    p = client()
    p.seq.push("mutation", 0, {})
    p.connect_url()
    p.hello()
    with pytest.raises(ClientError) as exc:
        p.receive(encode_frame(Ack(1)), 1.0)  # before welcome
    with pytest.raises(ClientError) as exc:
        p.receive(welcome(durable=5), 1.0)
    assert exc.value.code == "bad_resume"
    connect(p)
    with pytest.raises(ClientError) as exc:
        p.receive(encode_frame(Ack(2)), 1.0)
    assert exc.value.code == "bad_ack"
    with pytest.raises(ClientError) as exc:
        p.receive(b"\xc1", 1.0)
    assert exc.value.code == "bad_frame"
    with pytest.raises(ClientError):
        p.receive(encode_frame(Bye()), 1.0)


# ---- when a connection ends ---------------------------------------------------------------------


@pytest.mark.parametrize("code", sorted(FATAL_CLOSE))
def test_fatal_close_codes_end_the_client(code):
    p = client()
    connect(p)
    d = p.connection_lost(code, "why", 1.0)
    assert isinstance(d, Fatal) and d.error.close_code == code and d.error.code == "closed"
    p = client()
    connect(p)
    p.receive(ctl("error", code="replaced", msg="newer"), 1.0)
    d = p.connection_lost(code, "replaced: newer", 1.0)
    assert (d.error.code, d.error.message, d.error.close_code) == ("replaced", "newer", code)


@given(
    st.lists(
        st.sampled_from([None, 1000, 1001, 1011, 4008, 4009, "refused", "failed"]), max_size=12
    ),
    st.floats(0, 60),
)
def test_retries_back_off_round_robin_and_respect_retry_after(ends, floor):
    p = client(seed=1)
    ceiling = 0.5
    for i, end in enumerate(ends):
        assert p.next_url() == URLS[i % 3]
        p.connect_url()
        p.hello()
        if end == "refused":
            d = p.handshake_refused(429, floor, 1.0)
            assert d.cause is RetryCause.REFUSED and d.delay >= floor
        elif end == "failed":
            d = p.connect_failed(1.0)
            assert d.cause is RetryCause.CONNECT_FAILED
        elif end == 4009:
            d = p.connection_lost(4009, f"rate_limited: retry_after={floor:.3f}", 1.0)
            assert d.cause is RetryCause.REFUSED and d.delay >= round(floor, 3)
        else:
            d = p.connection_lost(end, "", 1.0)
            assert d.cause is RetryCause.DROPPED
        assert isinstance(d, Reconnect) and d.url == URLS[(i + 1) % 3]
        if end not in ("refused", 4009):
            assert 0 <= d.delay <= ceiling
        ceiling = min(20.0, ceiling * 2)
    assert p.stats.rejected == sum(1 for e in ends if e in ("refused", 4009))
    assert p.backoff.attempt == len(ends)
    connect(p)
    assert p.backoff.attempt == 0  # a welcome resets the backoff


def test_refusals_are_counted_in_the_lane_the_handshake_asked():
    """No resume token in the handshake URL: the new-session lane; with one: the resume lane
    (the load test reports both, and a drain must see no resume refused)."""
    p = client()
    assert "rt=" not in p.connect_url()
    p.handshake_refused(429, 1.0, 0.0)
    assert "rt=" not in p.connect_url()
    p.connection_lost(4009, "rate_limited: retry_after=1", 0.0)
    connect(p)  # the welcome gives a resume token
    p.connection_lost(1006, "", 1.0)
    assert "rt=rt-1" in p.connect_url()
    p.handshake_refused(503, None, 1.0)
    assert (p.stats.rejected_new, p.stats.rejected_resume, p.stats.rejected) == (2, 1, 3)


def test_refusal_without_retry_after_waits_at_least_a_second():
    p = client()
    p.connect_url()
    assert p.handshake_refused(503, None, 0.0).delay >= 1.0


def test_a_notice_without_hint_moves_to_the_next_url_and_close_stops():
    p = client()
    connect(p)
    (n,) = p.receive(ctl("reconnect", delay_ms=250), 1.0)
    assert n.url == URLS[1] and n.delay == 0.25
    d = p.connection_lost(Close.GOING_AWAY, "", 2.0)
    assert d == Reconnect(0.25, URLS[1], RetryCause.NOTICE)
    assert p.connect_url().startswith(URLS[1] + "?sid=session-1&rt=rt-1")
    p.hello()
    p.receive(welcome(rt="rt-2"), 2.5)
    assert p.stats.reconnect_notices == 1 and p.stats.resume_times == [0.5]
    p.close()
    assert p.frames_to_send() == [] and decode_frame(p.bye()) == Bye("client closed")
    p.receive(encode_frame(Ack(0)), 3.0)  # a closing connection still hears the gateway
    assert isinstance(p.connection_lost(1000, "", 3.0), Stopped)
    with pytest.raises(RuntimeError):
        p.hello()


def test_messages_are_msgpack_maps_the_gateway_decodes():
    p = client("agent")
    p.connect_url()
    raw = msgpack.unpackb(p.hello())
    assert raw == {"t": "hello", "v": 1, "role": "agent", "sid": "session-1", "token": "tok"}


# ---- the entry points of a shell that decodes and encodes frames itself (the load generator)


@given(
    st.sampled_from(["agent", "visitor"]),
    st.lists(
        st.tuples(
            st.integers(0, 2),  # epoch
            st.sampled_from([None, "aaaaa1", "aaaaa2"]),  # src (the visitor's receives)
            st.lists(st.integers(-1, 12), min_size=1, max_size=4),  # seqs, repeats and gaps
        ),
        max_size=30,
    ),
)
def test_receive_items_keeps_what_receive_frame_keeps(role, frames):
    """The same frames, fed as decoded lists to one client and as frames to its twin: the
    same events kept, and the same state and counts after each."""
    fast, slow = client(role), client(role)
    for p in (fast, slow):
        connect(p, aid="a123456789abc" if role == "agent" else None, delivered=None)
    for epoch, src, seqs in frames:
        if role == "agent":
            src = None
        items = [[s, "pointer", 7, {"t": 1.5}] for s in seqs]
        kept = fast.receive_items(epoch, items, src, 2.0)
        (d,) = slow.receive_frame(Events(epoch, [Event(*i) for i in items], src), 2.0)
        assert [list(e) for e in kept] == [list(e) for e in d.events]
        assert (fast.last_v, fast.last_a) == (slow.last_v, slow.last_a)
        assert fast.stats == slow.stats


def test_receive_items_and_receive_ack_refuse_what_receive_frame_refuses():
    p = client("agent")
    with pytest.raises(ClientError):
        p.receive_items(1, [[1, "pointer", 0, None]], None, 1.0)
    with pytest.raises(ClientError):
        p.receive_ack(1)
    connect(p, aid="a123456789abc", delivered=[1, 0])
    p.seq.push("pointer", 0, None)
    with pytest.raises(ClientError):
        p.receive_ack(2)  # beyond the last event numbered
    assert p.receive_ack(1) == 1 and p.receive_ack(1) == 0


@given(st.lists(st.integers(0, 3), max_size=12), st.integers(0, 5))
def test_take_unsent_hands_out_what_frames_to_send_would_frame(pushes, ack_at):
    """Twins numbered the same events: one takes them unencoded, one frames them; acks and a
    resume in between (after a welcome the unacked ones go again)."""
    a, b = client(), client()
    for p in (a, b):
        connect(p)
    for i, n in enumerate(pushes):
        for p in (a, b):
            for _ in range(n):
                p.seq.push("pointer", i, {"i": i})
        if i == ack_at:
            top = a.seq.next_seq - 1
            for p in (a, b):
                p.receive_ack(top // 2)
                p.connection_lost(None, "", 1.0)
                connect(p, durable=top // 2)
        taken = a.take_unsent()
        framed = [e for f in b.frames_to_send() for e in decode_frame(f).events]
        assert [tuple(e) for e in taken] == [tuple(e) for e in framed]


def test_push_event_keeps_an_event_numbered_by_its_caller():
    s = Sequencer(epoch=1, max_unacked=2)
    assert s.newest() is None
    ev = s.push_event(Event(1, "pointer", 0, None), 40)
    assert s.newest() is ev and s.next_seq == 2 and s.unacked_bytes == 40
    with pytest.raises(ValueError):
        s.push_event(Event(5, "pointer", 0, None), 1)  # not the next seq
    s.push_event(Event(2, "pointer", 0, None), 1)
    with pytest.raises(Exception, match="unacked"):
        s.push_event(Event(3, "pointer", 0, None), 1)  # full: nothing numbered
    assert s.ack(2) == 2 and s.newest() is None and s.unacked_bytes == 0
