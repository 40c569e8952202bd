"""The WebSocket layer of the load generator, sans-I/O: the opening handshake and frames.

Client-to-server frames must be masked (RFC 6455 5.3): the header is built here and the
payload masked with `websockets`' C `apply_mask` under a random key. Server-to-client frames
are unmasked and need only a length-prefix parser. Measured on this machine for a one-event
`ev` frame: building it here costs 1.2 us (0.6 with an all-zero key, which we do not use),
`websockets.ClientProtocol.send_binary` + `data_to_send` 4.4-4.7 us; parsing a server frame
here 0.15 us against 6.4 us through `websockets`' protocol (pyproject.toml's measurement).
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import struct
from dataclasses import dataclass
from urllib.parse import urlsplit

from websockets.speedups import apply_mask

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEADER_BYTES = 16 * 1024
MAX_MESSAGE_BYTES = 4 * 2**20  # as the reference client

_rng = random.Random()
_MASKS = 1024  # masking keys drawn at once


def _masks():
    """Masking keys, each random (RFC 6455 5.3), drawn a thousand at a time."""
    while True:
        pool = _rng.randbytes(4 * _MASKS)
        for i in range(0, 4 * _MASKS, 4):
            yield pool[i : i + 4]


_mask = _masks().__next__


class WsError(Exception):
    """The peer broke WebSocket framing or the handshake."""


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    resource: str  # path and query


def target(url: str) -> Target:
    parts = urlsplit(url)
    if parts.scheme != "ws":
        raise WsError(f"the fast client speaks ws:// only, not {parts.scheme}://")
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.hostname or "127.0.0.1", parts.port or 80, resource)


def handshake_request(t: Target) -> tuple[bytes, bytes]:
    """The upgrade request and the Sec-WebSocket-Accept value the response must carry."""
    key = base64.b64encode(os.urandom(16))
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    req = (
        f"GET {t.resource} HTTP/1.1\r\nHost: {t.host}:{t.port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    return req, accept


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names


def parse_response(buf: bytearray) -> tuple[Response, int] | None:
    """The handshake response at the start of `buf` and its length, or None until it is all
    there. Raises WsError when it is not HTTP or too long."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > MAX_HEADER_BYTES:
            raise WsError("handshake response too long")
        return None
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    status_line = lines[0].split(" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith("HTTP/"):
        raise WsError(f"not an HTTP response: {lines[0][:80]!r}")
    try:
        status = int(status_line[1])
    except ValueError:
        raise WsError(f"bad status line {lines[0][:80]!r}") from None
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Response(status, headers), end + 4


def check_accept(resp: Response, accept: bytes) -> None:
    if resp.headers.get("sec-websocket-accept", "").encode() != accept:
        raise WsError("wrong Sec-WebSocket-Accept")
    if resp.headers.get("upgrade", "").lower() != "websocket":
        raise WsError("no Upgrade: websocket")


def frame(payload: bytes, opcode: int = OP_BINARY) -> bytes:
    """One final, masked client frame."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0xFE, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0xFF, n)
    mask = _mask()
    return head + mask + apply_mask(payload, mask)


def close_frame(code: int = 1000, reason: str = "") -> bytes:
    return frame(struct.pack("!H", code) + reason.encode()[:120], OP_CLOSE)


class FrameParser:
    """Server frames out of a byte stream: whole messages (continuations joined) and
    control frames, in order."""

    __slots__ = ("_buf", "_parts", "_op", "_size")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._parts: list[bytes] = []
        self._op = -1  # opcode of the message being continued
        self._size = 0

    def idle(self) -> bool:
        """Nothing buffered: the next bytes start a frame, and no message is half read."""
        return not self._buf and self._op < 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Feed bytes; returns (opcode, payload) of each complete message or control frame."""
        buf = self._buf
        if not buf and len(data) > 2 and self._op < 0 and data[0] & 0x8F > 0x80:
            # The usual read: exactly one whole, final, unmasked frame (not a continuation).
            n = data[1]
            if n < 126 and len(data) == n + 2:
                return [(data[0] & 0x0F, data[2:])]
            if n == 126 and len(data) > 4 and len(data) == ((data[2] << 8) | data[3]) + 4:
                return [(data[0] & 0x0F, data[4:])]
        buf += data
        out = []
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            n = b1 & 0x7F
            h = pos + 2
            if n == 126:
                if end - h < 2:
                    break
                (n,) = struct.unpack_from("!H", buf, h)
                h += 2
            elif n == 127:
                if end - h < 8:
                    break
                (n,) = struct.unpack_from("!Q", buf, h)
                h += 8
            if n > MAX_MESSAGE_BYTES:
                raise WsError(f"frame of {n} bytes")
            mask = None
            if b1 & 0x80:  # servers must not mask; accept it anyway
                if end - h < 4:
                    break
                mask = bytes(buf[h : h + 4])
                h += 4
            if end - h < n:
                break
            payload = bytes(buf[h : h + n])
            if mask is not None:
                payload = apply_mask(payload, mask)
            pos = h + n
            op, fin = b0 & 0x0F, b0 & 0x80
            if op >= 8:  # control frames are never fragmented
                out.append((op, payload))
            elif op == OP_CONT:
                if self._op < 0:
                    raise WsError("continuation without a message")
                self._parts.append(payload)
                self._size += n
                if self._size > MAX_MESSAGE_BYTES:
                    raise WsError("message too big")
                if fin:
                    out.append((self._op, b"".join(self._parts)))
                    self._parts, self._op, self._size = [], -1, 0
            elif fin:
                out.append((op, payload))
            else:
                self._op, self._parts, self._size = op, [payload], n
        if pos:
            del buf[:pos]
        return out


def parse_close(payload: bytes) -> tuple[int | None, str]:
    if len(payload) < 2:
        return (1005 if not payload else None), ""
    (code,) = struct.unpack_from("!H", payload)
    return code, payload[2:].decode("utf-8", "replace")
