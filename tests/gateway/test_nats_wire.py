"""nats_wire: the sans-I/O NATS protocol; any split of the input parses the same, encoders
round-trip, and bad input is a ProtocolError (never a hang, never unbounded memory)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import nats_wire as w
from gateway.nats_wire import HEADROOM, Err, Info, Msg, Ok, Parser, Ping, Pong, ProtocolError

# ---- what a server sends, built independently of the module under test -------------------

token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=12)
subjects = st.lists(token, min_size=1, max_size=4).map(".".join)
payloads = st.binary(max_size=300) | st.sampled_from([b"", b"\r\n", b"MSG a 1 3\r\n", b"PING\r\n"])
header_names = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop-", min_size=1, max_size=10
)
header_values = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=20
).map(str.strip)


spaces = st.sampled_from([" ", " ", " ", "  ", "\t", " \t"])


def header_block(headers: dict[str, str], status: str | None = None) -> bytes:
    first = "NATS/1.0" + (f" {status}" if status else "")
    lines = [first] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@st.composite
def server_ops(draw) -> tuple[bytes, object]:
    kind = draw(st.sampled_from(["msg", "hmsg", "ping", "pong", "ok", "err", "info"]))
    if kind in ("msg", "hmsg"):
        subject, sid = draw(subjects), draw(st.integers(1, 10**6))
        reply = draw(st.none() | subjects)
        data = draw(payloads)
        # Fields are separated by whitespace, not by one space: nats-server writes an
        # empty reply as a second space in the advisories it sends (MSG <subject> <sid>  <size>).
        a, b, c, d = (draw(spaces) for _ in range(4))
        r = f"{c}{reply}" if reply else (c if draw(st.booleans()) else "")
        if kind == "msg":
            wire = f"MSG{a}{subject}{b}{sid}{r}{d}{len(data)}\r\n".encode() + data + b"\r\n"
            return wire, Msg(subject, sid, reply, data)
        hdr = header_block(
            draw(st.dictionaries(header_names, header_values, max_size=3)),
            draw(st.none() | st.sampled_from(["503", "404", "204 EOB", "408 Request Timeout"])),
        )
        line = f"HMSG{a}{subject}{b}{sid}{r}{d}{len(hdr)} {len(hdr) + len(data)}\r\n".encode()
        return line + hdr + data + b"\r\n", Msg(subject, sid, reply, data, hdr)
    if kind == "ping":
        return b"PING\r\n", Ping()
    if kind == "pong":
        return b"PONG\r\n", Pong()
    if kind == "ok":
        return b"+OK\r\n", Ok()
    if kind == "err":
        text = draw(st.sampled_from(["Authorization Violation", "Stale Connection", "x"]))
        return f"-ERR '{text}'\r\n".encode(), Err(text)
    info = {"server_id": draw(token), "max_payload": 1 << 20, "connect_urls": [draw(token)]}
    return b"INFO " + json.dumps(info).encode() + b"\r\n", Info(info)


def feed_split(parser: Parser, data: bytes, cuts: list[int]) -> list:
    out = []
    prev = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts) + [len(data)]:
        out += parser.feed(data[prev:cut])
        prev = cut
    return out


# ---- parsing ----------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.lists(server_ops(), min_size=1, max_size=12), st.lists(st.integers(0, 10**6)))
def test_any_split_parses_to_the_same_events(ops, cuts):
    data = b"".join(wire for wire, _ in ops)
    expected = [ev for _, ev in ops]
    assert Parser().feed(data) == expected
    parser = Parser()
    assert feed_split(parser, data, cuts) == expected
    assert parser.buffered == 0


def test_byte_by_byte():
    hdr = b"NATS/1.0\r\nA: b\r\n\r\n"
    data = (
        b"INFO {}\r\nMSG a.b 7 _INBOX.x 5\r\nhello\r\nPING\r\n"
        + b"HMSG c 8 %d %d\r\n%bhi\r\n" % (len(hdr), len(hdr) + 2, hdr)
    )
    parser = Parser()
    events = [ev for i in range(len(data)) for ev in parser.feed(data[i : i + 1])]
    assert events == Parser().feed(data)
    assert [type(e) for e in events] == [Info, Msg, Ping, Msg]
    assert events[3].header_dict() == {"A": "b"} and events[3].data == b"hi"


def test_a_big_payload_in_many_reads_is_joined_once():
    data = b"z" * (1 << 20)
    wire = b"MSG big 1 %d\r\n" % len(data) + data + b"\r\nPONG\r\n"
    parser = Parser()
    events = []
    for i in range(0, len(wire), 65536):
        events += parser.feed(wire[i : i + 65536])
    assert events == [Msg("big", 1, None, data), Pong()]


# ---- headers and status -------------------------------------------------------------------


def hmsg(hdr: bytes, data: bytes = b"") -> Msg:
    wire = b"HMSG s 1 %d %d\r\n" % (len(hdr), len(hdr) + len(data)) + hdr + data + b"\r\n"
    (msg,) = Parser().feed(wire)
    return msg


def test_status_and_description():
    assert hmsg(b"NATS/1.0 503\r\n\r\n").status == "503"
    assert hmsg(b"NATS/1.0 503\r\n\r\n").description == ""
    m = hmsg(b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 1\r\n\r\n")
    assert (m.status, m.description) == ("408", "Request Timeout")
    assert m.header_dict() == {"Nats-Pending-Messages": "1"}
    eob = hmsg(b"NATS/1.0 204 EOB\r\nNats-Num-Pending: 0\r\nNats-Last-Sequence: 9\r\n\r\n")
    assert (eob.status, eob.description) == ("204", "EOB")
    assert eob.header("Nats-Last-Sequence") == "9"
    plain = hmsg(b"NATS/1.0\r\nNats-Sequence: 4\r\n\r\n", b"body")
    assert plain.status is None and plain.description == ""
    assert Msg("s", 1, None, b"").status is None


def test_header_names_keep_their_case_and_the_first_value_wins():
    m = hmsg(b"NATS/1.0\r\nNats-Msg-Id: a\r\nnats-msg-id: b\r\nNats-Msg-Id: c\r\nX:  y \r\n\r\n")
    assert m.header_dict() == {"Nats-Msg-Id": "a", "nats-msg-id": "b", "X": "y"}
    assert m.header("Missing", "d") == "d"


# ---- encoders ---------------------------------------------------------------------------


def as_delivered(wire: bytes, sid: int = 9) -> Msg:
    """What the server would deliver for a PUB/HPUB: the same framing, a sid added."""
    line, rest = wire.split(b"\r\n", 1)
    op, subject, *args = line.split(b" ")
    delivered = {b"PUB": b"MSG", b"HPUB": b"HMSG"}[op]
    (msg,) = Parser().feed(b" ".join([delivered, subject, b"%d" % sid, *args]) + b"\r\n" + rest)
    return msg


@settings(max_examples=300, deadline=None)
@given(
    subjects,
    payloads,
    st.none() | subjects,
    st.none() | st.dictionaries(header_names, header_values, min_size=1, max_size=4),
)
def test_pub_round_trips_through_the_parser(subject, data, reply, headers):
    msg = as_delivered(w.pub(subject, data, reply=reply, headers=headers))
    assert (msg.subject, msg.sid, msg.reply, msg.data) == (subject, 9, reply, data)
    assert msg.header_dict() == (headers or {})
    assert (msg.headers is None) == (not headers)


def test_control_encoders():
    assert w.sub("cb.*.v", 3) == b"SUB cb.*.v 3\r\n"
    assert w.sub("jobs", 4, queue="workers") == b"SUB jobs workers 4\r\n"
    assert w.unsub(3) == b"UNSUB 3\r\n"
    assert w.unsub(3, max=1) == b"UNSUB 3 1\r\n"
    assert w.PING == b"PING\r\n" and w.PONG == b"PONG\r\n"
    wire = w.connect({"verbose": False, "name": "x"})
    assert wire.startswith(b"CONNECT {") and wire.endswith(b"}\r\n")
    assert json.loads(wire[8:]) == {"verbose": False, "name": "x"}


@pytest.mark.parametrize("bad", ["", "a b", "a\tb", "a\r\nPUB x 1", "a\nb", " ", "a\x00b"])
def test_bad_subjects_are_refused(bad):
    with pytest.raises(ValueError, match="invalid NATS subject"):
        w.pub(bad, b"x")
    with pytest.raises(ValueError, match="invalid NATS"):
        w.sub(bad, 1)
    with pytest.raises(ValueError, match="invalid NATS reply subject"):
        w.pub("ok", b"x", reply=bad)


@pytest.mark.parametrize(
    "headers",
    [{"A": "x\r\nB: injected"}, {"A": "x\ny"}, {"": "x"}, {"A:B": "x"}, {"A B": "x"}],
)
def test_bad_headers_are_refused(headers):
    with pytest.raises(ValueError, match="invalid NATS header"):
        w.pub("ok", b"x", headers=headers)


# ---- bad input from a server ----------------------------------------------------------------


@pytest.mark.parametrize(
    "wire",
    [
        b"HELLO\r\n",
        b"MSG a 1 x\r\n",
        b"MSG a 1 -5\r\n",
        b"MSG a 1\r\n",
        b"MSG  1 3\r\nabc\r\n",
        b"MSG a 1 b c 3\r\nabc\r\n",
        b"MSG a x 3\r\nabc\r\n",
        b"MSG a 1 3\r\nabcXY",
        b"HMSG a 1 10 5\r\n",
        b"HMSG a 1 4 6\r\nabcdef\r\n",
        b"HMSG a 1 5\r\n",
        b"INFO {not json\r\n",
        b"INFO [1]\r\n",
        b"MSG \xff 1 0\r\n\r\n",
    ],
)
def test_malformed_operations_are_protocol_errors(wire):
    with pytest.raises(ProtocolError):
        Parser().feed(wire)


def test_an_oversized_payload_is_refused_before_it_is_buffered():
    parser = Parser(max_payload=1000)
    with pytest.raises(ProtocolError, match="payload size"):
        parser.feed(b"MSG a 1 %d\r\n" % (1000 + HEADROOM + 1))
    with pytest.raises(ProtocolError, match="HMSG sizes"):
        Parser(max_payload=1000).feed(b"HMSG a 1 12 %d\r\n" % (1000 + HEADROOM + 1))


def test_a_line_without_end_is_refused_at_max_line_even_in_small_pieces():
    parser = Parser(max_line=1024)
    with pytest.raises(ProtocolError, match="longer than 1024"):
        for _ in range(2000):
            parser.feed(b"x")
            assert parser.buffered <= 1025


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(0, 10**6), max_size=20))
def test_garbage_is_a_protocol_error_or_events_and_memory_stays_bounded(data, cuts):
    parser = Parser(max_payload=512, max_line=256)
    bound = 256 + 512 + HEADROOM + 4
    try:
        prev = 0
        for cut in sorted(c % (len(data) + 1) for c in cuts) + [len(data)]:
            parser.feed(data[prev:cut])
            prev = cut
            assert parser.buffered <= bound
    except ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(server_ops(), min_size=1, max_size=6), st.binary(min_size=1, max_size=50))
def test_valid_operations_then_garbage(ops, garbage):
    """Events before the garbage are all there when it is a clean error afterwards."""
    data = b"".join(wire for wire, _ in ops)
    parser = Parser()
    assert parser.feed(data) == [ev for _, ev in ops]
    try:
        parser.feed(garbage + b"\r\n")
    except ProtocolError:
        pass
