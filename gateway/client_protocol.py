"""The client side of wire protocol v1, sans-I/O (in the style of h11): no sockets, no clock.

`ClientProtocol` is one client (a visitor or an agent) across all its connections. The shell
that owns the socket tells it what happened and sends what it returns:

    url = p.connect_url()                     # where to connect next, with sid (and rt)
    ... WebSocket open ...
    send(p.hello())                           # the first frame, a resume when it has an rt
    for each message: for h in p.receive(data, now): ...   # Welcomed, Acked, Delivery, ...
    for frame in p.frames_to_send(): send(frame)            # new events only, O(new)
    ... connection over ...
    decision = p.connection_lost(close_code, reason, now)   # Reconnect | Fatal | Stopped
    # or p.handshake_refused(status, retry_after, now) / p.connect_failed(now)
    sleep(decision.delay); connect to decision.url

It keeps what a client keeps across connections (docs/protocol.md, "Resume rules"): the
sequencer with every unacked event, the resume token, the last event delivered per stream,
the URL list and its round-robin position, the backoff. Both the trio reference client
(`gateway/client.py`) and the load generator (`loadtest/fastclient.py`) are shells over it.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import structlog

from .backoff import Backoff
from .codec import (
    MAX_EVENT_BYTES,
    MAX_EVENTS_PER_BATCH,
    MAX_FRAME_BYTES,
    Ack,
    Bye,
    Close,
    Control,
    Event,
    Events,
    Frame,
    Hello,
    ProtocolError,
    Resume,
    Welcome,
    decode_frame,
    encode_frame,
    payload_size,
)
from .sequencer import Sequencer

log = structlog.get_logger("gateway.client")

# Close codes after which reconnecting cannot help.
FATAL_CLOSE = frozenset(
    {
        Close.UNAUTHORIZED,
        Close.BAD_FRAME,
        Close.PROTOCOL,
        Close.UNSUPPORTED_VERSION,
        Close.REPLACED,
        Close.SESSION_ENDED,
        Close.SESSION_FULL,
        Close.UNSUPPORTED_DATA,
        Close.TOO_BIG,
    }
)

SNAPSHOT_CHUNK = MAX_EVENT_BYTES - 1024  # room for the {"i", "n", "d"} envelope
FRAME_BUDGET = MAX_FRAME_BYTES // 2  # estimated bytes per events frame, well under the limit
# A frame of this many events needs no size estimate: each payload is at most
# MAX_EVENT_BYTES (the gateway refuses more), so together they stay under FRAME_BUDGET.
FEW_EVENTS = FRAME_BUDGET // (MAX_EVENT_BYTES + 1024)
WELCOME_TIMEOUT = 30.0  # seconds a shell waits for `welcome` before giving the connection up
DEFAULT_RETRY_AFTER = 1.0  # a refusal without a usable Retry-After

_REFUSED_REASON = re.compile(r"retry_after=(\d+(?:\.\d+)?)")


class ClientError(Exception):
    """The session cannot go on: a fatal close code, or a gateway that broke the protocol."""

    def __init__(self, code: str, message: str, close_code: int | None = None):
        super().__init__(f"{code}: {message} (close {close_code})")
        self.code = code
        self.message = message
        self.close_code = close_code


@dataclass
class ClientStats:
    connects: int = 0
    resumes: int = 0
    duplicates_dropped: int = 0
    gaps: int = 0  # events that skipped ahead: a gateway bug if ever non-zero
    # Refused handshakes (429/503, close 4009) by the admission lane that refused them: the
    # gateway admits a handshake without a resume token (`rt` in its URL) in the new-session
    # lane, one with a resume token in the resume lane (a drain's moves have their own budget).
    rejected_new: int = 0
    rejected_resume: int = 0
    reconnect_notices: int = 0
    resume_times: list[float] = field(default_factory=list)
    welcomes: list[float] = field(default_factory=list)  # when each welcome arrived (clock)

    @property
    def rejected(self) -> int:
        """Refused handshakes in both lanes."""
        return self.rejected_new + self.rejected_resume


# ---- what `receive` reports ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Welcomed:
    """The handshake is done: the connection carries events now."""

    welcome: Welcome
    resumed: bool  # this hello carried a resume token (and, for an agent, kept its id)
    epoch_restarted: bool  # visitor: the gateway started a new epoch; unacked events abandoned
    identity_restarted: bool  # agent: a new agent id; own numbering and delivery start over
    abandoned: int  # unacked events dropped by a restart
    resend: int  # unacked events that the next `frames_to_send` resends


@dataclass(frozen=True, slots=True)
class Acked:
    seq: int  # the cumulative ack
    freed: int  # events it released from the resend buffer (0 for a repeat)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One `ev` frame, after duplicate dropping: what the application gets, in order."""

    src: str | None  # None: the visitor's events; else the agent id that sent them
    epoch: int
    events: list[Event]  # may be empty when every event was a duplicate
    duplicates: int
    gaps: int
    received: float  # the `now` the frame was fed with


