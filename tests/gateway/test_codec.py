import string

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.codec import (
    AGENT_KINDS,
    CONTROL_OPS,
    MAX_EVENT_BYTES,
    MAX_EVENTS_PER_BATCH,
    MAX_FRAME_BYTES,
    VISITOR_KINDS,
    Ack,
    Bye,
    Close,
    Control,
    Event,
    Events,
    Hello,
    ProtocolError,
    Resume,
    Welcome,
    close_name,
    decode_batch,
    decode_frame,
    encode_batch,
    encode_frame,
    error_frame,
    payload_size,
)

U53 = st.integers(0, 2**53)
SID_CHARS = string.ascii_letters + string.digits + "_-"
sids = st.text(SID_CHARS, min_size=8, max_size=64)
aids = st.text(string.ascii_letters + string.digits, min_size=4, max_size=32).map(lambda s: "a" + s)
short_text = st.text(max_size=40)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False),
    st.binary(max_size=64),
    short_text,
)
payloads = st.one_of(
    st.binary(max_size=256),
    st.text(max_size=256),
    st.integers(-(2**63), 2**64 - 1),
    st.dictionaries(short_text, scalars, max_size=5),
    st.lists(scalars, max_size=5),
)
snapshot_parts = st.integers(1, 50).flatmap(
    lambda n: st.fixed_dictionaries(
        {"i": st.integers(0, n - 1), "n": st.just(n), "d": st.binary(max_size=64)}
    )
)
events = st.builds(
    Event,
    seq=st.integers(1, 2**53),
    kind=st.sampled_from(sorted(VISITOR_KINDS - {"snapshot"})),
    ts=U53,
    payload=payloads,
) | st.builds(
    Event, seq=st.integers(1, 2**53), kind=st.just("snapshot"), ts=U53, payload=snapshot_parts
)


def pack(m) -> bytes:
    return msgpack.packb(m, use_bin_type=True)


def rejects(data, code: str, close_code: int, **kw) -> ProtocolError:
    with pytest.raises(ProtocolError) as ei:
        decode_frame(data, **kw)
    assert (ei.value.code, ei.value.close_code) == (code, close_code), ei.value
    return ei.value


# --- round trips ----------------------------------------------------------------------------


@given(U53, st.lists(events, min_size=1, max_size=10), st.none() | aids)
def test_events_round_trip(epoch, evs, src):
    f = Events(epoch=epoch, events=evs, src=src)
    assert decode_frame(encode_frame(f)) == f


@given(U53)
def test_ack_round_trip(seq):
    assert decode_frame(encode_frame(Ack(seq))) == Ack(seq)


@st.composite
def hellos(draw):
    role = draw(st.sampled_from(["visitor", "agent"]))
    resume = None
    if draw(st.booleans()):
        if role == "agent":
            recv = draw(st.none() | st.lists(U53, min_size=2, max_size=2))
        else:
            recv = draw(st.none() | st.dictionaries(aids, U53, max_size=5))
        resume = Resume(rt=draw(st.text(max_size=100)), epoch=draw(U53), recv=recv)
    return Hello(role=role, sid=draw(sids), token=draw(st.text(max_size=300)), resume=resume)


@given(hellos())
def test_hello_round_trip(h):
    assert decode_frame(encode_frame(h)) == h


@given(
    st.builds(
        Control,
        op=st.sampled_from(sorted(CONTROL_OPS)),
        code=st.none() | st.text(max_size=64),
        msg=st.none() | st.text(max_size=1024),
        delay_ms=st.none() | st.integers(0, 10**9),
        hint=st.none() | st.lists(st.text(max_size=60), max_size=4),
        epoch=st.none() | U53,
    )
)
def test_control_round_trip(c):
    assert decode_frame(encode_frame(c)) == c


@given(st.text(max_size=256))
def test_bye_round_trip(reason):
    assert decode_frame(encode_frame(Bye(reason))) == Bye(reason)


@given(
    st.builds(
        Welcome,
        gw=st.text(max_size=128),
        epoch=U53,
        rt=st.text(max_size=200),
        durable=U53,
        aid=st.none() | aids,
        delivered=st.none()
        | st.lists(U53, min_size=2, max_size=2)
        | st.dictionaries(aids, U53, max_size=4),
    )
)
def test_welcome_round_trip(w):
    assert decode_frame(encode_frame(w)) == w


