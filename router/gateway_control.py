"""Operator actions on gateways: the status table and the drain request.

`format_status` and `combine_replies` are plain functions; `request_drain` is an asyncio
coroutine (nats-py) for `NatsBridge.call`, used by `python -m router drain` and by the API's
drain endpoint. Each process of a gateway answers on `membership.DRAIN_SUBJECT` with
`{"ok": true, "gateway": id, "state": "draining", "connections": n}`: a gateway of several
workers answers once per worker, so the request gathers every answer and sums them. The ids
are the ones `python -m router status` lists: a gateway id drains all its workers, a
worker id ("gw-1.w0") drains that worker alone.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from gateway.membership import GATEWAY_ID_RE, GatewayInfo, drain_subject

GATHER = 0.5  # seconds to wait for more answers when how many will come is not known


class NoAnswer(Exception):
    """No gateway with this id answered the drain request."""


class BadReply(Exception):
    """A gateway answered, but not with the expected JSON object."""


def valid_gateway_id(gateway_id: str) -> bool:
    """A gateway id, or a worker's ("gw-1.w0"): subject tokens without '*', '>' or spaces."""
    return GATEWAY_ID_RE.fullmatch(gateway_id) is not None


def parse_reply(gateway_id: str, data: bytes) -> dict[str, Any]:
    try:
        reply = json.loads(data)
    except ValueError:
        raise BadReply(f"gateway {gateway_id} answered {data[:200]!r}") from None
    if not isinstance(reply, dict):
        raise BadReply(f"gateway {gateway_id} answered {reply!r}")
    return reply


def combine_replies(gateway_id: str, replies: list[dict[str, Any]]) -> dict[str, Any]:
    """One answer for the drain of `gateway_id` from each of its processes' answers: ok when
    every one is, the connections summed, and each worker's own answer under `workers`."""
    if not replies:
        raise NoAnswer(f"no gateway {gateway_id} answered")
    workers = sorted(
        (
            {
                "gateway": str(r.get("gateway", gateway_id)),
                "state": str(r.get("state", "")),
                "connections": int(r.get("connections", 0) or 0),
            }
            for r in replies
        ),
        key=lambda w: w["gateway"],
    )
    states = {w["state"] for w in workers}
    return {
        "ok": all(bool(r.get("ok")) for r in replies),
        "gateway": gateway_id,
        "state": states.pop() if len(states) == 1 else "mixed",
        "connections": sum(w["connections"] for w in workers),
        "workers": workers,
    }


async def request_drain(
    nc, gateway_id: str, timeout: float = 5.0, expect: int | None = None
) -> dict[str, Any]:
    """Ask every process of `gateway_id` to drain and gather their answers: until `expect`
    of them (the registered processes it names) have answered, or, when that is not known,
    `GATHER` seconds after the first; at most `timeout`."""
    if not valid_gateway_id(gateway_id):
        raise NoAnswer(f"no gateway {gateway_id} answered (not a valid gateway id)")
    loop = asyncio.get_running_loop()
    replies: list[dict[str, Any]] = []
    errors: list[Exception] = []
    done = asyncio.Event()

    async def on_msg(msg) -> None:
        if msg.headers and msg.headers.get("Status") == "503":  # no responders
            done.set()
            return
        try:
            replies.append(parse_reply(gateway_id, msg.data))
        except BadReply as exc:
            errors.append(exc)
        answered = len(replies) + len(errors)
        if expect is not None and answered >= expect:
            done.set()
        elif expect is None and answered == 1:
            loop.call_later(GATHER, done.set)

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=on_msg)
    try:
        await nc.publish(drain_subject(gateway_id), b"", reply=inbox)
        try:
            await asyncio.wait_for(done.wait(), timeout)
        except TimeoutError:
            pass  # whoever answered by now is the answer
    finally:
        await sub.unsubscribe()
    if errors and not replies:
        raise errors[0]
    return combine_replies(gateway_id, replies)


def _age(seconds: float) -> str:
    if seconds < 0:
        seconds = 0
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def format_status(gateways: list[GatewayInfo], now: float) -> str:
    """An aligned table: id, state, connections, load, url, age of the entry."""
    header = ("ID", "STATE", "CONNECTIONS", "LOAD", "URL", "AGE")
    rows = [header] + [
        (
            g.id,
            g.state,
            str(g.connections),
            f"{g.load:.2f}",
            g.url,
            _age(now - g.updated) if g.updated else "-",
        )
        for g in gateways
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    right = {2, 3, 5}  # numbers are right-aligned
    lines = []
    for r in rows:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    if not gateways:
        lines.append("(no gateways registered)")
    return "\n".join(lines)
