"""What the agents' console lists, and how often the router reads it (sans-I/O).

`GET /v1/sessions` is polled by every open console (every 2 s, docs/browser.md), and each
read is one pass over the sessions bucket. `ListingCache` lets all of them share one pass a
second; this router's own creates and ends clear it, so its callers see their own changes
at once. `summaries` turns the metadata into the listing: newest first, bounded by `limit`.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway import agent_roster
from gateway.session_store import SessionMeta

from . import sessions
from .read_cache import ReadCache

LIST_TTL = 1.0  # seconds: half the console's 2 s poll, so a change shows within one poll


class ListingCache(ReadCache[list[tuple[str, SessionMeta]]]):
    """The latest read of the sessions bucket and when it was made."""

    def __init__(self, ttl: float = LIST_TTL) -> None:
        super().__init__(ttl)


@dataclass(frozen=True)
class Listed:
    """One row of the listing."""

    sid: str
    meta: SessionMeta
    joinable: bool  # its short code still lets an agent join (sessions.code_live)
    agents: int  # connected, or away and still able to resume (gateway/agent_roster.py)


def summaries(
    found: list[tuple[str, SessionMeta]],
    *,
    site: str | None,
    limit: int,
    now: float,
    code_ttl: float,
    live: agent_roster.LiveGateways | None = None,
) -> tuple[int, list[Listed]]:
    """(how many match, the newest `limit` of them) of the sessions that have not ended."""
    rows = [(sid, m) for sid, m in found if not m.ended and (site is None or m.site == site)]
    rows.sort(key=lambda item: (-item[1].created, item[0]))
    listed = [
        Listed(
            sid,
            m,
            joinable=bool(m.code) and sessions.code_live(m, m.code or "", now, code_ttl, live),
            agents=len(agent_roster.present(m, now, live)),
        )
        for sid, m in rows[:limit]
    ]
    return len(rows), listed