def test_error_frame_decodes_to_an_error_control():
    err = ProtocolError("seq_gap", "got seq 5, expected 3", Close.PROTOCOL)
    assert decode_frame(error_frame(err)) == Control(
        op="error", code="seq_gap", msg="got seq 5, expected 3"
    )


@given(U53, st.lists(events, min_size=1, max_size=8), st.none() | aids)
def test_a_stored_batch_round_trips_and_is_the_frame_receivers_get(epoch, evs, src):
    body = encode_batch(epoch, evs, src)
    batch = decode_batch(body)
    assert (batch.epoch, batch.events(), batch.src) == (epoch, evs, src)
    assert (batch.first, batch.last) == (evs[0].seq, evs[-1].seq)
    assert decode_frame(body) == Events(epoch=epoch, events=evs, src=src)


@given(U53, events)
def test_a_stored_event_of_the_earlier_layout_reads_as_a_batch_of_one(epoch, ev):
    legacy = msgpack.packb([epoch, ev.seq, ev.kind, ev.ts, ev.payload], use_bin_type=True)
    batch = decode_batch(legacy)
    assert (batch.epoch, batch.events(), batch.src) == (epoch, [ev], None)


@pytest.mark.parametrize(
    "body",
    [
        b"\xc1",
        msgpack.packb({"t": "ev", "e": 1, "ev": []}),
        msgpack.packb([1, 2]),
        msgpack.packb(7),
    ],
)
def test_a_body_that_is_not_a_stored_batch_is_a_value_error(body):
    with pytest.raises(ValueError):
        decode_batch(body)


def test_encode_rejects_non_frames():
    with pytest.raises(TypeError):
        encode_frame(Event(1, "click", 0, None))


# --- rejections -----------------------------------------------------------------------------


@given(st.binary(max_size=200))
def test_random_bytes_only_ever_raise_protocol_error(data):
    try:
        decode_frame(data)
    except ProtocolError:
        pass


frame_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(short_text, inner, max_size=4),
    max_leaves=12,
)
KEYS = ["t", "v", "role", "sid", "token", "resume", "e", "ev", "src", "seq", "op", "code", "msg"]
KEYS += ["delay_ms", "hint", "epoch", "gw", "rt", "durable", "aid", "delivered", "reason", "recv"]


@given(
    st.sampled_from(["ev", "ack", "hello", "bye", "ctl", "welcome", "nope"]),
    st.dictionaries(st.sampled_from(KEYS), frame_values, max_size=8),
)
def test_wrongly_typed_fields_only_ever_raise_protocol_error(t, m):
    m["t"] = t
    try:
        decode_frame(pack(m))
    except ProtocolError:
        pass


def test_garbage_bytes():
    rejects(b"\xc1", "bad_frame", Close.BAD_FRAME)  # a byte msgpack never uses
    rejects(pack([1, 2, 3])[:-1], "bad_frame", Close.BAD_FRAME)  # truncated
    rejects(b"", "bad_frame", Close.BAD_FRAME)


def test_text_frame():
    rejects(encode_frame(Ack(1)).decode("latin-1"), "text_frame", Close.UNSUPPORTED_DATA)


def test_oversized_frame():
    rejects(b"\x00" * (MAX_FRAME_BYTES + 1), "too_large", Close.TOO_BIG)


@pytest.mark.parametrize("m", [[1, 2], "ack", 7, None, b"\x00"])
def test_non_map(m):
    rejects(pack(m), "bad_shape", Close.BAD_FRAME)


@pytest.mark.parametrize("t", ["nope", None, 1, "EV"])
def test_unknown_type(t):
    rejects(pack({"t": t, "seq": 1}), "unknown_type", Close.BAD_FRAME)


def ev_frame(*evs, e=0, **extra) -> bytes:
    return pack({"t": "ev", "e": e, "ev": [list(x) for x in evs], **extra})


def test_unknown_kind():
    rejects(ev_frame([1, "telepathy", 0, None]), "unknown_kind", Close.BAD_FRAME)


