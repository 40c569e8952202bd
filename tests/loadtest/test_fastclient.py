"""The load generator's own logic: WebSocket frames built and parsed by hand, the handshake,
the light decoder of gateway frames, the inlined latency recorder, and the reactor's timers.
(The generator end to end: tests/loadtest/test_loadtest.py's real drain run, which uses it.)"""

from __future__ import annotations

import math
import random
import struct

import msgpack
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from websockets.speedups import apply_mask

from gateway.codec import (
    MAX_FRAME_BYTES,
    Ack,
    Control,
    Event,
    Events,
    ProtocolError,
    decode_frame,
    encode_frame,
)
from loadtest import wsframes as wsf
from loadtest.fastclient import (
    Reactor,
    Schedule,
    TimerWheel,
    decode_from_gateway,
    events_frames,
    read_from_gateway,
    wire_event,
)
from loadtest.verifier import new_histogram, record_latency
from loadtest.workload import (
    AGENT_GESTURES,
    TEMPLATE_KINDS,
    VISITOR_GESTURES,
    EventMix,
    Packed,
    mean_events_per_gesture,
    payload,
    payload_bytes,
)


def server_frame(payload: bytes, op: int = wsf.OP_BINARY, fin: bool = True) -> bytes:
    n = len(payload)
    b0 = (0x80 if fin else 0) | op
    if n < 126:
        return bytes((b0, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", b0, 126, n) + payload
    return struct.pack("!BBQ", b0, 127, n) + payload


def unmask_client_frame(data: bytes) -> tuple[int, bytes]:
    b0, b1 = data[0], data[1]
    assert b0 & 0x80 and b1 & 0x80, "final and masked"
    n, h = b1 & 0x7F, 2
    if n == 126:
        (n,) = struct.unpack_from("!H", data, 2)
        h = 4
    elif n == 127:
        (n,) = struct.unpack_from("!Q", data, 2)
        h = 10
    mask = data[h : h + 4]
    assert len(data) == h + 4 + n
    return b0 & 0x0F, apply_mask(data[h + 4 :], mask)


@pytest.mark.parametrize("n", [0, 1, 125, 126, 65535, 65536, 200_000])
def test_client_frames_are_masked_and_carry_their_payload(n):
    payload = bytes(range(256)) * (n // 256) + bytes(n % 256)
    op, got = unmask_client_frame(wsf.frame(payload))
    assert (op, got) == (wsf.OP_BINARY, payload)
    op, got = unmask_client_frame(wsf.close_frame(1000, "bye"))
    assert op == wsf.OP_CLOSE and wsf.parse_close(got) == (1000, "bye")


@given(
    st.lists(st.binary(max_size=70_000), min_size=1, max_size=6),
    st.lists(st.integers(1, 5000), max_size=30),
    st.booleans(),
)
def test_the_parser_returns_whole_messages_however_the_bytes_are_cut(messages, cuts, fragment):
    stream = b""
    for m in messages:
        if fragment and len(m) > 1:  # a message in two frames, a ping between them
            half = len(m) // 2
            stream += server_frame(m[:half], fin=False) + server_frame(b"hi", wsf.OP_PING)
            stream += server_frame(m[half:], wsf.OP_CONT)
        else:
            stream += server_frame(m)
    parser = wsf.FrameParser()
    got = []
    pos = 0
    for c in cuts:
        got += parser.feed(stream[pos : pos + c])
        pos += c
    got += parser.feed(stream[pos:])
    assert [p for op, p in got if op == wsf.OP_BINARY] == messages
    assert all(p == b"hi" for op, p in got if op == wsf.OP_PING)


def test_the_parser_refuses_a_continuation_out_of_nowhere_and_huge_frames():
    with pytest.raises(wsf.WsError):
        wsf.FrameParser().feed(server_frame(b"x", wsf.OP_CONT))
    with pytest.raises(wsf.WsError):
        wsf.FrameParser().feed(struct.pack("!BBQ", 0x82, 127, wsf.MAX_MESSAGE_BYTES + 1))


def test_handshake_request_and_responses():
    t = wsf.target("ws://127.0.0.1:8080/?sid=s1&rt=x")
    assert (t.host, t.port, t.resource) == ("127.0.0.1", 8080, "/?sid=s1&rt=x")
    with pytest.raises(wsf.WsError):
        wsf.target("wss://example.com/")
    req, accept = wsf.handshake_request(t)
    assert req.startswith(b"GET /?sid=s1&rt=x HTTP/1.1\r\n") and req.endswith(b"\r\n\r\n")
    ok = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n\x82\x01x"
    )
    buf = bytearray(ok[:30])
    assert wsf.parse_response(buf) is None  # not all there yet
    buf = bytearray(ok)
    resp, n = wsf.parse_response(buf)
    assert resp.status == 101 and ok[n:] == b"\x82\x01x"
    wsf.check_accept(resp, accept)
    with pytest.raises(wsf.WsError):
        wsf.check_accept(resp, b"other")
    refused = bytearray(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\n\r\n{}")
    resp, _ = wsf.parse_response(refused)
    assert resp.status == 429 and resp.headers["retry-after"] == "3"
    with pytest.raises(wsf.WsError):
        wsf.parse_response(bytearray(b"SSH-2.0\r\n\r\n"))


@given(
    st.lists(
        st.tuples(
            st.integers(1, 2**53),
            st.sampled_from(["pointer", "mutation", "highlight"]),
            st.integers(0, 2**40),
            st.one_of(
                st.none(),
                st.integers(-(2**31), 2**31),
                st.text(max_size=20),
                st.binary(max_size=20),
            ),
        ),
        min_size=1,
        max_size=20,
    ),
    st.integers(0, 2**53),
    st.one_of(st.none(), st.just("aaaaa1")),
)
def test_the_light_decoder_agrees_with_the_codec(events, epoch, src):
    data = encode_frame(Events(epoch=epoch, events=[Event(*e) for e in events], src=src))
    fast, full = decode_from_gateway(data), decode_frame(data)
    assert (fast.epoch, fast.events, fast.src) == (full.epoch, full.events, full.src)
    assert decode_from_gateway(encode_frame(Ack(epoch))) == Ack(epoch)
    ctl = encode_frame(Control(op="reconnect", delay_ms=5, hint=["ws://x/"]))
    assert decode_from_gateway(ctl) == decode_frame(ctl)


def test_the_light_decoder_hands_bad_frames_to_the_codec():
    for bad in (b"\xc1", msgpack.packb({"t": "ev", "e": 1, "ev": [[1, "x"]]}), b"\x01"):
        with pytest.raises(ProtocolError):
            decode_from_gateway(bad)


@given(st.lists(st.floats(0, 4000, allow_nan=False), max_size=50))
def test_the_inlined_latency_recorder_matches_hdrh(values):
    fast, ref = new_histogram(), new_histogram()
    for s in values:
        record_latency(fast, s)
        ref.record_value(min(3_600_000_000, max(1, int(s * 1_000_000))))
    assert list(fast.counts) == list(ref.counts) and fast.get_total_count() == ref.get_total_count()
    assert (fast.min_value, fast.max_value) == (ref.min_value, ref.max_value)


async def test_the_reactor_fires_due_timers_in_order_one_turn_for_all_due():
    reactor = Reactor(gap=0.001)
    fired: list[tuple[int, int]] = []
    now = trio.current_time()
    for i in (3, 1, 2):
        reactor.call_at(now - 1 + i * 0.001, lambda i=i: fired.append((i, reactor.turns)))
    reactor.call_at(now + 0.05, lambda: fired.append((9, reactor.turns)))
    async with trio.open_nursery() as n:
        n.start_soon(reactor.run)
        with trio.fail_after(5):
            while len(fired) < 4:
                await trio.sleep(0.01)
        n.cancel_scope.cancel()
    assert [i for i, _ in fired] == [1, 2, 3, 9]
    assert len({turn for i, turn in fired if i < 9}) == 1  # all three due in one turn


# ---- the reactor's timers and the sessions' schedule ----------------------------------------


@given(
    st.lists(st.floats(0, 1, allow_nan=False), max_size=40),
    st.lists(st.floats(0, 1.2, allow_nan=False), min_size=1, max_size=12),
    st.lists(st.floats(-0.02, 0.05, allow_nan=False), max_size=40),
)
def test_the_timer_wheel_fires_every_timer_once_never_early_at_most_a_ms_late(whens, nows, chained):
    wheel = TimerWheel()
    fired: list[tuple[float, float]] = []  # (when, fired at)
    timers: list[float] = []
    now = [0.0]
    later = iter(chained)

    def add(when: float) -> None:
        timers.append(when)

        def fire() -> None:
            fired.append((when, now[0]))
            step = next(later, None)  # some timers add another, maybe one already due
            if step is not None:
                add(now[0] + step)

        wheel.add(when, fire)

    for w in whens:
        add(w)
    for t in sorted(nows):
        now[0] = t
        wheel.fire_due(t)
        # never early; nothing due by its ms is left behind
        assert all(when <= at for when, at in fired)
        done = {id(x) for x in fired}
        assert len(done) == len(fired)
        pending = sorted(timers)
        for when, _ in fired:
            pending.remove(when)
        assert all(math.ceil(w * 1000) > math.floor(t * 1000) for w in pending)
        nxt = wheel.next_at(10.0)
        assert (nxt is None) == (not pending)


def test_the_schedule_fires_every_planned_event_in_order_and_retries_refused_ones():
    s = Schedule(window=0.05, retry=0.01)
    got: dict[str, list[tuple[float, str, int]]] = {"a": [], "b": []}
    refuse = {"b": 3}  # b's first event is refused three times
    now = [0.0]

    def sender(name: str):
        def fire(kind: str, size: int) -> bool:
            if refuse.get(name):
                refuse[name] -= 1
                return False
            got[name].append((now[0], kind, size))
            return True

        return fire

    plan_a = [(i * 0.013, "pointer", i) for i in range(30)]
    plan_b = [(i * 0.021, "mutation", i) for i in range(20)]
    s.add(0.0, iter(plan_a), sender("a"))
    t = 0.0
    while t < 0.6:
        now[0] = t
        s.fire_due(t)
        if abs(t - 0.1) < 1e-9:
            s.add(0.1, iter(plan_b), sender("b"))  # a sender added mid-window
            s.fire_due(t)
        t = round(t + 0.004, 6)
    assert [z for _, _, z in got["a"]] == list(range(30))  # every event, in order
    assert [z for _, _, z in got["b"]] == list(range(20))
    for name, plan, start in (("a", plan_a, 0.0), ("b", plan_b, 0.1)):
        for (at, _, _), (planned, _, _) in zip(got[name], plan, strict=True):
            assert at >= start + planned  # never early
    assert got["b"][0][0] >= 0.1 + 0.03  # refused three times, retried every 10 ms
    assert s.next_at() is None


async def test_an_idle_reactor_lets_trio_tasks_run_on_time():
    reactor = Reactor(gap=0.002, idle_max=0.005)
    async with trio.open_nursery() as n:
        n.start_soon(reactor.run)
        t = trio.current_time()
        for _ in range(10):
            await trio.sleep(0.01)
        elapsed = trio.current_time() - t
        n.cancel_scope.cancel()
    assert elapsed < 0.1 + 10 * 0.006  # each sleep at most idle_max late


# ---- what the generator sends -------------------------------------------------------------


@given(
    st.integers(0, 2**40),
    st.lists(
        st.tuples(
            st.sampled_from(["pointer", "mutation"]),
            st.integers(0, 2**41),
            st.one_of(st.none(), st.text(max_size=20), st.binary(max_size=300)),
        ),
        min_size=1,
        max_size=20,
    ),
)
def test_frames_built_from_kept_encodings_are_the_codecs(epoch, items):
    evs = [wire_event(i + 1, k, ts, p) for i, (k, ts, p) in enumerate(items)]
    assert events_frames(epoch, evs) == [
        encode_frame(Events(epoch=epoch, events=[Event(*e) for e in evs]))
    ]
    plain = [Event(*e) for e in evs]  # events without a kept encoding are encoded here
    assert events_frames(epoch, plain) == events_frames(epoch, evs)


def test_many_events_are_split_like_frames_to_send():
    evs = [wire_event(i + 1, "pointer", 0, "x" * 10) for i in range(1200)]
    frames = events_frames(3, evs)
    assert [len(decode_frame(f).events) for f in frames] == [512, 512, 176]
    big = [wire_event(i + 1, "canvas", 0, b"x" * 100_000) for i in range(30)]
    assert all(len(f) <= MAX_FRAME_BYTES for f in events_frames(3, big))


@pytest.mark.parametrize("seq", [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32, 2**53])
def test_acks_are_read_off_their_bytes(seq):
    data = encode_frame(Ack(seq))
    assert read_from_gateway(data) == seq
    assert decode_from_gateway(data) == Ack(seq)
    for bad in (data[:-1], data + b"\x00"):  # cut or padded: the codec decides
        with pytest.raises(ProtocolError):
            decode_from_gateway(bad)


@given(
    st.sampled_from(["pointer", "scroll", "input", "highlight", "mutation", "canvas"]),
    st.integers(0, 60_000),
    st.integers(0, 2**40),
    st.floats(0, 4e9, allow_nan=False),
)
def test_payload_bytes_are_the_payloads_msgpack(kind, size, n, sent_at):
    lo, hi = {"pointer": (24, 40), "scroll": (24, 40), "input": (40, 200)}.get(kind, (30, 200))
    if kind in TEMPLATE_KINDS:
        size = lo + size % (hi - lo + 1)
    expected = msgpack.packb(payload(kind, size, n, sent_at), use_bin_type=True)
    assert payload_bytes(kind, size, n, sent_at) == expected
    pushed = wire_event(1, kind, 5, Packed(expected))
    assert pushed.wire == msgpack.packb([1, kind, 5, payload(kind, size, n, sent_at)])
    with pytest.raises(TypeError):  # nothing packs a Packed by mistake
        msgpack.packb(Packed(expected))


def _plan_with_randoms_methods(mix: EventMix, gestures, rate: float, duration: float):
    """The plan as it was first written, with random's own methods: the reference."""
    import heapq
    import math

    if rate <= 0 or duration <= 0:
        return
    rng = mix.rng
    kinds = list(gestures)
    weights = [gestures[k].weight for k in kinds]
    gesture_rate = rate / mean_events_per_gesture(gestures)
    pending: list = []
    tie = 0
    next_gesture = rng.expovariate(gesture_rate)
    while True:
        while next_gesture < duration and (not pending or next_gesture <= pending[0][0]):
            kind = rng.choices(kinds, weights)[0]
            g = gestures[kind]
            for i in range(rng.randint(*g.count)):
                at = next_gesture + i * g.spacing
                if at < duration:
                    lo, hi = g.size
                    if g.log_size:
                        size = int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))
                    else:
                        size = rng.randint(lo, hi)
                    heapq.heappush(pending, (at, tie, kind, size))
                    tie += 1
            next_gesture += rng.expovariate(gesture_rate)
        if not pending:
            return
        at, _, kind, size = heapq.heappop(pending)
        yield at, kind, size


@pytest.mark.parametrize("seed", [1, 7, "42:3"])
@pytest.mark.parametrize("rate", [0.5, 5.0, 20.0])
def test_plans_drawn_by_hand_are_those_of_randoms_methods(seed, rate):
    fast = list(EventMix(rate, random.Random(seed)).visitor_tuples(300))
    ref = list(
        _plan_with_randoms_methods(EventMix(rate, random.Random(seed)), VISITOR_GESTURES, rate, 300)
    )
    assert fast == ref and fast
    agents = list(EventMix(rate, random.Random(seed)).agent_tuples(300))
    ref = list(
        _plan_with_randoms_methods(
            EventMix(rate, random.Random(seed)), AGENT_GESTURES, rate * 0.1, 300
        )
    )
    assert agents == ref
