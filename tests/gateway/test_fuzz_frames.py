"""Random frames after a valid hello never break a gateway (G4).

`test_bad_input` names each refusal; this throws what nobody listed at a live gateway:
frames of every type with fields of random type and size (valid ones mixed in, so the
sequence gets past the first check now and then), events of every kind with random payloads,
seqs and epochs, second hellos, a client's own welcome, acks and control ops, raw bytes and
text. Each connection must end with a documented close code (never 1011 or a dropped TCP
connection) or stay open; every error frame names its code; the gateway logs no failed
connection; a session streaming beside it loses nothing (`streaming_beside`).

The frames come from a seeded `random.Random`, so a failure names the seed that repeats it
(`COBROWSE_FUZZ_SEED`); `COBROWSE_FUZZ_CONNECTIONS` runs a longer hunt.
"""

from __future__ import annotations

import math
import os
import random
from typing import Any

import msgpack
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from gateway.codec import ALL_KINDS, CONTROL_OPS, Close, decode_frame
from tests.gateway.test_bad_input import hello, streaming_beside
from tests.support.keys import new_sid

SEED = int(os.environ.get("COBROWSE_FUZZ_SEED", "20261203"))
CONNECTIONS = int(os.environ.get("COBROWSE_FUZZ_CONNECTIONS", "120"))
ALLOWED_CLOSES = {
    Close.NORMAL,
    Close.UNSUPPORTED_DATA,
    Close.TOO_BIG,
    Close.BAD_FRAME,
    Close.UNAUTHORIZED,
    Close.PROTOCOL,
    Close.SESSION_ENDED,
    Close.OVER_BUDGET,
    Close.SESSION_FULL,
    Close.UNSUPPORTED_VERSION,  # a second hello of another version
}
KEYS = ["t", "e", "ev", "seq", "op", "i", "n", "d", "aid", "x", "y", "id", "text", "key", "v",
        "value", "dx", "dy", "url", "title", "src", "resume", "rt", "recv", "hint", "delay_ms",
        "epoch", "code", "msg", "reason", "role", "sid", "token", "path", "kind"]  # fmt: skip
KINDS = sorted(ALL_KINDS) + ["", "nope", "rc-", "snapshot\x00"]


def value(r: random.Random, depth: int = 0) -> Any:
    """Any msgpack value, small or large, of any type."""
    pick = r.randrange(12 if depth < 3 else 8)
    if pick == 0:
        return None
    if pick == 1:
        return r.random() < 0.5
    if pick == 2:
        return r.choice([0, 1, -1, 2**31, 2**53, 2**53 + 1, 2**63 - 1, -(2**63), 2**64 - 1])
    if pick == 3:
        return r.randrange(-1000, 100000)
    if pick == 4:
        return r.choice([0.5, -0.0, math.inf, -math.inf, math.nan, 1e308])
    if pick == 5:
        return "".join(
            r.choice("ab\x00\u00e9\ud7ff\U0001f600<>\"'") for _ in range(r.randrange(20))
        )
    if pick == 6:
        return r.choice(["x" * r.randrange(70_000), r.choice(KEYS), r.choice(KINDS)])
    if pick == 7:
        return r.randbytes(r.choice([0, 3, 100, 70_000]))
    if pick in (8, 9):
        return [value(r, depth + 1) for _ in range(r.randrange(6))]
    keys = [r.choice(KEYS) if r.random() < 0.8 else value(r, 3) for _ in range(r.randrange(6))]
    out = {}
    for k in keys:
        try:
            out[k] = value(r, depth + 1)
        except TypeError:  # an unhashable key
            pass
    return out


def payload(r: random.Random, kind: str) -> Any:
    if kind == "snapshot" and r.random() < 0.6:
        return {"i": r.choice([0, 1, -1, 5]), "n": r.choice([1, 2, 0]), "d": value(r, 2)}
    if kind.startswith("rc-") and r.random() < 0.6:
        return {k: value(r, 2) for k in r.sample(["aid", "id", "text", "key", "x", "y"], 3)}
    return value(r, 1)