def test_forbidden_kind():
    data = ev_frame([1, "pointer", 0, None], [2, "mutation", 0, b""])
    assert len(decode_frame(data).events) == 2  # allowed for a visitor
    rejects(data, "forbidden_kind", Close.PROTOCOL, allowed_kinds=AGENT_KINDS)
    agent = ev_frame([1, "highlight", 0, None])
    rejects(agent, "forbidden_kind", Close.PROTOCOL, allowed_kinds=VISITOR_KINDS)


def test_too_many_events():
    evs = [[i, "pointer", 0, None] for i in range(1, MAX_EVENTS_PER_BATCH + 2)]
    assert len(decode_frame(ev_frame(*evs[:-1])).events) == MAX_EVENTS_PER_BATCH
    rejects(ev_frame(*evs), "too_many_events", Close.BAD_FRAME)


def test_oversized_event_payload():
    ok = ev_frame([1, "mutation", 0, b"x" * MAX_EVENT_BYTES])
    assert decode_frame(ok).events[0].payload == b"x" * MAX_EVENT_BYTES
    rejects(
        ev_frame([1, "mutation", 0, b"x" * (MAX_EVENT_BYTES + 1)]), "event_too_large", Close.TOO_BIG
    )
    big = {"d": "y" * MAX_EVENT_BYTES}
    rejects(ev_frame([1, "mutation", 0, big]), "event_too_large", Close.TOO_BIG)


