"""The session protocol, sans-I/O: who joins, in which epoch, and where delivery starts.

A connection's shell (connection.py, joining.py) does the I/O: it reads and compare-and-sets the
session's metadata in the KV bucket, reads the stream's tail, and sends frames. Everything it
decides along the way is decided here, by plain functions of the hello, the metadata, what
the stream holds and `now`, so each rule can be tested exhaustively and alone:

- `check_hello`: the join token, and the resume token that may waive its expiry;
  `refuse_ended`: an ended session stays ended for as long as any of its tokens is valid;
- the visitor's join: `bump_visitor` (the compare-and-set: a new epoch unless this is a real
  resume; every visitor connection takes a new generation, the newest owns the session),
  `visitor_resumed`, `durable_prefix` (what the sender need not resend), `visitor_starts`
  (after which seq each agent's events are delivered to this visitor);
- the agent's join: `agent_identity`, `agent_start` (resume, a snapshot, or wait for one)
  and `agent_recovery` when the stream no longer holds the resume point;
- snapshots: `record_snapshot` (the newest pointer wins, with the visitor's page) and
  `want_snapshot`;
- control messages between gateways on `cb.<sid>.ctl`: `SessionControl` and `on_control`;
  `CONTROL` carries the remote-control grant (gateway/remote_control.py) to agents' gateways.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import agent_roster, tokens
from .codec import Close, Hello, ProtocolError
from .page_info import PageInfo
from .presence import VisitorClose, VisitorState
from .session_store import AgentHost, EndedRecord, SessionMeta, SnapshotPointer

AGENT_EPOCH = 0  # an agent's events are numbered 1.. for as long as its agent id lives

Key = tuple[int, int]  # (epoch, seq): the order of one sender's events


class Role(enum.Enum):
    VISITOR = "visitor"
    AGENT = "agent"


@dataclass(frozen=True)
class ResumeClaims:
    """What a valid, unexpired resume token says: the visitor's epoch or the agent's id."""

    epoch: int | None = None
    aid: str | None = None


@dataclass(frozen=True)
class Join:
    """A hello whose tokens checked out."""

    role: Role
    sid: str
    hello: Hello
    claims: ResumeClaims | None  # None: a fresh connect (no resume, or a stale resume token)


# ---- the hello ------------------------------------------------------------------------------


def _resume_claims(hello: Hello, keyring: tokens.Keyring, now: float) -> ResumeClaims | None:
    """Claims of a valid resume token; None when there is none or it expired; raises when it
    is forged or not this session's or this role's."""
    if hello.resume is None:
        return None
    try:
        claims = tokens.verify(keyring, hello.resume.rt, sid=hello.sid, role="resume", now=now)
    except tokens.TokenError as e:
        if e.code == "token_expired":
            return None  # an expired resume token is not an error: the hello is a fresh connect
        raise ProtocolError(
            "bad_resume", f"resume token refused: {e.message}", Close.UNAUTHORIZED
        ) from None
    if claims.get("r") != hello.role:
        raise ProtocolError("bad_resume", "resume token is for another role", Close.UNAUTHORIZED)
    epoch, aid = claims.get("epoch"), claims.get("aid")
    return ResumeClaims(
        epoch=epoch if type(epoch) is int else None,
        aid=aid if isinstance(aid, str) else None,
    )


def check_hello(hello: Hello, keyring: tokens.Keyring, now: float) -> Join:
    """The join token must be this session's and this role's, signed by a key we hold. Its
    expiry is waived while a valid resume token comes with it: a session under way outlives
    the join token it started with. A forged resume token is refused even then."""
    try:
        try:
            tokens.verify(keyring, hello.token, sid=hello.sid, role=hello.role, now=now)
        except tokens.TokenError as e:
            if e.code != "token_expired" or _resume_claims(hello, keyring, now) is None:
                raise
            tokens.verify(
                keyring, hello.token, sid=hello.sid, role=hello.role, now=now, allow_expired=True
            )
    except tokens.TokenError as e:
        raise ProtocolError(e.code, e.message, Close.UNAUTHORIZED) from None
    return Join(Role(hello.role), hello.sid, hello, _resume_claims(hello, keyring, now))


def refuse_ended(meta: SessionMeta | None, ended: EndedRecord | None) -> None:
    """Refuse (4004) a hello, of either role, with or without a resume token, for a session
    that has an ended record or whose metadata says ended.

    The ended record decides, not the metadata: the metadata expires after the stream's max
    age (6 h by default) while a resume token lives 24 h, so "no metadata" is not "not
    ended". No metadata and no ended record is a session that may go on: a new session's
    first hello (gateway-only sessions have no metadata until then), or one idle past the
    max age. None of these was ended, since an end leaves a record that outlives every token
    minted before it (`session_store.ended_ttl`)."""
    if ended is not None or (meta is not None and meta.ended):
        raise ProtocolError("session_ended", "this session has ended", Close.SESSION_ENDED)


# ---- the visitor ----------------------------------------------------------------------------


def _claimed_epoch(join: Join) -> int | None:
    """The epoch a visitor asks to resume: its token's and its sequencer's must agree."""
    resume = join.hello.resume
    if join.claims is None or resume is None or join.claims.epoch != resume.epoch:
        return None
    return resume.epoch


def bump_visitor(meta: SessionMeta, join: Join, stream_floor: int) -> None:
    """The visitor's compare-and-set change: keep the epoch only for a resume of the current
    one, else start a new epoch above every epoch in the metadata and in the stream
    (`stream_floor`: the epoch of the newest stored visitor event when the metadata was
    gone); and take a new generation, so the newest visitor connection owns the session.
    Refused (4004) when the session was ended since the hello was checked: the end's
    `{"op":"end"}` may have gone out before this connection listens for it."""
    refuse_ended(meta, None)
    epoch = _claimed_epoch(join)
    if epoch is None or meta.epoch != epoch:
        meta.epoch = max(meta.epoch, stream_floor) + 1
        meta.durable.pop("v", None)
        meta.control = None  # a page without the session's stored state never granted
    meta.vgen += 1


def visitor_resumed(join: Join, meta: SessionMeta) -> bool:
    """After the update: is this visitor continuing its epoch (and resending), or starting a
    new one at seq 1?"""
    epoch = _claimed_epoch(join)
    return epoch is not None and meta.epoch == epoch


def durable_prefix(newest: Key | None, epoch: int) -> int:
    """The highest seq of `epoch` that is stored with every seq before it: what the sender
    need not resend. Each sender's subject is written as a chain (every publish names the
    stream position of the message before it), so nothing stored can sit behind a hole and
    the newest stored event of the epoch is the answer; 0 when it is of another epoch."""
    if newest is None or newest[0] != epoch:
        return 0
    return newest[1]


def visitor_starts(
    agents: Mapping[str, Any],
    join: Join,
    resumed: bool,
    newest_agent_seq: Mapping[str, int],
) -> dict[str, int]:
    """For each agent of the session, the seq after which its events go to this visitor.

    A resuming visitor says what it has (`resume.recv`); an agent it does not mention
    restarts from its first event. A new page (not resumed) gets only what agents send from
    now on: pointer moves meant for the old page are not replayed (`newest_agent_seq`, read
    from the stream, is only needed then)."""
    recv = (join.hello.resume.recv or {}) if resumed and join.hello.resume else {}
    starts = {}
    for aid in agents:
        if aid in recv:
            starts[aid] = recv[aid]
        elif resumed:
            starts[aid] = 0
        else:
            starts[aid] = newest_agent_seq.get(aid, 0)
    return starts


def takeover_lost(my_vgen: int, other_vgen: int) -> bool:
    """One visitor connection per session: the newest generation wins."""
    return other_vgen > my_vgen


REPLACED = ProtocolError("replaced", "a newer visitor connection took over", Close.REPLACED)


# ---- the agent -------------------------------------------------------------------------------


def add_agent(meta: SessionMeta, aid: str, joined_at: float, host: AgentHost | None = None) -> None:
    """The agent's compare-and-set change; refused (4004) like `bump_visitor` when the
    session was ended since the hello was checked."""
    refuse_ended(meta, None)
    agent_roster.join(meta, aid, joined_at, host)


def agent_identity(join: Join, new_aid: str) -> tuple[str, bool]:
    """(aid, resumed): a valid resume token keeps the agent's id and its numbering."""
    if join.claims is not None and join.claims.aid is not None:
        return join.claims.aid, True
    return new_aid, False


