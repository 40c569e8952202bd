"""The load generator's own logic: WebSocket frames built and parsed by hand, the handshake,
the light decoder of gateway frames, the inlined latency recorder, and the reactor's timers.
(The generator end to end: tests/test_loadtest.py's real drain run, which uses it.)"""

from __future__ import annotations

import struct

import msgpack
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from websockets.speedups import apply_mask

from gateway.codec import Ack, Control, Event, Events, ProtocolError, decode_frame, encode_frame
from loadtest import wsframes as wsf
from loadtest.fastclient import Reactor, decode_from_gateway
from loadtest.verifier import new_histogram, record_latency


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
