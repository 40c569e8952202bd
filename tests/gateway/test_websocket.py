"""The gateway's WebSocket shell (gateway/websocket.py) against a real client protocol over a
socket pair: upgrade, refusals, messages whole and fragmented, limits and closes."""

from __future__ import annotations

import itertools
import secrets
import socket
from unittest import mock

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.frames import OP_BINARY, OP_CONT, OP_TEXT, Frame
from websockets.http11 import Response
from websockets.uri import parse_uri

from gateway.websocket import Closed, Message, WebSocket

MAX = 1024


class Peer:
    """A client end: websockets' sans-I/O client protocol over a blocking socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.proto = ClientProtocol(parse_uri("ws://127.0.0.1/?sid=s1"), max_size=1 << 22)

    def flush(self) -> None:
        for chunk in self.proto.data_to_send():
            try:
                if chunk:
                    self.sock.sendall(chunk)
                else:
                    self.sock.shutdown(socket.SHUT_WR)
            except OSError:  # the server already closed: its close frame is what we check
                pass

    def raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    async def events(self, want: int = 1) -> list:
        got: list = []
        with trio.fail_after(5):
            while len(got) < want:
                await trio.lowlevel.wait_readable(self.sock)
                data = self.sock.recv(1 << 20)
                if not data:
                    self.proto.receive_eof()
                else:
                    self.proto.receive_data(data)
                got += self.proto.events_received()
                self.flush()
                if not data:
                    break
        return got


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


async def server_messages(ws: WebSocket, want: int) -> list:
    got: list = []
    with trio.fail_after(5):
        while len(got) < want and ws.closed is None:
            await trio.lowlevel.wait_readable(ws.sock)
            got += ws.receive() or []
    return got


async def upgraded(pair) -> tuple[WebSocket, Peer]:
    a, b = pair
    ws = WebSocket(a, MAX, lambda: None)
    peer = Peer(b)
    peer.proto.send_request(peer.proto.connect())
    peer.flush()
    with trio.fail_after(5):
        request = await ws.read_request()
    assert request.path == "/?sid=s1"
    assert ws.accept(request) and ws.open
    [response] = await peer.events()
    assert isinstance(response, Response) and response.status_code == 101
    return ws, peer


async def test_messages_both_ways_whole_and_fragmented(pair):
    ws, peer = await upgraded(pair)
    peer.proto.send_binary(b"one")
    peer.proto.send_text(b"two")
    peer.proto.send_frame(Frame(OP_BINARY, b"th", fin=False))
    peer.proto.send_frame(Frame(OP_CONT, b"re", fin=False))
    peer.proto.send_frame(Frame(OP_CONT, b"e", fin=True))
    peer.proto.send_ping(b"hi")  # answered by the protocol layer, not the application
    peer.flush()
    assert await server_messages(ws, 3) == [Message(b"one"), Message("two"), Message(b"three")]
    ws.send(b"back")
    frames = await peer.events(2)
    assert [(f.opcode.name, f.data) for f in frames] == [("PONG", b"hi"), ("BINARY", b"back")]


async def test_a_message_over_the_limit_fails_the_connection_with_1009(pair):
    ws, peer = await upgraded(pair)
    peer.proto.send_frame(Frame(OP_BINARY, b"x" * 600, fin=False))
    peer.proto.send_frame(Frame(OP_CONT, b"x" * 600, fin=True))  # whole message over MAX
    peer.flush()
    assert await server_messages(ws, 1) == []
    assert ws.closed == Closed(1009, ws.closed.reason, False) and not ws.open
    await ws.finish()
    close = [f for f in await peer.events() if isinstance(f, Frame)]
    assert close and peer.proto.close_rcvd.code == 1009


async def test_the_peers_close_is_echoed_and_reported(pair):
    ws, peer = await upgraded(pair)
    peer.proto.send_close(4321, "done here")
    peer.flush()
    assert await server_messages(ws, 1) == []
    assert ws.closed == Closed(4321, "done here", True)
    async with trio.open_nursery() as n:
        n.start_soon(ws.finish)
        await peer.events()
    assert peer.proto.close_rcvd.code == 4321  # echoed


async def test_a_dropped_connection_is_1006(pair):
    ws, peer = await upgraded(pair)
    peer.sock.shutdown(socket.SHUT_WR)
    assert await server_messages(ws, 1) == []
    assert ws.closed.code == 1006 and ws.closed.by_peer


async def test_our_close_waits_for_the_peers(pair):
    ws, peer = await upgraded(pair)
    ws.send(b"last words")
    ws.close(4005, "replaced")
    async with trio.open_nursery() as n:
        n.start_soon(ws.finish)
        frames = await peer.events(2)
    assert frames[0].data == b"last words"
    assert (peer.proto.close_rcvd.code, peer.proto.close_rcvd.reason) == (4005, "replaced")
    assert ws.sock.fileno() == -1  # closed once the peer answered


async def test_a_refused_upgrade_gets_its_status_headers_and_body(pair):
    a, b = pair
    ws = WebSocket(a, MAX, lambda: None)
    peer = Peer(b)
    peer.proto.send_request(peer.proto.connect())
    peer.flush()
    with trio.fail_after(5):
        assert (await ws.read_request()).path == "/?sid=s1"
    ws.reject(429, [("Retry-After", "3"), ("Content-Type", "application/json")], b'{"e":1}')
    async with trio.open_nursery() as n:
        n.start_soon(ws.finish)
        [response] = await peer.events()
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3" and response.body == b'{"e":1}'


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # no upgrade
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    ],
)
async def test_a_request_that_is_no_websocket_upgrade_is_answered_and_not_accepted(
    pair, request_bytes
):
    a, b = pair
    ws = WebSocket(a, MAX, lambda: None)
    b.sendall(request_bytes)
    with trio.fail_after(5):
        request = await ws.read_request()
    if request is not None:
        assert not ws.accept(request) and not ws.open
    await ws.out.wait_flushed()
    assert b.recv(4096).startswith(b"HTTP/1.1 4")


async def test_garbage_instead_of_http_is_a_400(pair):
    a, b = pair
    ws = WebSocket(a, MAX, lambda: None)
    b.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
    with trio.fail_after(5):
        assert await ws.read_request() is None
    await ws.out.wait_flushed()
    assert b.recv(4096).startswith(b"HTTP/1.1 400")


async def test_a_text_message_arrives_as_text_even_when_it_is_not_utf8(pair):
    ws, peer = await upgraded(pair)
    peer.proto.send_frame(Frame(OP_TEXT, b"\xff\xfe", fin=True))
    peer.flush()
    [m] = await server_messages(ws, 1)
    assert isinstance(m.data, str)  # the gateway refuses text frames (1003) whatever they hold


# Messages of all kinds, sent by a real client protocol and cut into arbitrary reads: the
# fast path for plain binary frames and the protocol object for the rest give the same
# messages, in order.
kinds = st.lists(
    st.tuples(
        st.sampled_from(["binary", "text", "fragmented", "ping"]),
        st.binary(max_size=300),
    ),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kinds,
    st.lists(st.integers(1, 200), min_size=1, max_size=40),
    st.lists(st.binary(min_size=4, max_size=4), min_size=1, max_size=4),
)
async def test_any_mix_of_frames_cut_anywhere_arrives_whole_and_in_order(msgs, cuts, keys):
    """The client's masking keys are drawn too (websockets takes them from `secrets`), so a
    failure replays and shrinks: CI's one failure here (fixed in 7247761) came back as
    "failed, then passed on replay" because the keys were not part of the example. Random
    cuts seldom end a read right after a header whose key looks like a frame;
    test_a_frame_cut_after_its_header... pins that case."""
    keys_iter = itertools.cycle(keys)
    real = secrets.token_bytes  # the same module object: the handshake's key stays random

    def token_bytes(n: int) -> bytes:
        return next(keys_iter) if n == 4 else real(n)

    with mock.patch("websockets.frames.secrets.token_bytes", token_bytes):
        await _mix_cut_anywhere(msgs, cuts)


async def _mix_cut_anywhere(msgs, cuts) -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    try:
        ws, peer = await upgraded((a, b))
        want = []
        for kind, data in msgs:
            if kind == "binary":
                peer.proto.send_binary(data)
                want.append(Message(data))
            elif kind == "text":
                text = data.decode("latin-1")
                peer.proto.send_text(text.encode())
                want.append(Message(text.encode().decode()))
            elif kind == "fragmented":
                half = len(data) // 2
                peer.proto.send_frame(Frame(OP_BINARY, data[:half], fin=False))
                peer.proto.send_frame(Frame(OP_CONT, data[half:], fin=True))
                want.append(Message(data))
            else:
                peer.proto.send_ping(data[:100])
        wire = b"".join(peer.proto.data_to_send())
        got = []
        pos = 0
        for cut in cuts + [len(wire)]:
            chunk = wire[pos : pos + cut]
            pos += len(chunk)
            if chunk:
                peer.sock.sendall(chunk)
                with trio.fail_after(5):
                    await trio.lowlevel.wait_readable(ws.sock)
                got += ws.receive() or []
            if pos >= len(wire):
                break
        assert got == want and ws.closed is None
    finally:
        a.close()
        b.close()


def test_plain_binary_frames_take_the_fast_path_and_stop_at_anything_else():
    from gateway.websocket import binary_frames

    client = ClientProtocol(parse_uri("ws://x/"))
    client.state = client.state.__class__.OPEN
    for data in (b"", b"a" * 125, b"b" * 126, b"c" * 65_535):
        client.send_binary(data)
    client.send_ping(b"p")
    client.send_binary(b"after the ping")
    wire = b"".join(client.data_to_send())
    got, used = binary_frames(wire, 1 << 20)
    assert [len(m.data) for m in got] == [0, 125, 126, 65_535]
    assert wire[used] & 0x0F == 0x9  # stopped at the ping: the protocol object takes it
    client.send_binary(b"d" * 65_536)  # a 64-bit length: the protocol object too
    assert binary_frames(b"".join(client.data_to_send()), 1 << 20) == ([], 0)
    got, used = binary_frames(wire[: used - 1], 1 << 20)  # the last frame is not complete
    assert len(got) == 3
    assert binary_frames(wire, 100)[0] == got[:1]  # over the limit: left for the 1009


async def test_a_frame_cut_after_its_header_is_not_read_again_from_its_masking_key(pair):
    """Read 1 brings only a frame's 2-byte header, read 2 the rest, whose masking key starts
    with 0x82 (a binary frame's first byte) and 0x85 (a masked length of 5). The protocol
    object used to take the header and wait with an empty buffer; the fast path then read
    the key and payload as a frame of its own and delivered 5 bytes of garbage. Random keys
    made it 1 in 256: test_any_mix_of_frames_cut_anywhere... failed once in CI that way."""
    ws, peer = await upgraded(pair)
    payload = b"0123456789"
    key = bytes((0x82, 0x85, 0x01, 0x02))
    masked = bytes(c ^ key[i % 4] for i, c in enumerate(payload))
    frame = bytes((0x82, 0x80 | len(payload))) + key + masked
    got = []
    for chunk in (frame[:2], frame[2:]):
        peer.sock.sendall(chunk)
        with trio.fail_after(5):
            await trio.lowlevel.wait_readable(ws.sock)
        got += ws.receive() or []
    assert got == [Message(payload)] and ws.closed is None
    # and a frame cut inside its payload, then one whole behind it, in a single read
    peer.sock.sendall(frame[:7])
    await trio.lowlevel.wait_readable(ws.sock)
    assert ws.receive() == []
    peer.sock.sendall(frame[7:] + frame)
    await trio.lowlevel.wait_readable(ws.sock)
    assert ws.receive() == [Message(payload), Message(payload)] and ws.closed is None
