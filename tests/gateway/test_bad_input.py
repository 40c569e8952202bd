"""Bad input gets an error frame and a documented close code; other sessions carry on (G4)."""

from __future__ import annotations

from contextlib import asynccontextmanager

import msgpack
import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from gateway import tokens
from gateway.client import Client
from gateway.codec import Close, Event, Events, Hello, decode_frame, encode_frame
from tests.support.keys import mint, new_sid


async def exchange(
    url: str, frames: list[bytes | str], timeout: float = 10
) -> tuple[list, int | None]:
    """Send frames, read until the gateway closes; return (frames received, close code)."""
    got = []
    async with open_websocket_url(url, max_message_size=4 * 2**20) as ws:
        with trio.fail_after(timeout):
            try:
                for f in frames:
                    await ws.send_message(f)
                    await trio.sleep(0.01)
                while True:
                    got.append(decode_frame(await ws.get_message()))
            except ConnectionClosed as exc:
                return got, exc.reason.code
    return got, None


def hello(sid: str, role: str, token: str | None = None) -> bytes:
    return encode_frame(Hello(role=role, sid=sid, token=token or mint(sid, role)))


def events(epoch: int, *evs: tuple[int, str]) -> bytes:
    return encode_frame(Events(epoch=epoch, events=[Event(s, k, 1, {"x": 1}) for s, k in evs]))


def error_codes(frames) -> list[str]:
    return [f.code for f in frames if getattr(f, "op", None) == "error"]


@pytest.fixture
async def healthy_session(two_gateways):
    """A session streaming steadily on the same gateway while the bad input arrives."""
    async with streaming_beside(two_gateways):
        yield two_gateways


@asynccontextmanager
async def streaming_beside(g, gid: str = "gw-a"):
    """A session streaming steadily on gateway `gid` for the duration; afterwards, it must have
    lost, duplicated and reordered nothing."""
    sid = new_sid()
    visitor = Client([g.url(gid)], sid, mint(sid, "visitor"), "visitor")
    agent = Client([g.url(gid)], sid, mint(sid, "agent"), "agent")
    sent = 0
    async with trio.open_nursery() as n:
        await n.start(visitor.run)
        await visitor.send("snapshot", {"i": 0, "n": 1, "d": b"x"})
        sent = 1
        await visitor.wait_acked(1)
        await n.start(agent.run)

        async def stream():
            nonlocal sent
            while True:
                await visitor.send("mutation", {"n": sent})
                sent += 1
                await trio.sleep(0.005)

        n.start_soon(stream)
        start = visitor.acked
        yield
        # Keep it streaming a while after the bad input, then stop.
        with trio.fail_after(30):
            while visitor.acked < start + 100:
                await trio.sleep(0.01)
        n.cancel_scope.cancel()
    # The healthy session was not touched: everything acked arrived, in order, once.
    acked = visitor.acked
    got = []
    while True:
        try:
            got.append(agent.events.receive_nowait())
        except trio.WouldBlock:
            break
    seqs = [d.seq for d in got]
    assert acked > 100
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) >= acked - 50  # the tail may still have been in flight at cancel
    assert agent.stats.gaps == 0 and visitor.stats.gaps == 0


def _expired(sid: str, role: str) -> str:
    from tests.support.keys import KEYRING

    return tokens.mint(KEYRING, sid=sid, role=role, now=0, ttl=10)


def _forged(sid: str, role: str) -> str:
    other = tokens.Keyring.parse("test-1:" + "x" * 40)  # same key id, wrong secret
    return tokens.mint(other, sid=sid, role=role, now=1e10, ttl=10)


def _resume(sid: str, **claims) -> str:
    from tests.support.keys import KEYRING

    return tokens.mint(KEYRING, sid=sid, role="resume", now=1e10 - 100, ttl=1e9, **claims)


def _resume_hello(sid: str, role: str, rt: str) -> bytes:
    return msgpack.packb(
        {
            "t": "hello",
            "v": 1,
            "role": role,
            "sid": sid,
            "token": mint(sid, role),
            "resume": {"rt": rt, "epoch": 0, "recv": None},
        }
    )


