"""How a connection joins its session, and how an agent's receiver recovers: the I/O
around session.py's decisions (the metadata's compare-and-set, the stream's tail, where
each receiver starts, the welcome), in the order delivery relies on (G1): listening on the
session's subjects before any stream read, and nothing sent to the client before its welcome.

Functions of the `Connection` they set up: they run on its task, before its loop
(`Connection._serve`) starts, and `recover` whenever a receiver's resume point is gone.
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING

from . import agent_roster, metrics, session, session_store, streams
from .codec import AGENT_KINDS, Control, Welcome
from .delivery import Receiver
from .presence import VisitorState
from .reorder import ReorderBuffer
from .session_store import AgentHost

if TYPE_CHECKING:
    from .connection import Connection


async def join_visitor(
    conn: Connection, join: session.Join, stored: session_store.StoredMeta
) -> None:
    """A new epoch, or the same one resumed; the older visitor connection replaced; where
    each agent's events restart; the sender and the welcome, then what a resume missed."""
    ctx, cfg, sid = conn.ctx, conn.cfg, join.sid
    nc, stream = ctx.nc, cfg.stream.stream
    subject = streams.subject_v(sid)
    floor = 0
    if stored.raw is None:
        # No metadata (new session, or its KV entry expired): a new epoch must still be
        # above every epoch in the stream, or message ids and receivers' keys collide.
        tail = await streams.last_stored(nc, stream, subject)
        floor = tail.epoch if tail is not None else 0
    meta = await ctx.update(sid, lambda m: session.bump_visitor(m, join, floor), stored)
    resumed = session.visitor_resumed(join, meta)
    conn.epoch, conn.vgen = meta.epoch, meta.vgen
    conn.control = meta.control
    tail = await streams.last_stored(nc, stream, subject)
    durable = session.durable_prefix(tail.last_key if tail else None, meta.epoch)
    durable = durable if resumed else 0

    # One visitor per session: the newest generation takes over.
    old = ctx.visitors.get(sid)
    if old is not None and session.takeover_lost(old.vgen, conn.vgen):
        old.stop(session.REPLACED)
    ctx.visitors[sid] = conn
    ctx.fanout.add(streams.subject_ctl(sid), conn.on_ctl)
    takeover = session.SessionControl(session.CtlOp.TAKEOVER, vgen=conn.vgen)
    nc.publish(streams.subject_ctl(sid), takeover.encode())
    # A newer visitor that published its takeover before we subscribed is in the KV.
    now_meta = await ctx.load(sid)
    if now_meta is not None and session.takeover_lost(conn.vgen, now_meta.vgen):
        raise session.REPLACED
    session.refuse_ended(now_meta, None)  # ended before we listened for its "end"

    newest: dict[str, int] = {}
    agents = agent_roster.present(meta, time.time())  # not those that can no longer resume
    if not resumed:  # a new page: only what agents send from now on
        for aid in agents:
            last = await streams.last_stored(nc, stream, streams.subject_a(sid, aid))
            newest[aid] = last.last_key[1] if last is not None else 0
    starts = session.visitor_starts(agents, join, resumed, newest)
    delivery = conn.new_delivery("visitor")
    for aid, after in starts.items():
        delivery.receivers[aid] = agent_receiver(conn, aid, after + 1)
    delivery.on_new_sender = lambda aid: delivery.receivers.setdefault(
        aid, agent_receiver(conn, aid, 1)
    )
    ctx.fanout.add(streams.subject_a_all(sid), delivery.on_live)

    conn.start_sender(
        subject, epoch=conn.epoch, src=None, tail=tail, durable=durable, carried=meta.budget
    )
    conn.send(
        Welcome(
            gw=cfg.gateway_id,
            epoch=conn.epoch,
            rt=conn.resume_token(r="visitor", epoch=conn.epoch),
            durable=durable,
            delivered=starts,
        )
    )
    conn.accepted(resumed, durable=durable, epoch=conn.epoch)
    conn.announce(VisitorState.LIVE)
    if meta.snap_wanted:
        conn.send(Control(op="snapshot"))
    if resumed:
        for rcv in list(delivery.receivers.values()):
            await delivery.fill(rcv, conn.recover)


def agent_receiver(conn: Connection, aid: str, start: int) -> Receiver:
    buf = ReorderBuffer(session.AGENT_EPOCH, start, gap_timeout=conn.cfg.gap_timeout)
    return Receiver(streams.subject_a(conn.sid, aid), aid, buf)


# ---- the agent's join and its receiver's recovery ------------------------------------------