def frame(r: random.Random, role: str, epoch: int, seq: int) -> bytes | str:
    """One frame a broken or hostile client might send."""
    pick = r.randrange(10)
    if pick <= 3:  # events, often nearly right
        n = r.choice([1, 1, 2, 3, 600])
        evs = []
        for i in range(n):
            kind = r.choice(KINDS)
            s = seq + 1 + i if r.random() < 0.8 else value(r, 3)
            ts = r.randrange(2**40) if r.random() < 0.9 else value(r, 3)
            evs.append([s, kind, ts, payload(r, kind)])
            if r.random() < 0.05:
                evs[-1] = value(r, 2)  # not an event at all
        m: dict = {"t": "ev", "e": epoch if r.random() < 0.8 else value(r, 3), "ev": evs}
        if r.random() < 0.2:
            m["src"] = value(r, 3)
        return msgpack.packb(m, use_bin_type=True)
    if pick == 4:
        m = {"t": "ctl", "op": r.choice(sorted(CONTROL_OPS) + ["x"])}
        m.update(
            {k: value(r, 2) for k in r.sample(["code", "msg", "hint", "delay_ms", "epoch"], 2)}
        )
        return msgpack.packb(m, use_bin_type=True)
    if pick == 5:
        m = {"t": r.choice(["ack", "bye", "hello", "welcome", "ev", None, 7])}
        m.update({r.choice(KEYS): value(r, 1) for _ in range(r.randrange(4))})
        return msgpack.packb(m, use_bin_type=True)
    if pick == 6:
        return msgpack.packb(value(r), use_bin_type=True)
    if pick == 7:
        return r.randbytes(r.randrange(1, 64))
    if pick == 8:
        return "text"
    return msgpack.packb({"t": "ack", "seq": value(r, 3)}, use_bin_type=True)


async def fuzz_one(url: str, r: random.Random) -> tuple[int | None, list]:
    """One connection: a valid hello, then random frames; (close code or None, frames got)."""
    sid = new_sid()
    role = r.choice(["visitor", "agent"])
    got: list = []
    async with open_websocket_url(url, max_message_size=4 * 2**20) as ws:
        try:
            await ws.send_message(hello(sid, role))
            with trio.move_on_after(5):
                got.append(decode_frame(await ws.get_message()))  # the welcome
            epoch = getattr(got[0], "epoch", 1) if got else 1
            seq = 0
            for _ in range(r.randrange(1, 8)):
                f = frame(r, role, epoch, seq)
                await ws.send_message(f)
                seq += 1
            with trio.move_on_after(0.5):
                while True:
                    got.append(decode_frame(await ws.get_message()))
        except ConnectionClosed as exc:
            return exc.reason.code, got
    return None, got


async def test_random_frames_never_break_the_gateway(nats_server, gateways_factory):
    g = gateways_factory(nats_server.url)
    # Every connection is a new session from one address: lift the admission limits.
    lifted = ["--new-per-address", "1000000/minute", "--new-rate", "1e6", "--new-burst", "1e6"]
    url = g.start("gw-a", lifted)
    closes: dict[int | None, int] = {}
    async with streaming_beside(g):
        for i in range(CONNECTIONS):
            r = random.Random(f"{SEED}/{i}")
            code, got = await fuzz_one(url, r)
            assert code is None or code in ALLOWED_CLOSES, (f"seed {SEED}/{i}", code, got[-3:])
            for f in got:
                if getattr(f, "op", None) == "error":
                    assert isinstance(f.code, str) and f.code, (f"seed {SEED}/{i}", f)
            closes[code] = closes.get(code, 0) + 1
    log = g.log("gw-a")
    assert "connection_failed" not in log and "Traceback" not in log, log[-4000:]
    # The hunt reached past the first check: some connections were refused, some stayed.
    assert len(closes) >= 3, closes