@dataclass(frozen=True)
class FromResume:
    """Deliver the visitor's events after `after`, the last one the agent has."""

    after: Key


@dataclass(frozen=True)
class FromSnapshot:
    """Deliver from the snapshot's part 0 on, reading the stream from its position."""

    pointer: SnapshotPointer


@dataclass(frozen=True)
class AwaitSnapshot:
    """No snapshot to start from: ask the visitor for one and start at the next part 0."""


AgentStart = FromResume | FromSnapshot | AwaitSnapshot


def agent_start(join: Join, resumed: bool, meta: SessionMeta) -> AgentStart:
    recv = join.hello.resume.recv if resumed and join.hello.resume else None
    if recv is not None:
        return FromResume((recv[0], recv[1]))
    if meta.snap is not None:
        return FromSnapshot(meta.snap)
    return AwaitSnapshot()


def welcome_delivered(start: AgentStart) -> list[int] | None:
    """`welcome.delivered` for an agent: the key its delivery continues after."""
    if isinstance(start, FromResume):
        return list(start.after)
    if isinstance(start, FromSnapshot):
        return [start.pointer.epoch, start.pointer.seq - 1]
    return None


def agent_recovery(
    meta: SessionMeta | None, first_sseq: int | None
) -> FromSnapshot | AwaitSnapshot:
    """The agent's resume point is gone from the stream: restart at the latest snapshot if
    the stream still holds it, else ask the visitor for a new one."""
    if meta is not None and meta.snap is not None and first_sseq is not None:
        if first_sseq <= meta.snap.sseq:
            return FromSnapshot(meta.snap)
    return AwaitSnapshot()


