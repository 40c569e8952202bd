"""The live path of delivery (gateway/delivery.py) without NATS: stored batches in, frames out.

Stream reads (fills, tail checks) go through real NATS in the session and failover tests."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.codec import (
    MAX_EVENT_BYTES,
    MAX_EVENTS_PER_BATCH,
    Event,
    Events,
    decode_frame,
    encode_batch,
    encode_frame,
    payload_size,
)
from gateway.delivery import AT_ONCE, Delivery, Receiver, batches
from gateway.nats_wire import Msg
from gateway.reorder import ReorderBuffer, ReorderOverflow


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def make(src: str | None = None, buf: ReorderBuffer | None = None, high_water: int = 1 << 20):
    sent: list[bytes] = []
    pokes: list[float] = []
    clock = Clock()
    backlog = {"n": 0}
    d = Delivery(
        nc=None,
        stream="S",
        send=lambda b: (sent.append(b), backlog.__setitem__("n", backlog["n"] + len(b))),
        backlog=lambda: backlog["n"],
        clock=clock,
        poke=pokes.append,
        gap_timeout=0.25,
        tail_check=2.0,
        idle_check=30.0,
        role="agent",
        high_water=high_water,
    )
    subject = "cb.s1.v" if src is None else f"cb.s1.a.{src}"
    key = "v" if src is None else src
    d.receivers[key] = Receiver(subject, src, buf if buf is not None else ReorderBuffer(1, 1))
    return d, sent, pokes, clock, backlog, subject


def batch(epoch: int, first: int, n: int, src: str | None = None, kind: str = "mutation"):
    return encode_batch(epoch, [Event(s, kind, 0, {"s": s}) for s in range(first, first + n)], src)


def delivered(sent: list[bytes]) -> list[tuple[int, int]]:
    out = []
    for b in sent:
        f = decode_frame(b)
        out += [(f.epoch, e.seq) for e in f.events]
    return out


def test_an_in_order_batch_is_forwarded_as_it_is_stored():
    d, sent, pokes, *_, subject = make()
    body = batch(1, 1, 3)
    d.on_live(Msg(subject, 1, None, body))
    assert sent == [body]  # no decoding into events and encoding again
    d.on_live(Msg(subject, 1, None, batch(1, 1, 3)))  # the same again: dropped
    assert sent == [body] and not pokes


def test_an_agents_batch_reaches_the_visitor_with_its_src():
    d, sent, *_, subject = make(src="a12345", buf=ReorderBuffer(0, 1))
    d.on_live(Msg(subject, 1, None, batch(0, 1, 2, src="a12345")))
    assert decode_frame(sent[0]).src == "a12345"


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=1, max_size=15), st.randoms(use_true_random=False))
def test_batches_in_any_order_with_repeats_are_delivered_once_in_order(sizes, rnd):
    d, sent, pokes, clock, _, subject = make()
    bodies, seq = [], 1
    for n in sizes:
        bodies.append(batch(1, seq, n))
        seq += n
    arrivals = bodies + rnd.sample(bodies, k=min(3, len(bodies)))
    rnd.shuffle(arrivals)
    for b in arrivals:
        d.on_live(Msg(subject, 1, None, b))
        clock.t += 0.01
    assert delivered(sent) == [(1, s) for s in range(1, seq)]
    held = any(arrivals.index(b) > arrivals.index(bodies[i + 1]) for i, b in enumerate(bodies[:-1]))
    assert bool(pokes) == held  # a hole asks for a timer: a stream read if it lasts


def test_a_receiver_waiting_for_a_snapshot_starts_at_the_newest_part_0():
    d, sent, *_, subject = make(buf=None)
    d.receivers["v"].buf = None
    d.on_live(Msg(subject, 1, None, batch(2, 5, 3)))  # no snapshot yet: nothing to show
    assert sent == []
    snap = [Event(8, "mutation", 0, {}), Event(9, "snapshot", 0, {"i": 0, "n": 2, "d": b""})]
    snap.append(Event(10, "snapshot", 0, {"i": 1, "n": 2, "d": b""}))
    d.on_live(Msg(subject, 1, None, encode_batch(2, snap)))
    d.on_live(Msg(subject, 1, None, batch(2, 11, 1)))
    assert delivered(sent) == [(2, 9), (2, 10), (2, 11)]


def test_a_slow_client_leaves_the_live_path_until_it_has_read_what_it_has():
    d, sent, pokes, clock, backlog, subject = make(high_water=100)
    d.on_live(Msg(subject, 1, None, batch(1, 1, 40)))  # over 100 bytes queued
    rcv = d.receivers["v"]
    assert rcv.behind and d.behind
    d.on_live(Msg(subject, 1, None, batch(1, 41, 1)))  # not taken: read from the stream later
    assert delivered(sent)[-1] == (1, 40)
    assert d.deadline() == AT_ONCE  # the connection's task has work: wait for the client, read


def test_an_undecodable_body_asks_for_a_stream_read():
    d, sent, pokes, clock, _, subject = make()
    d.on_live(Msg(subject, 1, None, b"\xc1 not msgpack"))
    assert d.receivers["v"].needs_read and pokes == [clock.t] and sent == []


def test_tail_checks_are_due_after_the_last_event_and_every_idle_round():
    d, sent, pokes, clock, _, subject = make()
    assert not d.sweep(clock.t)
    d.on_live(Msg(subject, 1, None, batch(1, 1, 1)))
    assert not d.sweep(clock.t + 0.5)  # the sweep notes when it saw the event (to its second)
    assert not d.sweep(clock.t + 2.0)
    assert d.sweep(clock.t + 2.5) and d.receivers["v"].needs_tail
    d.receivers["v"].needs_tail = False
    assert not d.sweep(clock.t + 3.5)  # looked once after that event: done
    assert d.sweep(clock.t + 31.0)  # the idle round looks at every tail
    d.receivers["v"].needs_tail = False
    d.nats_reconnected()  # the live path may have lost messages
    assert d.receivers["v"].needs_tail and pokes[-1] == clock.t


def test_too_much_waiting_behind_a_hole_overflows():
    d, sent, pokes, clock, _, subject = make(buf=ReorderBuffer(1, 1, max_pending=5))
    with pytest.raises(ReorderOverflow):
        d.on_live(Msg(subject, 1, None, batch(1, 10, 8)))


def test_a_receiver_with_work_is_due_whenever_the_clock_is_read():
    """A deadline of `clock()` read after the caller's `now` would never be due (and its
    task would spin waking up for it): work to do is due at once."""
    d, sent, pokes, clock, _, subject = make()
    d.receivers["v"].needs_tail = True
    due = d.deadline()
    clock.t += 1.0
    assert due <= clock.t - 1.0 and due <= clock.t


# ---- batches: what goes in one frame --------------------------------------------------------

released = st.lists(
    st.tuples(
        st.integers(0, 2),
        st.binary(max_size=300)
        | st.text(max_size=100)
        | st.dictionaries(st.text(max_size=4), st.integers(-(2**63), 2**64 - 1)),
    ),
    max_size=40,
)


def cost(ev: Event) -> int:
    return 32 + payload_size(ev.payload)


@settings(max_examples=60)
@given(released, st.integers(1, 2000))
def test_frames_keep_order_one_epoch_each_and_fill_up_to_the_budget(items, max_bytes):
    items = [(epoch, Event(i + 1, "mutation", 0, p)) for i, (epoch, p) in enumerate(items)]
    frames = list(batches(items, max_bytes))
    assert [(e, ev) for e, evs in frames for ev in evs] == items  # nothing lost, reordered
    for i, (epoch, evs) in enumerate(frames):
        size = sum(cost(ev) for ev in evs)
        assert evs and (len(evs) == 1 or size <= max_bytes)  # one event over it goes alone
        if i + 1 < len(frames):  # cut only where the next event could not join
            nxt_epoch, nxt = frames[i + 1]
            assert nxt_epoch != epoch or size + cost(nxt[0]) > max_bytes


def test_a_frame_holds_at_most_the_codecs_events_per_frame():
    items = [(1, Event(s, "pointer", 0, None)) for s in range(1, 2 * MAX_EVENTS_PER_BATCH + 2)]
    assert [len(evs) for _, evs in batches(items)] == [MAX_EVENTS_PER_BATCH] * 2 + [1]


def test_a_strings_utf8_bytes_count_against_the_budget():
    """50,000 'é' are 100,000 bytes on the wire: two fit in 250,000 bytes, three do not."""
    items = [(1, Event(s, "mutation", 0, "é" * 50_000)) for s in range(1, 4)]
    assert [len(evs) for _, evs in batches(items, 250_000)] == [2, 1]


def test_default_frames_of_events_under_the_limit_decode():
    """With the default budget, every frame of events under MAX_EVENT_BYTES is a frame the
    codec accepts (under MAX_FRAME_BYTES): the budget is half of it."""
    items = [(0, Event(s, "mutation", 0, b"x" * (MAX_EVENT_BYTES - s))) for s in range(1, 10)]
    items += [(0, Event(s, "pointer", 0, {"x": s})) for s in range(10, 600)]
    for epoch, evs in batches(items):
        assert decode_frame(encode_frame(Events(epoch=epoch, events=evs))).events == evs
