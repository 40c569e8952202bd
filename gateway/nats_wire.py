"""The NATS client protocol, sans-I/O (in the style of h11 and wsproto).

`Parser.feed(bytes)` turns what a server sends into events (`Msg`, `Ping`, `Pong`, `Info`,
`Ok`, `Err`), whatever the read boundaries; the encoders (`pub`, `sub`, `unsub`, `connect`,
`PING`, `PONG`) turn a client's operations into bytes. No sockets, no clock: `nats_client`
is the trio shell around it.

The parser is on the gateway's hot path (every event a gateway relays crosses it once), so
one message costs a `find` for the CRLF, a `split` of its line and two slices; a payload
that spans reads is collected in a list of chunks and joined once (a 1 MiB payload in 256
KiB reads is not copied again on every read). Memory is bounded: a control line longer
than `max_line`, or a payload larger than the server's max_payload (plus headroom for the
headers the server adds itself), is a `ProtocolError` at once, before it is buffered.

Reference: https://docs.nats.io/reference/reference-protocols/nats-protocol
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

__all__ = [
    "PING",
    "PONG",
    "Err",
    "Info",
    "Msg",
    "Ok",
    "Parser",
    "Ping",
    "Pong",
    "PayloadTooLarge",
    "ProtocolError",
    "connect",
    "parse_headers",
    "pub",
    "sub",
    "unsub",
]

MAX_LINE = 64 * 1024  # a control line; INFO lists every cluster URL, so not the server's 4 KiB
DEFAULT_MAX_PAYLOAD = 1024 * 1024  # nats-server's default, until INFO says otherwise
# Stored messages come back from a direct get with headers the server adds (Nats-Stream,
# Nats-Sequence, Nats-Time-Stamp, Nats-Subject: about 150 bytes), so a reply to a request
# for a max_payload-sized message is larger than max_payload.
HEADROOM = 64 * 1024

PING = b"PING\r\n"
PONG = b"PONG\r\n"
_CRLF = b"\r\n"
_HDR_LINE = b"NATS/1.0"
_HDR_LINE_CRLF = b"NATS/1.0\r\n"


class ProtocolError(Exception):
    """The peer broke the protocol: the connection cannot go on."""


class PayloadTooLarge(ValueError):
    """Headers and data over the server's max_payload: it would close the connection."""


# ---- events ----------------------------------------------------------------------------


@dataclass(slots=True)
class Msg:
    """A delivered message (MSG, or HMSG with `headers`, the raw `NATS/1.0` block)."""

    subject: str
    sid: int
    reply: str | None
    data: bytes
    headers: bytes | None = None
    _parsed: dict[str, str] | None = field(default=None, repr=False, compare=False)

    def header_dict(self) -> dict[str, str]:
        """The headers as a dict (parsed on first use): names as sent, first value wins."""
        if self._parsed is None:
            self._parsed = parse_headers(self.headers) if self.headers else {}
        return self._parsed

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.header_dict().get(name, default)

    @property
    def status(self) -> str | None:
        """The inline status ("503" no responders, "404", "408", "204" end of batch), if any."""
        h = self.headers
        if h is None or len(h) < 12 or h[8] != 32:  # b"NATS/1.0 503"; 32 is a space
            return None
        return h[9:12].decode("ascii", "replace")

    @property
    def description(self) -> str:
        """The text after the status code ("No Responders", "EOB", "Message Not Found")."""
        h = self.headers
        if self.status is None:
            return ""
        return h[12 : h.find(_CRLF)].decode("utf-8", "replace").strip()


@dataclass(slots=True)
class Ping:
    pass


@dataclass(slots=True)
class Pong:
    pass


@dataclass(slots=True)
class Ok:
    pass


@dataclass(slots=True)
class Info:
    info: dict


@dataclass(slots=True)
class Err:
    text: str


Event = Msg | Ping | Pong | Ok | Info | Err
_PING, _PONG, _OK = Ping(), Pong(), Ok()  # no fields: one instance each


