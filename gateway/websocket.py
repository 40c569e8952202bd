"""One server-side WebSocket on a raw non-blocking socket: websockets' sans-I/O protocol
under a thin trio shell.

The protocol object (`websockets.server.ServerProtocol`) parses the upgrade request and the
frames and builds what goes out; this shell moves bytes. Frames go out through an `Outbox`
(one `send()` per socket per run-loop turn) and come in through whatever task owns the
connection: it waits for the socket to be readable and calls `receive()`. One task per
connection and no channels: trio-websocket spent a reader task, a memory channel and about
87 us per received frame here; websockets' protocol takes 6.4 us to parse one and 1.8 us to
build one (see pyproject.toml).
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass

import trio
from websockets.datastructures import Headers
from websockets.frames import OP_BINARY, OP_CLOSE, OP_CONT, OP_TEXT
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol

try:
    from websockets.speedups import apply_mask
except ImportError:  # a platform without websockets' C extension
    from websockets.utils import apply_mask

from .outbox import Outbox, current_flusher

RECV_SIZE = 256 * 1024  # one recv() per wake takes what a burst of frames brings
CLOSE_TIMEOUT = 2.0  # how long a closing connection waits for the peer's close and EOF

BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 39\r\n\r\nFailed to open a WebSocket connection.\n"
)

_log = logging.getLogger("gateway.websocket")  # websockets' own per-connection messages


@dataclass(slots=True)
class Message:
    """One complete WebSocket message from the peer."""

    data: bytes | str  # str for a text message


@dataclass(frozen=True)
class Closed:
    """The peer closed (with its code, 1006 when the TCP connection just ended), or the
    protocol layer failed the connection (a frame over the size limit: 1009)."""

    code: int
    reason: str
    by_peer: bool


def binary_frames(data: bytes, max_size: int) -> tuple[list[Message], int]:
    """Complete, unfragmented, masked binary frames at the start of `data` (what clients
    send nearly always) and how many bytes they took; parsing stops at anything else,
    which goes to the protocol object whole. It took 6.4-38 us a frame through the
    protocol object's generator-based parser (the larger figure with 100 connections'
    state out of cache), a few here; unmasking is websockets' C `apply_mask`."""
    out: list[Message] = []
    i, n = 0, len(data)
    while n - i >= 6:
        if data[i] != 0x82:  # FIN, no RSV bits, binary
            break
        length = data[i + 1] ^ 0x80  # the mask bit must be set
        j = i + 2
        if length == 126:
            if n - j < 2:
                break
            length = int.from_bytes(data[j : j + 2], "big")
            j += 2
        elif length > 126:  # unmasked (>= 0x80 after the xor) or a 64-bit length
            break
        if length > max_size or n - j < 4 + length:
            break
        out.append(Message(apply_mask(data[j + 4 : j + 4 + length], data[j : j + 4])))
        i = j + 4 + length
    return out, i


def frame_bytes(data: bytes | bytearray, i: int, max_size: int) -> int | None:
    """The size of the frame starting at `data[i]` (header, mask and payload), from its
    header alone; None while the header itself is incomplete. A payload over `max_size`
    counts as what is there: the protocol object refuses it (1009) without waiting."""
    n = len(data) - i
    if n < 2:
        return None
    b1 = data[i + 1]
    length, head = b1 & 0x7F, 2
    if length == 126:
        if n < 4:
            return None
        length, head = int.from_bytes(data[i + 2 : i + 4], "big"), 4
    elif length == 127:
        if n < 10:
            return None
        length, head = int.from_bytes(data[i + 2 : i + 10], "big"), 10
    if b1 & 0x80:
        head += 4
    return n if length > max_size else head + length


