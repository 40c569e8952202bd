"""Which agents a session has (sans-I/O): present, away, or gone for good.

`SessionMeta.agents` maps each agent id to when its latest connection joined; an agent stays
in it after its connection drops without a `bye`, since it may resume. It may resume only
until the resume token of that connection expires (`GatewayConfig.resume_ttl`, 24 h), so the
connection that drops records that time in `SessionMeta.away`. After it (and `AWAY_GRACE`),
the agent is gone: the listing no longer counts it, a visitor's new page no longer reads its
stream's tail (one NATS round trip per agent per page load), and the next write of the
metadata that has a clock forgets it.

Only the connection that made the agent's latest join may mark it away: a drained agent
usually resumes on another gateway before its old connection's bookkeeping lands, and that
late write must not mark a connected agent away. Join times are the generation: a resume
writes a new one.

Not covered: an agent whose gateway was killed (no bookkeeping ran) and which never came
back stays present; nothing refreshes a connected agent's entry, so nothing can tell it
from a live one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from .session_store import SessionMeta

# Gateways' clocks may differ: the one that forgets an agent may run ahead of the one that
# minted its resume token. An away agent is gone this long after its token expired.
AWAY_GRACE = 300.0


@dataclass(frozen=True, slots=True)
class AgentConnection:
    """One agent connection's join, kept for its bookkeeping at the end."""

    aid: str
    joined_at: float
    resumable_until: float  # its resume token expires then (within the join's own seconds)

    def dropped(self, now: float) -> Callable[[SessionMeta], None]:
        """The compare-and-set change for this connection ending without a bye."""
        return lambda meta: mark_away(
            meta,
            self.aid,
            joined_at=self.joined_at,
            resumable_until=self.resumable_until,
            now=now,
        )


def join(meta: SessionMeta, aid: str, joined_at: float) -> None:
    """An agent (new, or resuming) joined at `joined_at`; agents gone by then are forgotten."""
    forget_gone(meta, joined_at)
    meta.agents[aid] = joined_at
    meta.away.pop(aid, None)


def left(meta: SessionMeta, aid: str) -> None:
    """The agent said bye: it will not resume."""
    meta.agents.pop(aid, None)
    meta.away.pop(aid, None)


def mark_away(
    meta: SessionMeta, aid: str, *, joined_at: float, resumable_until: float, now: float
) -> None:
    """The connection that joined at `joined_at` dropped without a bye; its agent may come
    back until `resumable_until`. Nothing happens when a newer connection of the agent has
    joined since, or the agent has left."""
    forget_gone(meta, now)
    if meta.agents.get(aid) == joined_at:
        meta.away[aid] = resumable_until


def gone(meta: SessionMeta, aid: str, now: float) -> bool:
    return meta.away.get(aid, math.inf) + AWAY_GRACE <= now


def present(meta: SessionMeta, now: float) -> dict[str, float]:
    """The agents that are connected or may still resume: agent id -> when it joined."""
    return {aid: at for aid, at in meta.agents.items() if not gone(meta, aid, now)}


def away(meta: SessionMeta, now: float) -> dict[str, float]:
    """The present agents whose connection dropped: agent id -> until when it may resume."""
    return {
        aid: until
        for aid, until in meta.away.items()
        if aid in meta.agents and not gone(meta, aid, now)
    }


def forget_gone(meta: SessionMeta, now: float) -> None:
    """Drop the agents that can no longer resume, with what the metadata keeps of them."""
    for aid in [a for a in meta.away if gone(meta, a, now) or a not in meta.agents]:
        meta.away.pop(aid)
        if meta.agents.pop(aid, None) is not None:
            meta.durable.pop(aid, None)
