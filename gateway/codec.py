"""Wire protocol v1: frames as msgpack maps, validated before anything acts on them.

Sans-I/O: `decode_frame` takes the bytes of one WebSocket message and returns a typed frame
or raises `ProtocolError` carrying the error code and the close code the connection must be
closed with. Nothing here touches a socket or a clock. See docs/protocol.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgpack

PROTOCOL_VERSION = 1

# Limits (docs/protocol.md, "Limits").
MAX_FRAME_BYTES = 1024 * 1024
MAX_EVENTS_PER_BATCH = 512
MAX_EVENT_BYTES = 128 * 1024
MAX_TOKEN_BYTES = 2048
MAX_KIND_LEN = 32

SESSION_ID_RE = re.compile(r"[A-Za-z0-9_-]{8,64}")
AGENT_ID_RE = re.compile(r"a[A-Za-z0-9]{4,32}")


class Close:
    """WebSocket close codes (docs/protocol.md, "Close codes")."""

    NORMAL = 1000
    GOING_AWAY = 1001  # gateway draining or shutting down: reconnect elsewhere
    UNSUPPORTED_DATA = 1003  # a text frame
    TOO_BIG = 1009  # a frame over MAX_FRAME_BYTES
    INTERNAL = 1011  # gateway-side failure (NATS unreachable): retry with backoff
    BAD_FRAME = 4000  # undecodable, wrong shape, unknown frame type
    UNAUTHORIZED = 4001  # forged, expired or wrong-session token; forged resume token
    PROTOCOL = 4002  # valid frame at the wrong time or from the wrong role, sequence errors
    REPLACED = 4005  # a newer visitor connection for the same session took over
    SESSION_ENDED = 4004  # the session was ended through the API, or a hello for an ended one
    HELLO_TIMEOUT = 4008
    UNSUPPORTED_VERSION = 4006
    REFUSED = 4009  # handshake refused (rate limited or draining), for `?refusal=close` clients
    OVER_BUDGET = 4010  # over its event or byte budget for the grace period: retry with backoff
    SESSION_FULL = 4011  # the session's visitor sent its lifetime byte cap: fatal


# RFC 6455 codes that a peer may send or that stand for no close frame, besides Close's own.
_RFC_CLOSE_NAMES = {
    1002: "PROTOCOL_ERROR",
    1005: "NO_STATUS_RCVD",
    1006: "ABNORMAL_CLOSURE",
    1007: "INVALID_FRAME_PAYLOAD_DATA",
    1008: "POLICY_VIOLATION",
    1010: "MANDATORY_EXT",
    1012: "SERVICE_RESTART",
    1013: "TRY_AGAIN_LATER",
}
CLOSE_NAMES: dict[int, str] = {
    **_RFC_CLOSE_NAMES,
    **{v: k for k, v in vars(Close).items() if k.isupper() and isinstance(v, int)},
}


def close_name(code: int) -> str:
    """The name of a close code for logs (`1001` -> `GOING_AWAY`); `UNKNOWN` for others."""
    return CLOSE_NAMES.get(int(code), "UNKNOWN")


class ProtocolError(Exception):
    """A peer broke the protocol: send `error` control frame with `code`, then close."""

    def __init__(self, code: str, message: str, close_code: int = Close.BAD_FRAME):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.close_code = close_code


VISITOR_KINDS = frozenset(
    {
        "snapshot",  # full snapshot chunk: payload {"i": part, "n": parts, "d": bytes}
        "mutation",
        "pointer",
        "click",
        "scroll",
        "input",
        "hover",
        "focus",
        "viewport",
        "canvas",
        "css",
        "nav",
        "custom",
        "rc-grant",  # remote control (gateway/remote_control.py): the visitor grants
        "rc-revoke",  # ... or refuses or revokes
    }
)
AGENT_KINDS = frozenset(
    {
        "pointer",
        "highlight",
        "click",
        "control",
        "custom",
        "draw",  # a freehand stroke on the visitor's overlay
        "rc-request",  # remote control: the agent asks
        "rc-click",  # ... and acts, only while it holds the visitor's grant
        "rc-scroll",
        "rc-text",
        "rc-key",
    }
)
# Written by a gateway in place of an agent's input it refused: receivers decode it, no
# sender may send it (neither role's allowed kinds hold it).
GATEWAY_KINDS = frozenset({"rc-refused"})
ALL_KINDS = VISITOR_KINDS | AGENT_KINDS | GATEWAY_KINDS
ROLES = ("visitor", "agent")


class Event(NamedTuple):
    seq: int
    kind: str
    ts: int  # sender's wall clock, milliseconds since the epoch
    payload: Any


@dataclass(frozen=True)
class Hello:
    role: str
    sid: str
    token: str
    resume: Resume | None = None
    v: int = PROTOCOL_VERSION


@dataclass(frozen=True)
class Resume:
    rt: str  # resume token from the last welcome
    epoch: int  # the epoch the sender's sequencer is in
    # agent: [epoch, seq] of the last visitor event it delivered; visitor: {aid: seq}
    recv: Any = None


@dataclass(frozen=True)
class Welcome:
    gw: str
    epoch: int
    rt: str
    durable: int  # last seq of this sender's direction (this epoch) held by JetStream
    aid: str | None = None
    delivered: Any = None  # where delivery restarts: agent [epoch, seq] / visitor {aid: seq}


@dataclass(slots=True)
class Events:  # not frozen: one is made per received frame, and frozen __init__ costs twice
    epoch: int
    events: list[Event] = field(default_factory=list)
    src: str | None = None  # None: the visitor; else the agent id that sent them
    # The received bytes when they hold exactly {t, e, ev}: stored and forwarded as they are.
    wire: bytes | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Ack:
    seq: int


@dataclass(frozen=True)
class Control:
    op: str  # reconnect | error | snapshot | reset | joined | left | visitor | refused
    code: str | None = None
    msg: str | None = None
    delay_ms: int | None = None
    hint: list[str] | None = None
    epoch: int | None = None


@dataclass(frozen=True)
class Bye:
    reason: str = ""


Frame = Hello | Welcome | Events | Ack | Control | Bye
CONTROL_OPS = frozenset(
    {"reconnect", "error", "snapshot", "reset", "joined", "left", "visitor", "refused"}
)


def _short(v: Any) -> str:
    """A peer's value quoted in an error message, cut so the error frame stays small."""
    r = repr(v)
    return r if len(r) <= 64 else r[:61] + "..."


