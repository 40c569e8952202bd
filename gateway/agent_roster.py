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

A killed gateway runs no bookkeeping, so its agents are never marked. Each join therefore
records its host (`SessionMeta.hosts`: the gateway process's registry instance), and a
reader that has the registry (`LiveGateways`, the router's) counts an agent whose host is
no longer registered as away until that connection's token expires, exactly as if it had
been marked. Gateways read without the registry: there such an agent stays present (a
visitor's new page reads its tail) until the session's entry expires.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from .session_store import AgentHost, SessionMeta

# Gateways' clocks may differ: the one that forgets an agent may run ahead of the one that
# minted its resume token. An away agent is gone this long after its token expired.
AWAY_GRACE = 300.0
# A join this recent when the registry was read is not judged by it: its gateway may not
# have written its first entry yet (it does just after it starts serving), and its clock may
# run ahead of the reader's. A killed gateway's entry is gone within the registry's TTL
# (10 s), so its agents read as away from then on.
JOIN_MARGIN = 3.0


@dataclass(frozen=True, slots=True)
class LiveGateways:
    """The gateway registry as one reader saw it: the instances of the processes registered
    then (gateway/membership.py) and when it was read (Unix seconds)."""

    instances: frozenset[str]
    read_at: float


@dataclass(frozen=True, slots=True)
class AgentConnection:
    """One agent connection's join, kept for its bookkeeping at the end: its agent id and
    the host its join recorded (when it joined, until when its token lets it resume)."""

    aid: str
    host: AgentHost

    def dropped(self, now: float) -> Callable[[SessionMeta], None]:
        """The compare-and-set change for this connection ending without a bye."""
        return lambda meta: mark_away(
            meta,
            self.aid,
            joined_at=self.host.joined_at,
            resumable_until=self.host.resumable_until,
            now=now,
        )


def join(meta: SessionMeta, aid: str, joined_at: float, host: AgentHost | None = None) -> None:
    """An agent (new, or resuming) joined at `joined_at` on `host` (None: not recorded);
    agents gone by then are forgotten."""
    forget_gone(meta, joined_at)
    meta.agents[aid] = joined_at
    meta.away.pop(aid, None)
    if host is not None:
        meta.hosts[aid] = host
    else:
        meta.hosts.pop(aid, None)


def left(meta: SessionMeta, aid: str) -> None:
    """The agent said bye: it will not resume."""
    meta.agents.pop(aid, None)
    meta.away.pop(aid, None)
    meta.hosts.pop(aid, None)


def mark_away(
    meta: SessionMeta, aid: str, *, joined_at: float, resumable_until: float, now: float
) -> None:
    """The connection that joined at `joined_at` dropped without a bye; its agent may come
    back until `resumable_until`. Nothing happens when a newer connection of the agent has
    joined since, or the agent has left."""
    forget_gone(meta, now)
    if meta.agents.get(aid) == joined_at:
        meta.away[aid] = resumable_until


def away_until(meta: SessionMeta, aid: str, live: LiveGateways | None = None) -> float:
    """Until when the agent may resume, if its latest connection is gone: marked away by its
    gateway, or (judged with `live`) made on a gateway process no longer registered. `inf`:
    connected, as far as this reader can tell."""
    until = meta.away.get(aid)
    if until is not None:
        return until
    host = meta.hosts.get(aid)
    if (
        live is not None
        and host is not None
        and host.joined_at == meta.agents.get(aid)  # the host of the latest join
        and host.joined_at <= live.read_at - JOIN_MARGIN
        and host.instance not in live.instances
    ):
        return host.resumable_until
    return math.inf


def gone(meta: SessionMeta, aid: str, now: float, live: LiveGateways | None = None) -> bool:
    return away_until(meta, aid, live) + AWAY_GRACE <= now


def present(meta: SessionMeta, now: float, live: LiveGateways | None = None) -> dict[str, float]:
    """The agents that are connected or may still resume: agent id -> when it joined."""
    return {aid: at for aid, at in meta.agents.items() if not gone(meta, aid, now, live)}


def away(meta: SessionMeta, now: float, live: LiveGateways | None = None) -> dict[str, float]:
    """The present agents whose connection is gone: agent id -> until when it may resume."""
    out = {}
    for aid in meta.agents:
        until = away_until(meta, aid, live)
        if until != math.inf and until + AWAY_GRACE > now:
            out[aid] = until
    return out


def forget_gone(meta: SessionMeta, now: float) -> None:
    """Drop the agents that can no longer resume, with what the metadata keeps of them."""
    for aid in [a for a in meta.away if gone(meta, a, now) or a not in meta.agents]:
        meta.away.pop(aid)
        if meta.agents.pop(aid, None) is not None:
            meta.durable.pop(aid, None)
    for aid in [a for a in meta.hosts if a not in meta.agents]:
        meta.hosts.pop(aid)