CASES = {
    "garbage_bytes": (lambda sid: [b"\xc1\xff\x00garbage"], "bad_frame", Close.BAD_FRAME),
    "wrong_shape": (lambda sid: [msgpack.packb([1, 2, 3])], "bad_shape", Close.BAD_FRAME),
    "hello_missing_fields": (
        lambda sid: [msgpack.packb({"t": "hello", "v": 1})],
        "bad_shape",
        Close.BAD_FRAME,
    ),
    "unknown_type": (lambda sid: [msgpack.packb({"t": "nope"})], "unknown_type", Close.BAD_FRAME),
    "text_frame": (lambda sid: ["hello"], "text_frame", Close.UNSUPPORTED_DATA),
    "oversized_frame": (lambda sid: [b"\x00" * (1024 * 1024 + 10)], "too_large", Close.TOO_BIG),
    "forged_token": (
        lambda sid: [hello(sid, "visitor", _forged(sid, "visitor"))],
        "bad_token",
        Close.UNAUTHORIZED,
    ),
    "expired_token": (
        lambda sid: [hello(sid, "agent", _expired(sid, "agent"))],
        "token_expired",
        Close.UNAUTHORIZED,
    ),
    "wrong_session_token": (
        lambda sid: [hello(sid, "visitor", mint(new_sid(), "visitor"))],
        "wrong_session",
        Close.UNAUTHORIZED,
    ),
    "agent_token_as_visitor": (
        lambda sid: [hello(sid, "visitor", mint(sid, "agent"))],
        "wrong_role",
        Close.UNAUTHORIZED,
    ),
    "first_frame_not_hello": (
        lambda sid: [events(1, (1, "mutation"))],
        "expected_hello",
        Close.PROTOCOL,
    ),
    "unknown_event_kind": (
        lambda sid: [hello(sid, "visitor"), events(1, (1, "teleport"))],
        "unknown_kind",
        Close.BAD_FRAME,
    ),
    "visitor_kind_from_agent": (
        lambda sid: [hello(sid, "agent"), events(0, (1, "mutation"))],
        "forbidden_kind",
        Close.PROTOCOL,
    ),
    "seq_skips_ahead": (
        lambda sid: [hello(sid, "visitor"), events(1, (1, "mutation"), (3, "mutation"))],
        "seq_gap",
        Close.PROTOCOL,
    ),
    "seq_backwards": (
        lambda sid: [
            hello(sid, "visitor"),
            events(1, (1, "mutation"), (2, "mutation")),
            events(1, (2, "mutation")),
        ],
        "seq_backwards",
        Close.PROTOCOL,
    ),
    "wrong_epoch": (
        lambda sid: [hello(sid, "visitor"), events(7, (1, "mutation"))],
        "wrong_epoch",
        Close.PROTOCOL,
    ),
    "bad_snapshot_payload": (
        lambda sid: [
            hello(sid, "visitor"),
            encode_frame(Events(epoch=1, events=[Event(1, "snapshot", 1, b"raw")])),
        ],
        "bad_shape",
        Close.BAD_FRAME,
    ),
    "unsupported_version": (
        lambda sid: [
            msgpack.packb({"t": "hello", "v": 99, "role": "visitor", "sid": sid, "token": "x"})
        ],
        "unsupported_version",
        Close.UNSUPPORTED_VERSION,
    ),
    "resume_token_of_another_session": (
        lambda sid: [_resume_hello(sid, "agent", _resume(new_sid(), r="agent", aid="aabcdef"))],
        "bad_resume",
        Close.UNAUTHORIZED,
    ),
    "visitor_resume_token_used_by_agent": (
        lambda sid: [_resume_hello(sid, "agent", _resume(sid, r="visitor", epoch=1))],
        "bad_resume",
        Close.UNAUTHORIZED,
    ),
    "forged_resume_token": (
        lambda sid: [
            msgpack.packb(
                {
                    "t": "hello",
                    "v": 1,
                    "role": "agent",
                    "sid": sid,
                    "token": mint(sid, "agent"),
                    "resume": {"rt": _forged(sid, "resume"), "epoch": 0, "recv": None},
                }
            )
        ],
        "bad_resume",
        Close.UNAUTHORIZED,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_bad_input_is_refused_and_others_unharmed(healthy_session, case):
    make, code, close = CASES[case]
    url = healthy_session.url("gw-a")
    sid = new_sid()
    got, close_code = await exchange(url, make(sid))
    assert close_code == close, (got, close_code)
    assert code in error_codes(got), got
    # The gateway still serves new sessions after the bad one.
    sid2 = new_sid()
    v = Client([url], sid2, mint(sid2, "visitor"), "visitor")
    async with trio.open_nursery() as n:
        await n.start(v.run)
        ev = await v.send("mutation", {"ok": True})
        await v.wait_acked(ev.seq, timeout=10)
        v.close()
        n.cancel_scope.cancel()


async def test_hello_for_another_session_than_the_url_names_is_refused(two_gateways):
    """The URL's sid chose the admission lane; the hello may not switch sessions. (Every
    other test connects with a matching ?sid=, the clients' way.)"""
    sid, other = new_sid(), new_sid()
    url = two_gateways.url("gw-a") + f"?sid={other}"
    got, close_code = await exchange(url, [hello(sid, "visitor")])
    assert close_code == Close.PROTOCOL, got
    assert error_codes(got) == ["sid_mismatch"]


async def test_frame_far_over_the_limit_is_closed_without_reading_it(two_gateways):
    got, close_code = await exchange(two_gateways.url("gw-a"), [b"\x00" * (3 * 1024 * 1024)])
    assert close_code == Close.TOO_BIG


async def test_silent_client_is_closed_after_hello_timeout(nats_server, gateways_factory):
    g = gateways_factory(nats_server.url)
    g.start("gw-a", ["--hello-timeout", "0.5"])
    got, close_code = await exchange(g.url("gw-a"), [])
    assert close_code == Close.HELLO_TIMEOUT
    assert error_codes(got) == ["hello_timeout"]