async def join_agent(
    conn: Connection, join: session.Join, stored: session_store.StoredMeta
) -> None:
    """The agent's id (kept on resume), where its delivery starts (its resume point, the
    latest snapshot, or a snapshot asked of the visitor), the welcome, then the fill."""
    ctx, cfg, sid = conn.ctx, conn.cfg, join.sid
    nc, stream = ctx.nc, cfg.stream.stream
    aid, resumed = session.agent_identity(join, "a" + secrets.token_hex(6))
    conn.aid = aid
    conn.allowed = AGENT_KINDS
    joined_at = time.time()
    host = AgentHost(cfg.gateway_id, ctx.instance, joined_at, joined_at + cfg.resume_ttl)
    meta = await ctx.update(sid, lambda m: session.add_agent(m, aid, joined_at, host), stored)
    conn.agent = agent_roster.AgentConnection(aid, host)
    subject = streams.subject_a(sid, aid)
    tail = await streams.last_stored(nc, stream, subject) if resumed else None
    durable = session.durable_prefix(tail.last_key if tail else None, session.AGENT_EPOCH)

    start = session.agent_start(join, resumed, meta)
    delivery = conn.new_delivery("agent")
    rcv = Receiver(streams.subject_v(sid), None, buffer_for(conn, start))
    delivery.receivers["v"] = rcv
    ctx.fanout.add(streams.subject_v(sid), delivery.on_live)  # before any stream read
    ctx.fanout.add(streams.subject_ctl(sid), conn.on_ctl)
    # No checkpoint from the listening above to the welcome: a live event or ctl message
    # must not reach the agent before its welcome (the client refuses that).
    conn.start_sender(subject, epoch=session.AGENT_EPOCH, src=aid, tail=tail, durable=durable)
    conn.send(
        Welcome(
            gw=cfg.gateway_id,
            epoch=meta.epoch,
            rt=conn.resume_token(r="agent", aid=aid),
            durable=durable,
            aid=aid,
            delivered=session.welcome_delivered(start),
        )
    )
    # After listening: a grant is either read or heard. The agent's frames are screened
    # only once this join returns, so its inputs never meet an unread grant.
    await conn.read_control()
    conn.accepted(resumed, durable=durable, aid=aid)
    joined = session.SessionControl(session.CtlOp.JOINED, aid=aid)
    nc.publish(streams.subject_ctl(sid), joined.encode())
    if isinstance(start, session.FromSnapshot):
        await delivery.fill(rcv, conn.recover, start.pointer.sseq)
    elif isinstance(start, session.FromResume):
        await delivery.fill(rcv, conn.recover)
    else:
        await request_snapshot(conn)
        await late_snapshot(conn, rcv)


def buffer_for(conn: Connection, start: session.AgentStart) -> ReorderBuffer | None:
    """The agent's reorder buffer for the visitor's events from `start`; None while it
    waits for a snapshot (the live path then starts it at the next part 0)."""
    gap = conn.cfg.gap_timeout
    if isinstance(start, session.FromResume):
        return ReorderBuffer(start.after[0], start.after[1] + 1, gap_timeout=gap)
    if isinstance(start, session.FromSnapshot):
        return ReorderBuffer(start.pointer.epoch, start.pointer.seq, gap_timeout=gap)
    return None


async def late_snapshot(conn: Connection, rcv: Receiver) -> bool:
    """A snapshot recorded between reading the metadata and subscribing was missed by
    the live path: start from it instead of waiting for the next one (True: started)."""
    meta = await conn.ctx.load(conn.sid)
    if rcv.buf is None and meta is not None and meta.snap is not None:
        rcv.buf = buffer_for(conn, session.FromSnapshot(meta.snap))
        await conn.delivery.fill(rcv, conn.recover, meta.snap.sseq)
        return True
    return False


# Looks at the metadata, one a second, for a snapshot recorded after the agent's own look
# (Connection._look_for_snapshot). Only a snapshot published before this gateway's SUB
# reached NATS can be missed by the live path, and its pointer is recorded within a few
# seconds of that (its publish ack, then a KV write); later looks would find nothing the
# live path does not, and would cost a KV read a second per waiting agent.
SNAPSHOT_LOOKS = 10


async def request_snapshot(conn: Connection) -> None:
    """Ask the visitor for a snapshot: in the metadata (a visitor that joins later sees it)
    and on the session's ctl subject (the visitor connected now hears it)."""
    conn.snapshot_looks = SNAPSHOT_LOOKS
    await conn.ctx.update(conn.sid, session.want_snapshot)
    ask = session.SessionControl(session.CtlOp.SNAPSHOT)
    conn.ctx.nc.publish(streams.subject_ctl(conn.sid), ask.encode())
    metrics.SNAPSHOT_REQUESTS.inc()


async def recover(conn: Connection, rcv: Receiver) -> None:
    """A receiver's resume point is gone from the stream. A visitor goes on from an agent's
    oldest kept event; an agent is told `reset` and restarts at the latest snapshot, or asks
    for one."""
    nc, stream = conn.ctx.nc, conn.cfg.stream.stream
    first = await streams.first_of(nc, stream, rcv.subject)
    if conn.role is session.Role.VISITOR:  # an agent's old events: go on from the oldest kept
        rcv.buf.reset(session.AGENT_EPOCH, first.first_key[1] if first else 1)
        await conn.delivery.fill(rcv, conn.recover)
        return
    conn.send(Control(op="reset", msg=session.RESET_NOTE))
    meta = await conn.ctx.load(conn.sid)
    start = session.agent_recovery(meta, first.sseq if first else None)
    rcv.buf = buffer_for(conn, start)
    if isinstance(start, session.FromSnapshot):
        await conn.delivery.fill(rcv, conn.recover, start.pointer.sseq)
    else:
        await request_snapshot(conn)
