import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.codec import Close, Event, ProtocolError, payload_size
from gateway.sequencer import (
    ResendBufferFull,
    SequenceCheck,
    Sequencer,
)

# --- Sequencer ------------------------------------------------------------------------------


def test_push_numbers_from_next_seq_and_keeps_events():
    s = Sequencer(epoch=3, next_seq=5)
    assert (s.epoch, s.next_seq, s.acked) == (3, 5, 4)
    a = s.push("mutation", 100, b"ab")
    b = s.push("click", 101, {"x": 1})
    assert a == Event(5, "mutation", 100, b"ab")
    assert b == Event(6, "click", 101, {"x": 1})
    assert s.next_seq == 7
    assert s.unacked() == [a, b]
    assert s.unacked_bytes == 2 + len(msgpack.packb({"x": 1}, use_bin_type=True))


@given(st.binary(max_size=64) | st.text(max_size=64) | st.lists(st.text(max_size=8), max_size=4))
def test_the_resend_buffer_counts_payloads_as_the_codec_limit_does(payload):
    """A str costs its UTF-8 bytes ("héllo" is 6), as the gateway's MAX_EVENT_BYTES counts it."""
    s = Sequencer()
    s.push("mutation", 0, payload)
    assert s.unacked_bytes == payload_size(payload)
    if isinstance(payload, str):
        assert s.unacked_bytes == len(payload.encode())


def test_ack_is_cumulative_and_stale_acks_are_noops():
    s = Sequencer()
    evs = [s.push("pointer", i, b"x" * i) for i in range(1, 6)]
    assert s.ack(3) == 3
    assert s.acked == 3
    assert s.unacked() == evs[3:]
    assert s.unacked_bytes == 4 + 5
    assert s.ack(3) == 0
    assert s.ack(1) == 0
    assert s.ack(0) == 0
    assert s.acked == 3
    assert s.ack(5) == 2
    assert s.unacked() == []
    assert s.unacked_bytes == 0


def test_ack_beyond_last_sent_is_a_protocol_error():
    s = Sequencer()
    s.push("pointer", 0, b"")
    with pytest.raises(ProtocolError) as ei:
        s.ack(2)
    assert ei.value.code == "bad_ack"
    assert ei.value.close_code == Close.PROTOCOL
    assert len(s.unacked()) == 1
    with pytest.raises(ProtocolError):
        Sequencer().ack(1)


def test_back_pressure_by_count():
    s = Sequencer(max_unacked=3)
    for _ in range(3):
        s.push("pointer", 0, b"")
    assert not s.can_push()
    with pytest.raises(ResendBufferFull):
        s.push("pointer", 0, b"")
    assert s.next_seq == 4  # the refused event used no seq
    s.ack(1)
    assert s.can_push()
    assert s.push("pointer", 0, b"").seq == 4


def test_back_pressure_by_bytes():
    s = Sequencer(max_unacked_bytes=10)
    s.push("mutation", 0, b"x" * 6)
    assert s.can_push(4)
    assert not s.can_push(5)
    with pytest.raises(ResendBufferFull):
        s.push("mutation", 0, b"x" * 5)
    assert s.next_seq == 2
    s.push("mutation", 0, b"x" * 4)
    assert s.unacked_bytes == 10
    s.ack(1)
    assert s.unacked_bytes == 4
    s.push("mutation", 0, b"x" * 5)


def test_oversized_event_is_admitted_into_an_empty_buffer():
    # Waiting for acks could never make room for it, so refusing would block forever.
    s = Sequencer(max_unacked_bytes=4)
    assert s.push("mutation", 0, b"x" * 9).seq == 1
    with pytest.raises(ResendBufferFull):
        s.push("mutation", 0, b"")
    s.ack(1)
    assert s.push("mutation", 0, b"").seq == 2


def test_resume_acks_durable_and_returns_the_rest():
    s = Sequencer(epoch=2)
    evs = [s.push("input", i, str(i)) for i in range(6)]
    assert s.resume(2) == evs[2:]
    assert s.acked == 2
    assert s.resume(1) == evs[2:]  # stale: nothing lost
    assert s.resume(6) == []
    assert s.resume(0) == []


def test_resume_beyond_last_sent_is_a_protocol_error():
    s = Sequencer()
    s.push("input", 0, "a")
    with pytest.raises(ProtocolError) as ei:
        s.resume(2)
    assert ei.value.code == "bad_resume"
    assert ei.value.close_code == Close.PROTOCOL
    assert s.unacked() == [Event(1, "input", 0, "a")]


def test_restart_starts_a_new_epoch_at_seq_one():
    s = Sequencer(epoch=1, max_unacked=2)
    s.push("input", 0, "a")
    s.push("input", 0, "b")
    s.restart(2)
    assert (s.epoch, s.next_seq, s.acked, s.unacked(), s.unacked_bytes) == (2, 1, 0, [], 0)
    assert s.push("input", 0, "c") == Event(1, "input", 0, "c")
    with pytest.raises(ProtocolError):
        s.ack(2)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.binary(max_size=8)),
        st.tuples(st.just("ack"), st.floats(0, 1)),
        st.tuples(st.just("resume"), st.floats(0, 1)),
    ),
    max_size=60,
)


@given(ops)
def test_unacked_is_exactly_the_events_above_acked(ops):
    s = Sequencer(max_unacked=20, max_unacked_bytes=64)
    sent: list[Event] = []
    for op, arg in ops:
        if op == "push":
            if s.can_push(len(arg)):
                sent.append(s.push("custom", len(sent), arg))
            else:
                with pytest.raises(ResendBufferFull):
                    s.push("custom", len(sent), arg)
        else:
            # any seq up to the last sent: monotone acks or stale repeats
            seq = int(arg * (s.next_seq - 1))
            before = s.acked
            if op == "ack":
                freed = s.ack(seq)
                assert freed == max(0, seq - before)
            else:
                assert s.resume(seq) == [e for e in sent if e.seq > max(seq, before)]
            assert s.acked == max(seq, before)
        assert [e.seq for e in sent] == list(range(1, len(sent) + 1))
        assert s.unacked() == [e for e in sent if e.seq > s.acked]
        assert s.unacked_bytes == sum(len(e.payload) for e in s.unacked())
        assert len(s.unacked()) <= 20


# --- SequenceCheck --------------------------------------------------------------------------


def evs(*seqs):
    return [Event(s, "pointer", 0, None) for s in seqs]


def test_check_accepts_the_exact_continuation():
    c = SequenceCheck(4)
    c.check(evs(4, 5, 6))
    assert c.next_seq == 7
    c.check([])
    assert c.next_seq == 7
    c.check(evs(7))
    assert c.next_seq == 8


@pytest.mark.parametrize(
    ("batch", "code"),
    [
        ((3,), "seq_backwards"),
        ((5,), "seq_gap"),
        ((4, 5, 5), "seq_backwards"),
        ((4, 6), "seq_gap"),
        ((4, 5, 6, 2), "seq_backwards"),
    ],
)
def test_check_rejects_without_partial_advance(batch, code):
    c = SequenceCheck(4)
    with pytest.raises(ProtocolError) as ei:
        c.check(evs(*batch))
    assert ei.value.code == code
    assert ei.value.close_code == Close.PROTOCOL
    assert c.next_seq == 4
    c.check(evs(4))
    assert c.next_seq == 5