@dataclass(frozen=True, slots=True)
class ReconnectNotice:
    """The gateway drains: come back after `delay` seconds to `url`, and resume."""

    control: Control
    delay: float
    url: str  # hint[0], or the next URL of the list


@dataclass(frozen=True, slots=True)
class SnapshotRequested:
    control: Control


@dataclass(frozen=True, slots=True)
class DeliveryReset:
    """The agent's resume point is gone: delivery starts again at a snapshot."""

    control: Control


@dataclass(frozen=True, slots=True)
class ServerError:
    """An `error` control frame; the close that follows says whether to retry."""

    control: Control
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class AgentPresence:
    """To the visitor: an agent `joined` or `left`."""

    control: Control
    joined: bool
    aid: str


@dataclass(frozen=True, slots=True)
class VisitorPresence:
    """To an agent: the visitor is `live`, `away` or `left` (gateway/presence.py)."""

    control: Control
    state: str


ControlHappening = (
    ReconnectNotice
    | SnapshotRequested
    | DeliveryReset
    | ServerError
    | AgentPresence
    | VisitorPresence
)
Happening = Welcomed | Acked | Delivery | ControlHappening


# ---- what to do when a connection ends --------------------------------------------------------


class RetryCause(enum.Enum):
    NOTICE = "notice"  # a drain's reconnect notice: exactly its delay, no backoff
    DROPPED = "dropped"  # closed or dropped without a notice: backoff
    REFUSED = "refused"  # 429/503 (or 4009): backoff, never sooner than Retry-After
    CONNECT_FAILED = "connect_failed"  # no connection, no welcome in time: backoff


@dataclass(frozen=True, slots=True)
class Reconnect:
    delay: float  # seconds to wait first
    url: str  # where to go (the handshake URL: `connect_url()` gives it with sid and rt)
    cause: RetryCause


@dataclass(frozen=True, slots=True)
class Fatal:
    error: ClientError


@dataclass(frozen=True, slots=True)
class Stopped:
    """The client was closed: do not reconnect."""


Decision = Reconnect | Fatal | Stopped


class Phase(enum.Enum):
    IDLE = "idle"  # no connection
    HANDSHAKE = "handshake"  # hello sent, waiting for welcome
    OPEN = "open"  # welcome received: events flow