def parse_headers(block: bytes) -> dict[str, str]:
    """`NATS/1.0[ status]\\r\\nName: value\\r\\n...\\r\\n` -> {name: first value}."""
    if not block.startswith(_HDR_LINE):
        raise ProtocolError(f"header block does not start with NATS/1.0: {block[:40]!r}")
    out: dict[str, str] = {}
    for line in block.split(_CRLF)[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name:
            continue  # the blank line that ends the block, or junk: not a header
        key = name.decode("utf-8", "replace").strip()
        if key not in out:
            out[key] = value.decode("utf-8", "replace").strip()
    return out


# ---- parser ----------------------------------------------------------------------------


class Parser:
    """Bytes from a server in, events out; partial reads may split anything anywhere.

    After a `ProtocolError` the parser is spent: drop the connection and start a new one.
    """

    __slots__ = ("max_payload", "max_line", "_chunks", "_have", "_need")

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD, max_line: int = MAX_LINE) -> None:
        self.max_payload = max_payload  # the client sets it from INFO
        self.max_line = max_line
        self._chunks: list[bytes] = []  # unparsed bytes, waiting until we _have >= _need
        self._have = 0
        self._need = 0

    @property
    def buffered(self) -> int:
        return self._have

    def feed(self, data: bytes) -> list[Event]:
        if type(data) is not bytes:
            data = bytes(data)
        if self._chunks:
            self._chunks.append(data)
            self._have += len(data)
            if self._have < self._need:
                return []  # inside a payload (or a line): nothing new to parse yet
            buf = b"".join(self._chunks)
            self._chunks = []
            self._have = 0
        else:
            buf = data
        events: list[Event] = []
        pos = self._parse(buf, events)
        if pos < len(buf):
            rest = buf[pos:] if pos else buf
            self._chunks = [rest]
            self._have = len(rest)
        return events

    def _parse(self, buf: bytes, events: list[Event]) -> int:
        """Parse whole operations from `buf`; return where the unparsed tail starts.

        MSG and HMSG are written out inline, each in full: one of them runs per delivered
        message, and a helper call costs about a tenth of what a message costs here."""
        pos = 0
        n = len(buf)
        max_line = self.max_line
        limit = self.max_payload + HEADROOM
        append = events.append
        try:
            while pos < n:
                end = buf.find(_CRLF, pos, pos + max_line + 2)
                if end < 0:
                    if n - pos > max_line:
                        raise ProtocolError(f"control line longer than {max_line} bytes")
                    self._need = n - pos + 1  # any more bytes may complete the line
                    return pos
                # Fields are separated by runs of spaces or tabs (the protocol's "whitespace";
                # nats-server's advisories carry an empty reply as a second space).
                args = buf[pos:end].split()
                if args[0] == b"MSG":  # MSG subject sid [reply] size
                    size = int(args[-1])
                    if not 0 <= size <= limit:
                        raise ProtocolError(f"bad payload size {size} (limit {limit})")
                    if len(args) == 4:
                        reply = None
                    elif len(args) == 5:
                        reply = args[3].decode()
                    else:
                        raise ProtocolError(f"bad MSG line {buf[pos:end][:200]!r}")
                    start = end + 2
                    stop = start + size
                    if stop + 2 > n:
                        self._need = stop + 2 - pos
                        return pos
                    if buf[stop] != 13 or buf[stop + 1] != 10:
                        raise ProtocolError("MSG payload not followed by CRLF")
                    append(Msg(args[1].decode(), int(args[2]), reply, buf[start:stop]))
                    pos = stop + 2
                elif args[0] == b"HMSG":  # HMSG subject sid [reply] hdr_size total_size
                    hlen, size = int(args[-2]), int(args[-1])
                    if not 0 <= hlen <= size <= limit:
                        raise ProtocolError(f"bad HMSG sizes {hlen}/{size} (limit {limit})")
                    if len(args) == 5:
                        reply = None
                    elif len(args) == 6:
                        reply = args[3].decode()
                    else:
                        raise ProtocolError(f"bad HMSG line {buf[pos:end][:200]!r}")
                    start = end + 2
                    stop = start + size
                    if stop + 2 > n:
                        self._need = stop + 2 - pos
                        return pos
                    if buf[stop] != 13 or buf[stop + 1] != 10:
                        raise ProtocolError("HMSG payload not followed by CRLF")
                    split = start + hlen
                    if not buf.startswith(_HDR_LINE, start, split):
                        raise ProtocolError("HMSG headers do not start with NATS/1.0")
                    hdr = buf[start:split]
                    append(Msg(args[1].decode(), int(args[2]), reply, buf[split:stop], hdr))
                    pos = stop + 2
                else:
                    append(self._control(buf[pos:end]))
                    pos = end + 2
        except (ValueError, IndexError) as exc:  # int() of a non-number, too few arguments
            raise ProtocolError(f"bad message line {buf[pos : pos + 80]!r}: {exc}") from None
        return pos

    @staticmethod
    def _control(line: bytes) -> Event:
        if line == b"PING":
            return _PING
        if line == b"PONG":
            return _PONG
        if line == b"+OK":
            return _OK
        if line.startswith(b"INFO "):
            try:
                info = json.loads(line[5:])
            except ValueError as exc:
                raise ProtocolError(f"bad INFO: {exc}") from None
            if not isinstance(info, dict):
                raise ProtocolError("INFO is not a JSON object")
            return Info(info)
        if line.startswith(b"-ERR"):
            return Err(line[4:].decode("utf-8", "replace").strip().strip("'"))
        raise ProtocolError(f"unknown operation {line[:60]!r}")