RESET_NOTE = "resume point no longer retained; a snapshot follows"


# ---- snapshots ------------------------------------------------------------------------------


def record_snapshot(
    meta: SessionMeta, pointer: SnapshotPointer, page: PageInfo | None = None
) -> None:
    """A stored part 0: the newest pointer by key wins, and nobody waits for one any more.
    `page` (the sender's latest `nav`) goes with the newest pointer; a new epoch without one
    forgets the old epoch's page rather than list a page the visitor has left."""
    if meta.snap is None or meta.snap.key <= pointer.key:
        if page is not None:
            meta.page = page
        elif meta.snap is None or meta.snap.epoch != pointer.epoch:
            meta.page = None
        meta.snap = pointer
    meta.snap_wanted = False


def want_snapshot(meta: SessionMeta) -> None:
    meta.snap_wanted = True


# ---- control messages between gateways ---------------------------------------------------------


class CtlOp(enum.Enum):
    TAKEOVER = "takeover"  # a newer visitor connection (vgen) owns the session
    SNAPSHOT = "snapshot"  # an agent waits for a snapshot
    JOINED = "joined"  # an agent connected (aid)
    LEFT = "left"  # an agent said bye (aid)
    END = "end"  # the session was ended through the API
    VISITOR_LIVE = "visitor_live"  # the visitor connection vgen is up (gateway/presence.py)
    VISITOR_AWAY = "visitor_away"  # it dropped without a bye
    VISITOR_LEFT = "visitor_left"  # it said bye
    CONTROL = "control"  # the remote-control holder changed (aid; none: nobody)


PRESENCE_NEWS = {
    CtlOp.VISITOR_LIVE: VisitorState.LIVE,
    CtlOp.VISITOR_AWAY: VisitorState.AWAY,
    CtlOp.VISITOR_LEFT: VisitorState.LEFT,
}
PRESENCE_OPS = {state: op for op, state in PRESENCE_NEWS.items()}


@dataclass(frozen=True)
class SessionControl:
    """One JSON message on core-NATS `cb.<sid>.ctl` (not stored)."""

    op: CtlOp
    vgen: int | None = None
    aid: str | None = None

    def encode(self) -> bytes:
        m: dict[str, Any] = {"op": self.op.value}
        if self.vgen is not None:
            m["vgen"] = self.vgen
        if self.aid is not None:
            m["aid"] = self.aid
        return json.dumps(m, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> SessionControl | None:
        """None for anything malformed: another gateway's bug must not end a connection."""
        try:
            m = json.loads(data)
            op = CtlOp(m["op"])
        except (ValueError, KeyError, TypeError):
            return None
        vgen, aid = m.get("vgen"), m.get("aid")
        return cls(op, vgen if type(vgen) is int else None, aid if isinstance(aid, str) else None)


@dataclass(frozen=True)
class EndConnection:
    error: ProtocolError


@dataclass(frozen=True)
class TellVisitor:
    """Pass the news on to the visitor as a `ctl` frame (`msg` is the agent id)."""

    op: str
    aid: str | None
    announce: bool = False  # also say `visitor_live` again: the agent that joined learns it


@dataclass(frozen=True)
class TellAgent:
    """Visitor presence news for the agent (its PresenceView drops stale and repeated news)."""

    state: VisitorState
    vgen: int


@dataclass(frozen=True)
class ControlHolder:
    """The agent now holding remote control (None: nobody): an agent's connection screens
    its inputs by it, the visitor's compares its next grant or revoke with it."""

    aid: str | None


ControlAction = EndConnection | TellVisitor | TellAgent | ControlHolder | None

SESSION_ENDED = ProtocolError("session_ended", "the session was ended", Close.SESSION_ENDED)


def visitor_close(error: ProtocolError | None, said_bye: bool) -> VisitorClose:
    """How a visitor connection ended, for the presence it announces (gateway/presence.py)."""
    if error is not None and error.code == REPLACED.code:
        return VisitorClose.REPLACED
    if error is not None and error.code == SESSION_ENDED.code:
        return VisitorClose.ENDED
    if said_bye and error is None:
        return VisitorClose.BYE
    return VisitorClose.DROPPED


def on_control(role: Role, vgen: int, ctl: SessionControl) -> ControlAction:
    """What a connection does with a control message; None: nothing."""
    if ctl.op is CtlOp.END:
        return EndConnection(SESSION_ENDED)
    if ctl.op is CtlOp.CONTROL:  # both roles: the visitor's connection compares its next change
        return ControlHolder(ctl.aid)
    news = PRESENCE_NEWS.get(ctl.op)
    if role is not Role.VISITOR:
        if news is None or ctl.vgen is None:
            return None
        return TellAgent(news, ctl.vgen)
    if news is not None:
        return None  # the visitor's own announcements are for agents
    if ctl.op is CtlOp.TAKEOVER:
        if ctl.vgen is not None and takeover_lost(vgen, ctl.vgen):
            return EndConnection(REPLACED)
        return None
    return TellVisitor(ctl.op.value, ctl.aid, announce=ctl.op is CtlOp.JOINED)