class WebSocket:
    """A server connection: the upgrade, then messages both ways, then the close.

    The protocol object is handed whole frames only (the fast path takes most of them
    before it): a read that ends inside a frame keeps that frame's bytes here (`_rest`)
    until it is complete. Fed a partial frame, the protocol's parser takes the header and
    waits with an empty buffer, and the fast path would then read the rest of that frame,
    masking key first, as a new frame: when the key began with 0x82 it produced a message
    of garbage and the stream went out of step (a hypothesis test found it: 1 key in 256)."""

    __slots__ = (
        "sock", "proto", "out", "closed", "_parts", "_text", "_finished", "_fast", "_rest",
        "_need",
    )  # fmt: skip

    def __init__(self, sock: socket.socket, max_message: int, notify) -> None:
        self.sock = sock
        self.proto = ServerProtocol(max_size=max_message, logger=_log)
        self.out = Outbox(sock, current_flusher(), notify)
        self.closed: Closed | None = None
        self._parts: list[bytes] | None = None  # a fragmented message being assembled
        self._text = False
        self._finished = False
        # False when the client sent bytes after its upgrade request before our answer (no
        # browser does): the protocol object parsed them as it pleased, so it keeps them all.
        self._fast = True
        self._rest = bytearray()  # the start of a frame not complete yet
        self._need = 0  # how long `_rest` must be before it holds that frame (0: unknown)

    # ---- the upgrade ----------------------------------------------------------------------

    async def read_request(self) -> Request | None:
        """The client's upgrade request; None when it was not a valid one (a 400 is queued)
        or the client left. The caller bounds the time."""
        head: bytes | None = None
        while True:
            await trio.lowlevel.wait_readable(self.sock)
            data = self._recv()
            if data is None:
                continue
            if not data:
                return None
            head = data if head is None else head + data
            self.proto.receive_data(data)
            for ev in self.proto.events_received():
                if isinstance(ev, Request):
                    end = head.find(b"\r\n\r\n")
                    self._fast = end >= 0 and end + 4 == len(head)
                    return ev
            if self.proto.handshake_exc is not None:
                # Not HTTP at all: the protocol layer can only hang up, so say why first.
                self.out.write(BAD_REQUEST)
                self._pump()
                return None

    def accept(self, request: Request) -> bool:
        """Send the 101 (or the protocol's own refusal of a malformed upgrade)."""
        response = self.proto.accept(request)
        self.proto.send_response(response)
        self._pump()
        # The protocol's parser keeps the request for the connection's life (a local of its
        # generator); its headers are 1 KB a connection nobody reads again.
        request.headers.clear()
        return response.status_code == 101

    def reject(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        h = Headers([("Connection", "close"), ("Content-Length", str(len(body))), *headers])
        phrase = {429: "Too Many Requests", 503: "Service Unavailable"}.get(status, "Refused")
        self.proto.send_response(Response(status, phrase, h, body))
        self._pump()

    # ---- messages -------------------------------------------------------------------------

    @property
    def open(self) -> bool:
        return self.proto.state is State.OPEN

    def send(self, data: bytes) -> None:
        """Queue one binary message (sent at the end of this run-loop turn).

        A server's data frame is a header and the payload (RFC 6455 5.2: unmasked, FIN set,
        never fragmented here), written straight to the outbox: the protocol object's
        send_binary cost 2.5 us a frame more, on the path every delivered event takes. Its
        state stays right, since it only tracks fragmentation and the close handshake."""
        if self.proto.state is State.OPEN:
            n = len(data)
            if n < 126:
                head = bytes((0x82, n))
            elif n < 65536:
                head = b"\x82\x7e" + n.to_bytes(2, "big")
            else:
                head = b"\x82\x7f" + n.to_bytes(8, "big")
            self.out.write(head + data)

    def receive(self) -> list[Message] | None:
        """The messages that arrived (after the socket was readable); None when the read
        would have blocked. Sets `closed` when the peer closed or the connection failed."""
        data = self._recv()
        if data is None:
            return None
        out: list[Message] = []
        proto = self.proto
        eof = not data
        if self._fast and not eof and proto.state is State.OPEN:
            if self._rest:
                self._rest += data
                if len(self._rest) < self._need:
                    return out  # the frame is still incomplete: nothing to parse yet
                data, self._rest = bytes(self._rest), bytearray()
            if self._parts is None:
                out, used = binary_frames(data, proto.max_size)
                if used == len(data):
                    return out
                data = data[used:]  # control frames, fragments, a partial frame: below
            data = self._whole_frames(data, proto.max_size)
            if not data:
                return out
        if eof:
            if self._rest:  # a frame cut short by the end: the protocol says 1006
                proto.receive_data(bytes(self._rest))
                self._rest = bytearray()
            proto.receive_eof()
        else:
            proto.receive_data(data)
        for frame in self.proto.events_received():
            op = frame.opcode
            if op is OP_BINARY or op is OP_TEXT:
                if frame.fin:
                    data = frame.data
                    out.append(Message(data.decode(errors="replace") if op is OP_TEXT else data))
                else:
                    self._parts, self._text = [frame.data], op is OP_TEXT
            elif op is OP_CONT and self._parts is not None:
                self._parts.append(frame.data)
                if frame.fin:
                    whole = b"".join(self._parts)
                    self._parts = None
                    out.append(Message(whole.decode(errors="replace") if self._text else whole))
            elif op is OP_CLOSE:
                rcvd = self.proto.close_rcvd
                self.closed = Closed(rcvd.code if rcvd else 1005, rcvd.reason if rcvd else "", True)
        self._pump()
        if self.closed is None and self.proto.state is not State.OPEN:
            # The protocol failed the connection (oversized message: 1009, bad framing: 1002)
            # or the TCP connection ended without a close frame (1006).
            sent = self.proto.close_sent
            by_peer = not data
            self.closed = Closed(sent.code if sent else 1006, sent.reason if sent else "", by_peer)
        return out

    def _whole_frames(self, data: bytes, max_size: int) -> bytes:
        """The complete frames at the start of `data`; the rest waits in `_rest`."""
        i = 0
        while i < len(data):
            size = frame_bytes(data, i, max_size)
            if size is None or i + size > len(data):
                self._rest = bytearray(data[i:])
                self._need = size or 0
                return data[:i]
            i += size
        return data

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake; `finish()` completes it."""
        if self.proto.state is State.OPEN:
            self.proto.send_close(code, reason)
            self._pump()

    async def finish(self) -> None:
        """Send what is queued, half-close, wait (bounded) for the peer to close, then close
        the socket. Reading to the end matters: closing with unread data makes the kernel
        reset the connection, and the peer may lose the close frame we sent."""
        if self._finished:
            return
        self._finished = True
        with trio.move_on_after(CLOSE_TIMEOUT):
            await self.out.wait_flushed()
            if not self.out.closed:
                try:
                    self.sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                while True:
                    await trio.lowlevel.wait_readable(self.sock)
                    data = self._recv()
                    if data == b"":
                        break
        self.out.close()
        self.sock.close()

    # ---- bytes ----------------------------------------------------------------------------

    def _recv(self) -> bytes | None:
        """b"" at EOF (or a reset), None when nothing is there yet."""
        try:
            return self.sock.recv(RECV_SIZE)
        except BlockingIOError:
            return None
        except OSError:
            return b""

    def _pump(self) -> None:
        for chunk in self.proto.data_to_send():
            if chunk:  # an empty one asks for the half-close that `finish` always does
                self.out.write(chunk)