def _bad(msg: str, code: str = "bad_shape") -> ProtocolError:
    return ProtocolError(code, msg, Close.BAD_FRAME)


def _int(m: dict, key: str, lo: int = 0, hi: int = 2**53) -> int:
    v = m.get(key)
    if type(v) is not int or not lo <= v <= hi:
        raise _bad(f"{key!r} must be an integer in [{lo}, {hi}]")
    return v


def _str(m: dict, key: str, maxlen: int = 256, optional: bool = False) -> str | None:
    v = m.get(key)
    if v is None and optional:
        return None
    if not isinstance(v, str) or len(v) > maxlen:
        raise _bad(f"{key!r} must be a string of at most {maxlen} characters")
    return v


def _decode_event(item: Any, allowed_kinds: frozenset[str]) -> Event:
    if not isinstance(item, list) or len(item) != 4:
        raise _bad("each event must be [seq, kind, ts, payload]")
    seq, kind, ts, payload = item
    if type(seq) is not int or not 1 <= seq <= 2**53:
        raise _bad("event seq must be a positive integer")
    if not isinstance(kind, str) or len(kind) > MAX_KIND_LEN:
        raise _bad("event kind must be a short string")
    if kind not in ALL_KINDS:
        raise ProtocolError("unknown_kind", f"unknown event kind {_short(kind)}", Close.BAD_FRAME)
    if kind not in allowed_kinds:
        raise ProtocolError("forbidden_kind", f"kind {kind!r} not allowed here", Close.PROTOCOL)
    if type(ts) is not int or ts < 0:
        raise _bad("event ts must be a non-negative integer (ms)")
    if kind == "snapshot" and snapshot_part(payload) is None:
        raise _bad("snapshot payload must be {i, n, d} with 0 <= i < n")
    return Event(seq, kind, ts, payload)


def snapshot_part(payload: Any) -> int | None:
    """The part number `i` of a snapshot payload `{i, n, d}`, or None when it is malformed.

    Part 0 is where late-joining agents start, so the gateway must be able to trust it."""
    if not isinstance(payload, dict):
        return None
    i, n = payload.get("i"), payload.get("n")
    if type(i) is not int or type(n) is not int or not 0 <= i < n:
        return None
    return i