# ---- encoders --------------------------------------------------------------------------


_checked: dict[str, bytes] = {}  # recent subjects, checked and encoded (each sender's repeats)


def _subject(subject: str, what: str = "subject", *, remember: bool = True) -> bytes:
    """Printable and without spaces: whitespace would split the protocol line. Subjects
    used again (a sender's, a subscription's) are remembered; one-off reply subjects not."""
    b = _checked.get(subject)
    if b is not None:
        return b
    if not subject or " " in subject or not subject.isprintable():
        raise ValueError(
            f"invalid NATS {what} {subject!r}: empty, or contains whitespace or control characters"
        )
    b = subject.encode()
    if remember:
        if len(_checked) >= 4096:
            _checked.clear()
        _checked[subject] = b
    return b


_header_names: dict[str, bytes] = {}  # checked names -> b"Name: " (a handful ever used)


def encode_headers(headers: dict[str, str]) -> bytes:
    """The `NATS/1.0` block; names are checked once, values for CR/LF every time."""
    parts = [_HDR_LINE_CRLF]
    for name, value in headers.items():
        prefix = _header_names.get(name)
        if prefix is None:
            if not name or ":" in name or " " in name or not name.isprintable():
                raise ValueError(f"invalid NATS header name {name!r}")
            prefix = name.encode() + b": "
            if len(_header_names) < 1024:
                _header_names[name] = prefix
        if "\r" in value or "\n" in value:
            raise ValueError(f"invalid NATS header value for {name!r}: contains CR or LF")
        parts.append(prefix + value.encode() + _CRLF)
    parts.append(_CRLF)
    return b"".join(parts)


def pub(
    subject: str,
    data: bytes,
    reply: str | None = None,
    headers: dict[str, str] | bytes | None = None,
    max_payload: int = 1 << 62,
) -> bytes:
    """PUB, or HPUB when there are headers: a dict, or a whole `NATS/1.0` block already
    encoded (by a caller that builds it from values that cannot hold CR or LF)."""
    s = _subject(subject)
    if len(data) > max_payload:
        raise PayloadTooLarge(f"{len(data)} bytes over max_payload {max_payload}")
    if headers:
        hdr = headers if type(headers) is bytes else encode_headers(headers)
        if len(hdr) + len(data) > max_payload:
            raise PayloadTooLarge(
                f"{len(hdr)} + {len(data)} bytes of headers and data over max_payload {max_payload}"
            )
        if reply is None:
            return b"HPUB %b %d %d\r\n%b%b\r\n" % (s, len(hdr), len(hdr) + len(data), hdr, data)
        return b"HPUB %b %b %d %d\r\n%b%b\r\n" % (
            s,
            _subject(reply, "reply subject", remember=False),
            len(hdr),
            len(hdr) + len(data),
            hdr,
            data,
        )
    if reply is None:
        return b"PUB %b %d\r\n%b\r\n" % (s, len(data), data)
    return b"PUB %b %b %d\r\n%b\r\n" % (
        s,
        _subject(reply, "reply subject", remember=False),
        len(data),
        data,
    )


def sub(subject: str, sid: int, queue: str | None = None) -> bytes:
    s = _subject(subject)
    if queue is None:
        return b"SUB %b %d\r\n" % (s, sid)
    return b"SUB %b %b %d\r\n" % (s, _subject(queue, "queue group"), sid)


def unsub(sid: int, max: int | None = None) -> bytes:  # noqa: A002 - the protocol's name
    if max is None:
        return b"UNSUB %d\r\n" % sid
    return b"UNSUB %d %d\r\n" % (sid, max)


def connect(options: dict) -> bytes:
    return b"CONNECT " + json.dumps(options, separators=(",", ":")).encode() + _CRLF
