"""The sender's publish chain (gateway/publish_chain.py), sans-I/O: batches in order, each
naming the previous one's stream position; acks never pass what is stored or a snapshot
whose pointer is not yet recorded; retries resend the very same message."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.codec import MAX_FRAME_BYTES, Event, ProtocolError, decode_batch, encode_batch
from gateway.jetstream import publish_headers, received_at
from gateway.jetstream_codes import WRONG_LAST_SEQUENCE
from gateway.nats_wire import parse_headers
from gateway.publish_chain import MAX_BODY, PublishChain, Refusal
from gateway.session_store import SnapshotPointer


def chain(**kw) -> PublishChain:
    opts = dict(msg_id_prefix="s1:3", epoch=3, src=None, last_sseq=40, acked=0, is_visitor=True)
    opts.update(kw)
    return PublishChain(**opts)


def events(first: int, n: int, kind: str = "mutation", size: int = 10) -> list[Event]:
    return [Event(s, kind, 0, {"d": "x" * size}) for s in range(first, first + n)]


def snapshot(seq: int, part: int = 0, parts: int = 1) -> Event:
    return Event(seq, "snapshot", 0, {"i": part, "n": parts, "d": b"page"})


# A frame: (number of events, payload size, has a snapshot part 0, sent as canonical wire bytes)
frames = st.lists(
    st.tuples(st.integers(1, 40), st.integers(0, 3000), st.booleans(), st.booleans()),
    min_size=1,
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(frames, st.randoms(use_true_random=False), st.sampled_from([None, "a12345"]))
def test_stored_messages_are_a_gapless_chain_and_acks_never_run_ahead(spec, rnd, src):
    is_visitor = src is None
    c = chain(src=src, is_visitor=is_visitor, acked=0, last_sseq=40, max_events=64)
    seq, sseq, now = 1, 40, 0.0
    sent: list[Event] = []
    stored_events: list[Event] = []
    held: list[int] = []
    acks = [0]
    prev_sseq = 40
    for n, size, with_snap, as_wire in spec:
        evs = events(seq, n, size=size)
        if with_snap and is_visitor:
            k = rnd.randrange(n)
            evs[k] = snapshot(evs[k].seq)
        wire = encode_batch(3 if is_visitor else 0, evs) if as_wire else None
        c.add(evs, wire)
        sent += evs
        seq += n
        # Publish and store whatever the chain offers, sometimes with a recorded pointer.
        while (msg := c.next(now)) is not None:
            assert c.next(now) is None  # one message in flight
            assert msg.expected == prev_sseq  # names the previous message's position
            assert msg.first == (stored_events[-1].seq + 1 if stored_events else 1)
            batch = decode_batch(msg.body)
            assert batch.events() == sent[msg.first - 1 : msg.last]
            assert batch.src == src and len(msg.body) <= MAX_BODY
            assert len(batch.items) <= 64 or (as_wire and is_visitor)
            assert msg.msg_id == f"s1:3:{msg.first}-{msg.last}"
            sseq += rnd.randrange(1, 5)  # other sessions' messages in between
            stored = c.stored(sseq)
            prev_sseq = sseq
            stored_events += batch.events()
            part0 = [e.seq for e in batch.events() if e.kind == "snapshot"]
            assert (stored.record is not None) == bool(part0)
            if stored.record is not None:
                assert stored.record == SnapshotPointer(3, part0[-1], sseq)
                held.append(stored.record.seq)
            if stored.ack is not None:
                acks.append(stored.ack)
            if held and rnd.random() < 0.5:
                got = c.pointer_recorded(held.pop(0))
                if got is not None:
                    acks.append(got)
            limit = min(held) - 1 if held else stored_events[-1].seq
            assert acks == sorted(acks) and acks[-1] <= limit and c.acked == acks[-1]
    for p in held:
        got = c.pointer_recorded(p)
        if got is not None:
            acks.append(got)
    assert stored_events == sent
    assert c.acked == len(sent) and c.idle and c.outstanding == 0


def test_one_canonical_frame_is_stored_as_it_came_and_an_agents_gains_its_src():
    frame = encode_batch(3, events(1, 2))
    c = chain()
    c.add(events(1, 2), frame)
    assert c.next(0.0).body is frame
    a = chain(src="a12345", is_visitor=False, epoch=0)
    a.add(events(1, 2), encode_batch(0, events(1, 2)))
    assert decode_batch(a.next(0.0).body).src == "a12345"


def test_frames_queued_behind_a_message_in_flight_go_out_as_one():
    c = chain()
    c.add(events(1, 1))
    first = c.next(0.0)
    for s in range(2, 12):
        c.add(events(s, 1), encode_batch(3, events(s, 1)))
    assert c.next(0.0) is None and c.outstanding == 11
    c.stored(41)
    second = c.next(0.0)
    assert (first.first, first.last, second.first, second.last) == (1, 1, 2, 11)
    assert second.expected == 41


def test_a_frame_too_big_once_it_names_its_agent_is_split():
    big = [Event(s, "custom", 0, "y" * (120 * 1024)) for s in range(1, 10)]  # ~1.05 MiB
    c = chain(src="a12345", is_visitor=False, epoch=0, max_bytes=10 * MAX_FRAME_BYTES)
    c.add(big)
    parts = []
    while (msg := c.next(0.0)) is not None:
        assert len(msg.body) <= MAX_BODY
        parts.append((msg.first, msg.last))
        c.stored(100 + len(parts))
    assert parts[0][0] == 1 and parts[-1][1] == 9 and len(parts) >= 2
    assert all(b[0] == a[1] + 1 for a, b in zip(parts, parts[1:], strict=False))


def test_a_late_ack_resends_the_same_message_until_the_publish_timeout():
    c = chain(attempt_timeout=2.0, publish_timeout=30.0)
    c.add(events(1, 3))
    msg = c.next(100.0)
    assert c.due(101.0) is None
    assert c.due(102.0) is msg  # same id, same expected position: a retry, not a new message
    assert c.due(102.5) is None and c.due(104.0) is msg
    with pytest.raises(ProtocolError) as ei:
        c.due(131.0)
    assert ei.value.code == "unavailable"


def test_a_new_stream_leader_makes_the_message_in_flight_due_at_once():
    c = chain(attempt_timeout=2.0, publish_timeout=30.0)
    assert not c.retry_now(100.0)  # nothing in flight: nothing to retry
    c.add(events(1, 3))
    msg = c.next(100.0)
    assert c.due(100.5) is None
    assert c.retry_now(100.5)  # its attempt went to the old leader: try again now
    assert c.next_try == 100.5
    assert c.due(100.5) is msg  # the very same message (same id, same expected position)
    assert c.due(101.0) is None and c.due(102.5) is msg  # then the usual timer again
    c.stored(41)
    assert c.in_flight is None and not c.retry_now(103.0)
    c.add(events(4, 1))
    c.next(103.0)
    c.retry_now(134.0)  # a try is already due: nothing to move
    with pytest.raises(ProtocolError):  # the election does not extend the publish timeout
        c.due(134.0)


def test_no_stream_leader_retries_soon_and_other_refusals_end_the_connection():
    c = chain()
    c.add(events(1, 1))
    c.next(0.0)
    assert c.refused(5.0, 503, None, "no responders") is Refusal.RETRY
    assert c.next_try == pytest.approx(5.25)
    assert c.refused(6.0, 409, 10158, "duplicate message id is in process") is Refusal.RETRY
    # A replicated stream while another publish to the subject is being proposed: the
    # same message again soon (then a duplicate, a 10071 with a tail to check, or stored).
    assert c.refused(7.0, 400, 10164, "wrong last sequence") is Refusal.RETRY
    assert c.next_try == pytest.approx(7.25)
    with pytest.raises(ProtocolError) as ei:
        c.refused(6.0, 400, 10059, "stream not found")
    assert ei.value.code == "unavailable"


def test_a_wrong_last_sequence_is_ours_when_the_tail_carries_our_message_id():
    c = chain()
    c.add(events(1, 2))
    msg = c.next(0.0)
    assert c.refused(1.0, 400, WRONG_LAST_SEQUENCE, "wrong last sequence: 44") is Refusal.CHECK_TAIL
    stored = c.confirm(msg, msg.msg_id, 44)
    assert stored.ack == 2 and c.last_sseq == 44 and c.idle
    assert c.confirm(msg, msg.msg_id, 44) is None  # settled meanwhile: nothing to do
    c.add(events(3, 1))
    msg = c.next(0.0)
    with pytest.raises(ProtocolError):  # another writer's message is the tail: resume
        c.confirm(msg, "s1:3:1-2", 50)


def test_acks_start_from_what_was_durable_at_the_join():
    c = chain(acked=7, last_sseq=90)
    c.add(events(8, 2))
    msg = c.next(0.0)
    assert (msg.first, msg.expected) == (8, 90)
    assert c.outstanding == 2
    assert c.stored(91).ack == 9


def test_a_frame_at_the_size_limit_is_split_so_its_headers_still_fit_nats_max_payload():
    evs = [Event(s, "custom", 0, "z" * 104_450) for s in range(1, 11)]  # just under 1 MiB
    frame = encode_batch(3, evs)
    assert MAX_BODY < len(frame) <= MAX_FRAME_BYTES
    c = chain()
    c.add(evs, frame)
    first = c.next(0.0)
    assert first.body is not frame and len(first.body) <= MAX_BODY and first.first == 1
    c.stored(41)
    second = c.next(0.0)
    assert second.first == first.last + 1 and second.last == 10


def test_a_message_carries_its_oldest_frames_arrival_to_the_receiving_gateways():
    """Delivery latency (issue 16) is timed from the oldest frame a message holds; the header
    that carries it reads back exactly, and a message without one is not timed."""
    c = chain()
    c.add(events(1, 1), received=100.25)
    assert c.next(0.0).received == 100.25
    for s, at in ((2, 101.5), (3, 102.0)):
        c.add(events(s, 1), received=at)
    c.stored(41)
    msg = c.next(0.0)
    assert (msg.first, msg.last, msg.received) == (2, 3, 101.5)
    headers = publish_headers(msg)
    assert parse_headers(headers)["Nats-Msg-Id"] == "s1:3:2-3"
    assert received_at(headers) == 101.5
    msg.received = 0.0  # not known (a frame from a test's chain): no header, no timing
    assert received_at(publish_headers(msg)) is None
    assert received_at(b"NATS/1.0\r\nCb-Received: 12x\r\n\r\n") is None