def decode_frame(data: bytes | str, *, allowed_kinds: frozenset[str] = ALL_KINDS) -> Frame:
    """Decode and validate one WebSocket message from a peer."""
    if isinstance(data, str):
        raise ProtocolError(
            "text_frame", "text frames are not part of the protocol", Close.UNSUPPORTED_DATA
        )
    if len(data) > MAX_FRAME_BYTES:
        raise ProtocolError("too_large", f"frame over {MAX_FRAME_BYTES} bytes", Close.TOO_BIG)
    try:
        m = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise ProtocolError(
            "bad_frame", f"not msgpack: {type(exc).__name__}", Close.BAD_FRAME
        ) from None
    if not isinstance(m, dict):
        raise _bad("a frame must be a msgpack map")
    t = m.get("t")
    if t == "ev":
        evs = m.get("ev")
        if not isinstance(evs, list) or not evs:
            raise _bad("'ev' must be a non-empty list")
        if len(evs) > MAX_EVENTS_PER_BATCH:
            raise ProtocolError(
                "too_many_events",
                f"over {MAX_EVENTS_PER_BATCH} events in one frame",
                Close.BAD_FRAME,
            )
        events = [_decode_event(e, allowed_kinds) for e in evs]
        # No payload can be larger than the frame that carries it: most frames skip the check.
        if len(data) > MAX_EVENT_BYTES:
            for e in events:
                if payload_size(e.payload) > MAX_EVENT_BYTES:
                    raise ProtocolError(
                        "event_too_large",
                        f"event payload over {MAX_EVENT_BYTES} bytes",
                        Close.TOO_BIG,
                    )
        src = _str(m, "src", 40, optional=True)
        # A frame of exactly {t, e, ev} is already the stored and delivered form of its batch.
        wire = data if len(m) == 3 else None
        return Events(epoch=_int(m, "e"), events=events, src=src, wire=wire)
    if t == "ack":
        return Ack(seq=_int(m, "seq"))
    if t == "hello":
        v = m.get("v")
        if type(v) is not int or v != PROTOCOL_VERSION:
            raise ProtocolError(
                "unsupported_version",
                f"protocol version {_short(v)} not supported",
                Close.UNSUPPORTED_VERSION,
            )
        role = m.get("role")
        if role not in ROLES:
            raise _bad("'role' must be 'visitor' or 'agent'")
        sid = _str(m, "sid", 64)
        if not SESSION_ID_RE.fullmatch(sid):
            raise _bad("'sid' must be 8-64 characters of [A-Za-z0-9_-]")
        token = _str(m, "token", MAX_TOKEN_BYTES)
        r = m.get("resume")
        resume = None
        if r is not None:
            if not isinstance(r, dict):
                raise _bad("'resume' must be a map or nil")
            recv = r.get("recv")
            if role == "agent":
                if recv is not None and not (
                    isinstance(recv, list)
                    and len(recv) == 2
                    and all(type(x) is int and 0 <= x <= 2**53 for x in recv)
                ):
                    raise _bad("agent resume 'recv' must be [epoch, seq]")
            elif recv is not None:
                if (
                    not isinstance(recv, dict)
                    or len(recv) > 1024
                    or not all(
                        isinstance(k, str)
                        and AGENT_ID_RE.fullmatch(k)
                        and type(s) is int
                        and 0 <= s <= 2**53
                        for k, s in recv.items()
                    )
                ):
                    raise _bad("visitor resume 'recv' must map agent ids to sequences")
            resume = Resume(rt=_str(r, "rt", MAX_TOKEN_BYTES), epoch=_int(r, "epoch"), recv=recv)
        return Hello(role=role, sid=sid, token=token, resume=resume)
    if t == "bye":
        return Bye(reason=_str(m, "reason", 256, optional=True) or "")
    if t == "ctl":
        op = m.get("op")
        if not isinstance(op, str) or op not in CONTROL_OPS:
            raise _bad(f"unknown control op {_short(op)}")
        hint = m.get("hint")
        if hint is not None and not (
            isinstance(hint, list) and all(isinstance(h, str) for h in hint)
        ):
            raise _bad("'hint' must be a list of URLs")
        return Control(
            op=op,
            code=_str(m, "code", 64, optional=True),
            msg=_str(m, "msg", 1024, optional=True),
            delay_ms=m.get("delay_ms") if type(m.get("delay_ms")) is int else None,
            hint=hint,
            epoch=m.get("epoch") if type(m.get("epoch")) is int else None,
        )
    if t == "welcome":
        return Welcome(
            gw=_str(m, "gw", 128),
            epoch=_int(m, "epoch"),
            rt=_str(m, "rt", MAX_TOKEN_BYTES),
            durable=_int(m, "durable"),
            aid=_str(m, "aid", 40, optional=True),
            delivered=m.get("delivered"),
        )
    raise ProtocolError("unknown_type", f"unknown frame type {_short(t)}", Close.BAD_FRAME)


