"""Remote control, sans-I/O: which agent the visitor let act on the page, and the screen
that keeps every other agent's input off it.

The visitor grants and revokes with its own events (`rc-grant {"aid"}`, `rc-revoke
{"aid"}`); the gateway that takes them writes the holder into the session metadata
(`SessionMeta.control`, the authority) and tells every gateway of the session at once on
`cb.<sid>.ctl` (`CtlOp.CONTROL`). An agent's connection keeps what it last heard
(`ControlView`) and screens its agent's input events (`screen`): an input from an agent
that does not hold the grant is stored as `rc-refused` (its seq kept, since numbering is
gap-free, its payload dropped), so it never reaches the visitor. The snippet ignores input
without a live grant as well (docs/browser.md): two locks, one on each side.

The grant ends when the visitor revokes or refuses, says bye or ends the session, when a
new page starts without the session's stored state (a new epoch: that page never granted),
and when the holder says bye.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .codec import Close, Event, ProtocolError
from .session_store import SessionMeta

REQUEST = "rc-request"  # agent: asks the visitor for control
GRANT = "rc-grant"  # visitor: {"aid"} may act on the page
REVOKE = "rc-revoke"  # visitor: {"aid"} may not (any more): a refusal or a revoke
INPUTS = frozenset({"rc-click", "rc-scroll", "rc-text", "rc-key"})  # agent: act on the real page
DRAW = "draw"  # agent: a freehand stroke on the visitor's overlay (no grant needed)
REFUSED = "rc-refused"  # written by the gateway in place of a refused input

VISITOR_KINDS = frozenset({GRANT, REVOKE})
AGENT_KINDS = frozenset({REQUEST, DRAW}) | INPUTS
MAX_AID = 64  # agent ids are 13 characters ("a" + 12 hex); room for other schemes


@dataclass(frozen=True, slots=True)
class GrantChange:
    """What the visitor's events decided: `holder` is the agent that may act, None: nobody."""

    holder: str | None


def _aid(ev: Event) -> str:
    p = ev.payload
    aid = p.get("aid") if isinstance(p, dict) else None
    if not isinstance(aid, str) or not 0 < len(aid) <= MAX_AID:
        raise ProtocolError(
            "bad_shape", f"{ev.kind} needs {{'aid': agent id}} (seq {ev.seq})", Close.BAD_FRAME
        )
    return aid


def visitor_change(events: Sequence[Event], holder: str | None) -> GrantChange | None:
    """The grant after a visitor's batch, given the `holder` before it; None when the batch
    changes nothing. The last grant or revoke wins; a revoke of an agent that does not hold
    the grant (a refusal of a request) leaves the holder as it was. Raises bad_shape (4000)
    for a grant or revoke without an agent id."""
    after = holder
    for ev in events:
        if ev.kind == GRANT:
            after = _aid(ev)
        elif ev.kind == REVOKE:
            aid = _aid(ev)
            if after == aid:
                after = None
    return None if after == holder else GrantChange(after)


def released(holder: str | None, leaving: str) -> GrantChange | None:
    """An agent said bye: the grant ends if it held it."""
    return GrantChange(None) if holder is not None and holder == leaving else None


def write(meta: SessionMeta, change: GrantChange) -> None:
    """The compare-and-set change for the visitor's decision: it is the newest word."""
    meta.control = change.holder


def release(meta: SessionMeta, aid: str) -> None:
    """The compare-and-set change for an agent's bye: only a grant it holds ends (the
    visitor may have granted another agent since)."""
    if meta.control == aid:
        meta.control = None


@dataclass(frozen=True, slots=True)
class Screened:
    """An agent's batch after the screen: `refused` inputs were replaced by REFUSED."""

    events: list[Event]
    refused: int


def screen(events: list[Event], aid: str, holder: str | None) -> Screened:
    """Keep `aid`'s inputs only while it holds the grant; everything else passes as it is."""
    if holder == aid or not any(ev.kind in INPUTS for ev in events):
        return Screened(events, 0)
    out, refused = [], 0
    for ev in events:
        if ev.kind in INPUTS:
            out.append(Event(ev.seq, REFUSED, ev.ts, {"kind": ev.kind}))
            refused += 1
        else:
            out.append(ev)
    return Screened(out, refused)


NOT_GRANTED = "not_granted"  # the code of the `ctl` `refused` an agent gets


def refusal_note(refused: int) -> str:
    return f"{refused} control event(s) refused: the visitor has not granted you control"