class ClientProtocol:
    """One client's protocol state across connections. See the module's docstring."""

    def __init__(
        self,
        urls: list[str] | str,
        sid: str,
        token: str,
        role: str,
        *,
        max_unacked: int = 20_000,
        backoff: Backoff | None = None,
        sequencer: Sequencer | None = None,
    ) -> None:
        if role not in ("visitor", "agent"):
            raise ValueError(f"role must be 'visitor' or 'agent', not {role!r}")
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        if not self.urls:
            raise ValueError("at least one gateway URL is needed")
        self.sid, self.token, self.role = sid, token, role
        self.seq = sequencer or Sequencer(epoch=0, max_unacked=max_unacked)
        self.backoff = backoff or Backoff()
        self.stats = ClientStats()
        self.welcome: Welcome | None = None
        self.rt: str | None = None
        self.gateway: str | None = None
        self.last_v: tuple[int, int] | None = None  # agent: last visitor event delivered
        self.last_a: dict[str, int] = {}  # visitor: last event delivered per agent
        self.phase = Phase.IDLE
        self.closed = False  # the application said stop: no new events out, no reconnect
        self._sent_upto = 0  # highest seq handed out by frames_to_send on this connection
        self._url_index = 0
        self._next_url: str | None = None  # a reconnect notice's hint
        self._notice: ReconnectNotice | None = None  # received on this connection
        self._error: ServerError | None = None  # received on this connection
        self._down_since: float | None = None

    # ---- connecting ----------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.phase is Phase.OPEN

    def next_url(self) -> str:
        """The gateway URL of the next attempt: a notice's hint, else the list in turn."""
        if self._next_url:
            return self._next_url
        return self.urls[self._url_index % len(self.urls)]

    def connect_url(self) -> str:
        """Start an attempt: its handshake URL (admission reads sid and rt from it). A
        notice's hint is used by this one attempt only."""
        url = handshake_url(self.next_url(), self.sid, self.rt)
        self._next_url = None
        return url

    def hello(self) -> bytes:
        """The socket is open: the first frame. Resumes when a welcome gave a resume token."""
        if self.closed:
            raise RuntimeError("the client is closed")
        self._notice = self._error = None
        self.phase = Phase.HANDSHAKE
        resume = None
        if self.rt is not None:
            if self.role == "visitor":
                recv: Any = dict(self.last_a)
            else:
                recv = list(self.last_v) if self.last_v else None
            resume = Resume(rt=self.rt, epoch=self.seq.epoch, recv=recv)
        return encode_frame(Hello(role=self.role, sid=self.sid, token=self.token, resume=resume))

    # ---- receiving -----------------------------------------------------------------------

    def receive(self, data: bytes, now: float) -> list[Happening]:
        """One WebSocket message from the gateway (validated with the codec)."""
        try:
            frame = decode_frame(data)
        except ProtocolError as exc:
            raise ClientError(exc.code, f"gateway sent a bad frame: {exc.message}") from exc
        return self.receive_frame(frame, now)

    def receive_frame(self, frame: Frame, now: float) -> list[Happening]:
        """One decoded frame from the gateway; raises ClientError if it breaks the protocol."""
        if isinstance(frame, Events):
            if self.phase is not Phase.OPEN:
                raise ClientError("unexpected_frame", "events before welcome")
            return [self._deliver(frame, now)]
        if isinstance(frame, Ack):
            if self.phase is not Phase.OPEN:
                raise ClientError("unexpected_frame", "ack before welcome")
            try:
                freed = self.seq.ack(frame.seq)
            except ProtocolError as exc:
                raise ClientError(exc.code, exc.message, None) from exc
            return [Acked(frame.seq, freed)]
        if isinstance(frame, Control):
            return [self._control(frame)]
        if isinstance(frame, Welcome):
            if self.phase is not Phase.HANDSHAKE:
                raise ClientError("unexpected_frame", "welcome outside the handshake")
            return [self._welcome(frame, now)]
        raise ClientError("unexpected_frame", f"a gateway does not send {type(frame).__name__}")

    def _welcome(self, frame: Welcome, now: float) -> Welcomed:
        resumed = self.rt is not None
        identity_restarted = epoch_restarted = False
        abandoned = 0
        if self.role == "agent" and self.welcome is not None and frame.aid != self.welcome.aid:
            # The resume was not accepted (e.g. its token expired): a new agent identity,
            # so number from 1 again and take delivery from where the gateway starts it.
            log.warning("agent_identity_restarted", old=self.welcome.aid, new=frame.aid)
            abandoned = self.seq.next_seq - 1 - self.seq.acked
            self.seq.restart(0)
            self.last_v = None
            resumed = False
            identity_restarted = True
        if self.role == "visitor" and frame.epoch != self.seq.epoch:
            if self.seq.epoch != 0:
                abandoned = self.seq.next_seq - 1 - self.seq.acked
                log.warning(
                    "epoch_restarted", old=self.seq.epoch, new=frame.epoch, dropped=abandoned
                )
                self.seq.restart(frame.epoch)
                epoch_restarted = True
            else:  # the first welcome: events queued before it take its epoch
                self.seq.epoch = frame.epoch
        if self.role == "agent" and isinstance(frame.delivered, list) and self.last_v is None:
            self.last_v = (frame.delivered[0], frame.delivered[1])
        try:
            self.seq.resume(frame.durable)
        except ProtocolError as exc:
            raise ClientError(exc.code, f"bad frame or resume: {exc.message}") from exc
        self.welcome = frame
        self.gateway = frame.gw
        self.rt = frame.rt
        self._sent_upto = frame.durable
        self.phase = Phase.OPEN
        st = self.stats
        st.connects += 1
        st.welcomes.append(now)
        if resumed:
            st.resumes += 1
            if self._down_since is not None:
                st.resume_times.append(now - self._down_since)
        self._down_since = None
        self.backoff.reset()
        return Welcomed(
            welcome=frame,
            resumed=resumed,
            epoch_restarted=epoch_restarted,
            identity_restarted=identity_restarted,
            abandoned=abandoned,
            resend=self.seq.next_seq - 1 - self.seq.acked,
        )

    def receive_ack(self, seq: int) -> int:
        """`receive_frame` of an `ack` frame for a shell that decodes frames itself: the
        number of events the ack freed from the resend buffer."""
        if self.phase is not Phase.OPEN:
            raise ClientError("unexpected_frame", "ack before welcome")
        try:
            return self.seq.ack(seq)
        except ProtocolError as exc:
            raise ClientError(exc.code, exc.message, None) from exc

    def receive_items(self, epoch: int, items: list, src: str | None, now: float) -> list:
        """`receive_frame` of an `ev` frame for a shell that decodes frames itself (the load
        generator): `items` are the frame's events as decoded, [seq, kind, ts, payload] each.
        Returns what the application gets, exactly the events of the `Delivery` that
        `receive_frame` would return (the same list when nothing was dropped), with the same
        bookkeeping. The usual frame, one event that continues its stream, costs no objects;
        anything else goes through `_deliver`."""
        if self.phase is not Phase.OPEN:
            raise ClientError("unexpected_frame", "events before welcome")
        if len(items) == 1:
            seq = items[0][0]
            if src is None:
                last = self.last_v
                if last is None or (epoch == last[0] and seq == last[1] + 1):
                    self.last_v = (epoch, seq)
                    return items
            else:
                last_seq = self.last_a.get(src)  # None: the first event from this agent
                if (seq > 0) if last_seq is None else (seq == last_seq + 1):
                    self.last_a[src] = seq
                    return items
        return self._deliver(Events(epoch, [Event(*i) for i in items], src), now).events

    def _deliver(self, frame: Events, now: float) -> Delivery:
        kept: list[Event] = []
        dups = gaps = 0
        src = frame.src
        if src is None:
            last = self.last_v
            epoch = frame.epoch
            for ev in frame.events:
                if last is not None:
                    if epoch < last[0] or (epoch == last[0] and ev.seq <= last[1]):
                        dups += 1
                        continue
                    if epoch == last[0] and ev.seq != last[1] + 1:
                        gaps += 1
                last = (epoch, ev.seq)
                kept.append(ev)
            self.last_v = last
        else:
            known = src in self.last_a
            last_seq = self.last_a.get(src, 0)
            for ev in frame.events:
                if ev.seq <= last_seq:
                    dups += 1
                    continue
                if known and ev.seq != last_seq + 1:
                    gaps += 1
                last_seq = ev.seq
                known = True
                kept.append(ev)
            if kept:
                self.last_a[src] = last_seq
        self.stats.duplicates_dropped += dups
        self.stats.gaps += gaps
        return Delivery(src, frame.epoch, kept, dups, gaps, now)

    def _control(self, ctl: Control) -> ControlHappening:
        if ctl.op == "reconnect":
            self.stats.reconnect_notices += 1
            if ctl.hint:
                self._next_url = ctl.hint[0]
            else:
                self._url_index += 1
            notice = ReconnectNotice(ctl, max(0.0, (ctl.delay_ms or 0) / 1000), self.next_url())
            self._notice = notice
            return notice
        if ctl.op == "reset":
            self.last_v = None
            return DeliveryReset(ctl)
        if ctl.op == "snapshot":
            return SnapshotRequested(ctl)
        if ctl.op == "error":
            err = ServerError(ctl, ctl.code or "error", ctl.msg or "")
            self._error = err
            return err
        if ctl.op == "visitor":
            return VisitorPresence(ctl, ctl.msg or "")
        return AgentPresence(ctl, ctl.op == "joined", ctl.msg or "")

    # ---- sending -------------------------------------------------------------------------

    def frames_to_send(self) -> list[bytes]:
        """`ev` frames with the events numbered since the last call (after a welcome: the
        unacked ones to resend first). Costs O(new events), not O(unacked)."""
        if self.phase is not Phase.OPEN or self.closed:
            return []
        pending = self.seq.since(self._sent_upto)
        if not pending:
            return []
        self._sent_upto = pending[-1].seq
        epoch = self.seq.epoch
        if len(pending) <= FEW_EVENTS:  # under the frame limit whatever their payloads
            return [encode_frame(Events(epoch=epoch, events=pending))]
        frames = []
        chunk: list[Event] = []
        size = 0
        for ev in pending:
            est = 32 + payload_size(ev.payload)
            if chunk and (len(chunk) >= MAX_EVENTS_PER_BATCH or size + est > FRAME_BUDGET):
                frames.append(encode_frame(Events(epoch=epoch, events=chunk)))
                chunk, size = [], 0
            chunk.append(ev)
            size += est
        frames.append(encode_frame(Events(epoch=epoch, events=chunk)))
        return frames

    def take_unsent(self) -> list[Event]:
        """The events the next `frames_to_send` would frame, unencoded, for a shell that
        encodes its events itself (the load generator keeps each event's bytes): those
        numbered since the last call (after a welcome: the unacked ones to resend first)."""
        if self.phase is not Phase.OPEN or self.closed:
            return []
        seq = self.seq
        if seq.next_seq == self._sent_upto + 2 and seq.acked <= self._sent_upto:
            ev = seq.newest()  # one new event, the usual case
            self._sent_upto = ev.seq
            return [ev]
        pending = seq.since(self._sent_upto)
        if pending:
            self._sent_upto = pending[-1].seq
        return pending

    def has_unsent(self) -> bool:
        return (
            self.phase is Phase.OPEN and not self.closed and self.seq.next_seq - 1 > self._sent_upto
        )

    def close(self) -> None:
        """The application is done: nothing new is sent, and no connection follows this one.
        The shell says `bye()` on an open connection, then closes it."""
        self.closed = True

    @staticmethod
    def bye() -> bytes:
        return encode_frame(Bye("client closed"))

    # ---- a connection ended --------------------------------------------------------------

    def connection_lost(self, code: int | None, reason: str, now: float) -> Decision:
        """The connection ended: `code` is the close code (None: no close frame, 1006)."""
        err, notice = self._error, self._notice
        self._end(now)
        if self.closed:
            return Stopped()
        if code in FATAL_CLOSE:
            if err is not None:
                return Fatal(ClientError(err.code, err.message, code))
            return Fatal(ClientError("closed", reason or "", code))
        if notice is not None:  # a drain: its own delay, to its hint (already chosen)
            return Reconnect(notice.delay, self.next_url(), RetryCause.NOTICE)
        if code == Close.REFUSED:  # `?refusal=close`: the reason carries the Retry-After
            m = _REFUSED_REASON.search(reason or "")
            return self._refused(float(m.group(1)) if m else DEFAULT_RETRY_AFTER)
        return self._backoff(0.0, RetryCause.DROPPED)

    def handshake_refused(self, status: int, retry_after: float | None, now: float) -> Decision:
        """The handshake got an HTTP status instead of 101 (429 or 503: Retry-After)."""
        self._end(now)
        if self.closed:
            return Stopped()
        return self._refused(DEFAULT_RETRY_AFTER if retry_after is None else retry_after)

    def connect_failed(self, now: float) -> Decision:
        """No connection, a broken handshake, or no welcome in time."""
        self._end(now)
        if self.closed:
            return Stopped()
        return self._backoff(0.0, RetryCause.CONNECT_FAILED)

    def _refused(self, floor: float) -> Reconnect:
        if self.rt:  # the handshake URL carried a resume token (`handshake_url`)
            self.stats.rejected_resume += 1
        else:
            self.stats.rejected_new += 1
        return self._backoff(floor, RetryCause.REFUSED)

    def _backoff(self, floor: float, cause: RetryCause) -> Reconnect:
        self._url_index += 1
        return Reconnect(self.backoff.next_delay(floor), self.next_url(), cause)

    def _end(self, now: float) -> None:
        if self.phase is Phase.OPEN:
            self._down_since = now
        self.phase = Phase.IDLE
        self._notice = self._error = None


def handshake_url(url: str, sid: str, rt: str | None) -> str:
    """The gateway admits at the handshake: name the session, and prove a resume."""
    parts = urlsplit(url)
    q = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("sid", "rt")]
    q.append(("sid", sid))
    if rt:
        q.append(("rt", rt))
    return urlunsplit(parts._replace(path=parts.path or "/", query=urlencode(q)))


def retry_after(value: bytes | str | None) -> float | None:
    """A Retry-After header in seconds (None when missing or not a number)."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