def payload_size(payload: Any) -> int:
    """The bytes an event payload counts against `MAX_EVENT_BYTES` (docs/protocol.md,
    "Events"): a bin's length, a str's UTF-8 length (what msgpack carries, and what the
    browser measures with `TextEncoder`), anything else's msgpack encoding. The one size of
    a payload: the decoder's limit, the sender's resend buffer and frame grouping all use it."""
    if isinstance(payload, bytes):
        return len(payload)
    if isinstance(payload, str):
        return len(payload.encode("utf-8", "surrogatepass"))
    return len(msgpack.packb(payload, use_bin_type=True))


_ACK_HEAD = b"\x82\xa1t\xa3ack\xa3seq"  # {"t": "ack", "seq": ...}, a map of 2, before the seq


def _pack(m: dict) -> bytes:
    return msgpack.packb(m, use_bin_type=True)


def encode_frame(frame: Frame) -> bytes:
    """Encode one frame; the gateway and the reference client both use this."""
    if isinstance(frame, Events):
        m: dict[str, Any] = {"t": "ev", "e": frame.epoch, "ev": [list(e) for e in frame.events]}
        if frame.src is not None:
            m["src"] = frame.src
        return _pack(m)
    if isinstance(frame, Ack):
        return _ACK_HEAD + _pack(frame.seq)
    if isinstance(frame, Hello):
        m = {"t": "hello", "v": frame.v, "role": frame.role, "sid": frame.sid, "token": frame.token}
        if frame.resume is not None:
            m["resume"] = {
                "rt": frame.resume.rt,
                "epoch": frame.resume.epoch,
                "recv": frame.resume.recv,
            }
        return _pack(m)
    if isinstance(frame, Welcome):
        return _pack(
            {
                "t": "welcome",
                "gw": frame.gw,
                "epoch": frame.epoch,
                "rt": frame.rt,
                "durable": frame.durable,
                "aid": frame.aid,
                "delivered": frame.delivered,
            }
        )
    if isinstance(frame, Control):
        m = {"t": "ctl", "op": frame.op}
        for k in ("code", "msg", "delay_ms", "hint", "epoch"):
            v = getattr(frame, k)
            if v is not None:
                m[k] = v
        return _pack(m)
    if isinstance(frame, Bye):
        return _pack({"t": "bye", "reason": frame.reason})
    raise TypeError(f"not a frame: {frame!r}")


def error_frame(err: ProtocolError) -> bytes:
    return encode_frame(Control(op="error", code=err.code, msg=err.message))


# ---- what JetStream stores ----------------------------------------------------------------
#
# One stored message per batch of one sender's consecutive events, and its body is the frame
# its receivers get: {"t": "ev", "e": epoch, "ev": [[seq, kind, ts, payload], ...]}, with
# "src": <aid> on an agent's subject. A receiving gateway whose receiver is in order forwards
# the body as it is, without decoding the payloads into Python objects and encoding them again.


def encode_batch(epoch: int, events: list, src: str | None = None) -> bytes:
    """The stored body (and delivered frame) of consecutive events of one sender."""
    m: dict[str, Any] = {"t": "ev", "e": epoch, "ev": [list(e) for e in events]}
    if src is not None:
        m["src"] = src
    return _pack(m)


class StoredBatch(NamedTuple):
    """A stored message's events, still as msgpack lists: most receivers need only the keys."""

    epoch: int
    items: list  # [[seq, kind, ts, payload], ...], consecutive seqs
    src: str | None

    @property
    def first(self) -> int:
        return self.items[0][0]

    @property
    def last(self) -> int:
        return self.items[-1][0]

    def events(self) -> list[Event]:
        return [Event(*item) for item in self.items]


def _stored_item(item: Any) -> bool:
    return type(item) is list and len(item) == 4 and type(item[0]) is int


def decode_batch(data: bytes) -> StoredBatch:
    """A stored body. Bodies are written by gateways, so this checks the shape only; it raises
    ValueError on anything else (a receiver then reads the stream instead).

    Bodies of the earlier layout, one event per message ([epoch, seq, kind, ts, payload]),
    are read as batches of one."""
    m = msgpack.unpackb(data, raw=False)
    if isinstance(m, dict):
        epoch, items = m.get("e"), m.get("ev")
        if type(epoch) is int and isinstance(items, list) and items:
            # The ends give the keys; a malformed item between fails in `events()`.
            first, last = items[0], items[-1]
            if _stored_item(first) and _stored_item(last):
                src = m.get("src")
                return StoredBatch(epoch, items, src if isinstance(src, str) else None)
    elif isinstance(m, list) and len(m) == 5 and type(m[0]) is int and type(m[1]) is int:
        return StoredBatch(m[0], [m[1:]], None)
    raise ValueError("not a stored batch")
