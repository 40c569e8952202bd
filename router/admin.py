"""Operator actions on gateways: the status table and the drain request.

`format_status` is a plain function of the membership entries and the time; `request_drain`
is an asyncio coroutine (nats-py) for `NatsBridge.call`, used by `python -m router drain` and
by the API's drain endpoint. The gateway answers on `membership.DRAIN_SUBJECT` with
`{"ok": true, "gateway": id, "state": "draining", "connections": n}`.
"""

from __future__ import annotations

import json
import re
from typing import Any

import nats.errors

from gateway.membership import DRAIN_SUBJECT, GatewayInfo

GATEWAY_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


class NoAnswer(Exception):
    """No gateway with this id answered the drain request."""


class BadReply(Exception):
    """A gateway answered, but not with the expected JSON object."""


def valid_gateway_id(gateway_id: str) -> bool:
    """Ids that are one NATS subject token (no '.', '*', '>' or spaces)."""
    return GATEWAY_ID_RE.fullmatch(gateway_id) is not None


async def request_drain(nc, gateway_id: str, timeout: float = 5.0) -> dict[str, Any]:
    if not valid_gateway_id(gateway_id):
        raise NoAnswer(f"no gateway {gateway_id} answered (not a valid gateway id)")
    subject = DRAIN_SUBJECT.format(gateway_id=gateway_id)
    try:
        msg = await nc.request(subject, b"", timeout=timeout)
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
        raise NoAnswer(f"no gateway {gateway_id} answered") from None
    try:
        reply = json.loads(msg.data)
    except ValueError:
        raise BadReply(f"gateway {gateway_id} answered {msg.data[:200]!r}") from None
    if not isinstance(reply, dict):
        raise BadReply(f"gateway {gateway_id} answered {reply!r}")
    return reply


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