@given(
    st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=4),
    st.sampled_from([-1, 0, 1]),
)
def test_the_event_limit_counts_a_strings_utf8_bytes(unit, step):
    """A str payload counts its UTF-8 bytes, as msgpack carries it, not its characters: the
    decoder refuses exactly the payloads `payload_size` puts over MAX_EVENT_BYTES."""
    width = len(unit.encode())
    text = unit * (MAX_EVENT_BYTES // width + step)
    size = len(text.encode())
    assert payload_size(text) == size
    assert len(msgpack.packb(text)) - size in (1, 2, 3, 5)  # msgpack's str header, no more
    data = encode_frame(Events(epoch=0, events=[Event(1, "mutation", 0, text)]))
    if size > MAX_EVENT_BYTES:
        rejects(data, "event_too_large", Close.TOO_BIG)
    else:
        assert decode_frame(data).events[0].payload == text


@given(payloads)
def test_payload_size_is_what_the_encoder_writes_less_its_header(payload):
    """The size counts the payload as encoded: at most a msgpack str/bin header (5 bytes) less."""
    encoded = len(msgpack.packb(payload, use_bin_type=True))
    assert 0 <= encoded - payload_size(payload) <= 5


@pytest.mark.parametrize(
    "bad",
    [
        [0, "click", 0, None],  # seq starts at 1
        [True, "click", 0, None],
        [1.0, "click", 0, None],
        [2**53 + 1, "click", 0, None],
        [1, "click", -1, None],
        [1, "click", 1.5, None],
        [1, 7, 0, None],
        [1, "x" * 33, 0, None],
        [1, "click", 0],
        {"seq": 1},
    ],
)
def test_malformed_event(bad):
    rejects(pack({"t": "ev", "e": 0, "ev": [bad]}), "bad_shape", Close.BAD_FRAME)


@pytest.mark.parametrize(
    "m",
    [
        {"t": "ev", "e": 0, "ev": []},
        {"t": "ev", "e": 0, "ev": None},
        {"t": "ev", "ev": [[1, "click", 0, None]]},
        {"t": "ev", "e": -1, "ev": [[1, "click", 0, None]]},
        {"t": "ev", "e": 0, "ev": [[1, "click", 0, None]], "src": 5},
        {"t": "ack"},
        {"t": "ack", "seq": -1},
        {"t": "ack", "seq": "1"},
        {"t": "ctl", "op": "dance"},
        {"t": "ctl", "op": "reconnect", "hint": "wss://x"},
        {"t": "ctl", "op": "error", "code": "c" * 65},
        {"t": "bye", "reason": 3},
        {"t": "welcome", "gw": "g", "epoch": 0, "rt": "r"},
    ],
)
def test_malformed_frames(m):
    rejects(pack(m), "bad_shape", Close.BAD_FRAME)


def hello(**kw) -> dict:
    return {"t": "hello", "v": 1, "role": "visitor", "sid": "session-01", "token": "tok"} | kw


@pytest.mark.parametrize(
    "sid", ["short", "has space in it", "x" * 65, "dots.are.bad", None, 12345678]
)
def test_bad_sid(sid):
    rejects(pack(hello(sid=sid)), "bad_shape", Close.BAD_FRAME)


@pytest.mark.parametrize("v", [0, 2, None, "1", [1]])
def test_unsupported_version(v):
    rejects(pack(hello(v=v)), "unsupported_version", Close.UNSUPPORTED_VERSION)


@pytest.mark.parametrize(
    ("role", "resume"),
    [
        ("visitor", "rt"),
        ("visitor", [1, 2]),
        ("visitor", {"epoch": 0}),  # no rt
        ("visitor", {"rt": "r"}),  # no epoch
        ("visitor", {"rt": "r", "epoch": -1}),
        ("visitor", {"rt": "r", "epoch": 0, "recv": [0, 1]}),
        ("visitor", {"rt": "r", "epoch": 0, "recv": {"notanaid": 1}}),
        ("visitor", {"rt": "r", "epoch": 0, "recv": {"aAgent1": -1}}),
        ("agent", {"rt": "r", "epoch": 0, "recv": {"aAgent1": 1}}),
        ("agent", {"rt": "r", "epoch": 0, "recv": [1]}),
        ("agent", {"rt": "r", "epoch": 0, "recv": [1, -2]}),
        ("agent", {"rt": "r", "epoch": 0, "recv": [1, True]}),
    ],
)
def test_malformed_resume(role, resume):
    rejects(pack(hello(role=role, resume=resume)), "bad_shape", Close.BAD_FRAME)


def test_bad_role_and_token():
    rejects(pack(hello(role="admin")), "bad_shape", Close.BAD_FRAME)
    rejects(pack(hello(token=None)), "bad_shape", Close.BAD_FRAME)
    rejects(pack(hello(token="t" * 2049)), "bad_shape", Close.BAD_FRAME)


def test_non_string_map_keys_are_rejected():
    rejects(pack({"t": "ack", "seq": 1, 5: 1}), "bad_frame", Close.BAD_FRAME)


# --- regressions: bugs found in review of codec.py --------------------------------------


@pytest.mark.parametrize("op", [[1], {"a": 1}])
def test_unhashable_control_op_is_rejected(op):
    rejects(pack({"t": "ctl", "op": op}), "bad_shape", Close.BAD_FRAME)


def test_sid_with_trailing_newline_is_rejected():
    rejects(pack(hello(sid="session-01\n")), "bad_shape", Close.BAD_FRAME)


def test_error_frame_for_a_huge_unknown_type_is_decodable():
    with pytest.raises(ProtocolError) as ei:
        decode_frame(pack({"t": "x" * 5000}))
    assert decode_frame(error_frame(ei.value)).op == "error"


@given(
    st.one_of(
        payloads.filter(lambda p: not isinstance(p, dict)),
        st.fixed_dictionaries(
            {"i": st.integers(-(2**63), 2**63 - 1), "n": st.integers(-(2**63), 2**63 - 1)}
        ).filter(lambda p: not 0 <= p["i"] < p["n"]),
        st.fixed_dictionaries({"i": st.text(max_size=3), "n": st.integers(1, 5)}),
    )
)
def test_a_snapshot_part_must_say_which_of_how_many(payload):
    frame = pack({"t": "ev", "e": 1, "ev": [[1, "snapshot", 0, payload]]})
    rejects(frame, "bad_shape", Close.BAD_FRAME)


def test_close_codes_have_names_for_logs():
    """Logs say `code=1001 reason_name=GOING_AWAY`, not an enum's repr (issue 16)."""
    assert close_name(Close.GOING_AWAY) == "GOING_AWAY"
    assert close_name(Close.SESSION_FULL) == "SESSION_FULL"
    assert close_name(1006) == "ABNORMAL_CLOSURE"  # no close frame at all
    assert close_name(3999) == "UNKNOWN"
