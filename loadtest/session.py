"""One simulated co-browsing session: created through the API, a visitor that sends a snapshot
and then its event mix, agents that join at the snapshot and point back, every client
instrumented for the verifier."""

from __future__ import annotations

import itertools
import random
import time
from typing import TYPE_CHECKING, Any

import trio

from gateway.client import Client, ClientError

from .api import ApiError
from .fastclient import FastClient
from .instrumented import RecordingSequencer
from .workload import EventMix, Packed, payload, payload_bytes, sent_time, snapshot_bytes

if TYPE_CHECKING:
    from .harness import Harness


class SimSession:
    def __init__(self, h: Harness, index: int, extra: bool = False) -> None:
        self.h = h
        self.index = index
        self.extra = extra
        self.mix = EventMix(h.opts.rate, random.Random(f"{h.opts.seed}:{index}"))
        self.sid = ""
        self.visitor: Client | None = None
        self.agents: list[Client] = []
        self.clients: list[tuple[str, Client]] = []
        self.notices: dict[str, list[float]] = {}
        self.joined_at: dict[str, float] = {}
        self.ready = False
        self.failed: str | None = None
        self.need_snapshot = False
        self.counter = 0

    # -- clients --

    def _client(self, urls: list[str], token: str, role: str, name: str) -> Client:
        h = self.h
        rng = random.Random(f"{h.opts.seed}:{self.index}:{name}")
        self.notices[name] = []
        direction = "v" if role == "visitor" else "a"
        client = self._new_client(urls, token, role, name, rng, direction)

        def sender() -> str:
            return client.welcome.aid if client.welcome and client.welcome.aid else name

        if role == "visitor":
            stream = h.verifier.stream(self.sid, direction, "visitor")
        else:  # an agent's name is its id, known at its first welcome, and may change
            stream = SenderStream(h.verifier, self.sid, direction, sender)

        def on_restart(old: int, new: int, abandoned: int) -> None:
            if role == "visitor" and old != 0:
                # A new page: agent events for the old one are not replayed to it, and the
                # agents should see a fresh snapshot.
                h.epoch_restarts += 1
                h.verifier.skip_acked(self.sid, "a", "visitor")
                self.need_snapshot = True
            elif role == "agent":  # a new agent identity: delivery restarts at a snapshot
                h.epoch_restarts += 1
                h.verifier.reset(self.sid, "v", name)

        client.seq = RecordingSequencer(
            stream.pushed,
            stream.ack,
            on_restart,
            ack_us=h.ack_latency[direction].us,
            epoch=0,
            max_unacked=client.seq.max_unacked,
            **self._clocks(client),
        )
        self.clients.append((name, client))
        return client

    def _on_control(self, name: str):
        def on_control(ctl) -> None:
            if ctl.op == "reconnect":
                self.notices[name].append(time.time())
            elif ctl.op == "snapshot" and name == "visitor":
                self.need_snapshot = True
            elif ctl.op == "reset" and name != "visitor":
                self.h.verifier.reset(self.sid, "v", name)

        return on_control

    async def _run_client(self, name: str, client: Client, task_status=trio.TASK_STATUS_IGNORED):
        try:
            await client.run(task_status=task_status)
        except ClientError as exc:
            if not self.h.closing.is_set():
                self.h.client_errors.append(f"{self.sid} {name}: {exc}")

    def _delivered(
        self, name: str, direction: str, src: str | None, epoch: int, evs, received: float
    ) -> None:
        """A receiver's application got these events (after the client's duplicate dropping)."""
        h = self.h
        joined = self.joined_at.get(name, 0)
        sender = "visitor" if src is None else src
        delivered, on_delivered = h.verifier.delivered, h.timeline.on_delivered
        for ev in evs:
            sent_at = sent_time(ev.payload, ev.ts)
            # Only events sent after this receiver joined have a meaningful latency (a late
            # joiner starts with a snapshot sent before it came).
            latency = received - sent_at if sent_at >= joined else None
            delivered(self.sid, direction, sender, name, epoch, ev.seq, latency)
            if direction == "v":
                on_delivered(received, latency)
        h.delivered_total += len(evs)

    # -- the session's life --

    async def main(self, deadline: float) -> None:
        """Set up (bounded by `deadline`, trio time), stream until the run stops sending,
        then wait for the harness to close everything."""
        h = self.h
        async with trio.open_nursery() as n:
            try:
                with trio.fail_at(deadline):
                    await self._setup(n)
            except (trio.TooSlowError, ApiError, ClientError, RuntimeError, KeyError) as exc:
                self.failed = f"{type(exc).__name__}: {exc}"
                if not self.extra and not h.stop_sending.is_set():
                    h.client_errors.append(f"session {self.index} did not start: {self.failed}")
                n.cancel_scope.cancel()
                return
            self.ready = True
            await self._stream()
            await h.closing.wait()
            for _, client in self.clients:
                client.close()
            with trio.move_on_after(5):
                while any(c.connected.is_set() for _, c in self.clients):  # noqa: ASYNC110 (polls state owned elsewhere)
                    await trio.sleep(0.1)
            n.cancel_scope.cancel()

    async def _setup(self, n: trio.Nursery) -> None:
        h = self.h
        created = await h.api.create_session()
        self.sid = created["session_id"]
        h.verifier.expect(self.sid, "a", "visitor", (0, 0))
        self.visitor = self._client(
            created["gateways"], created["visitor_token"], "visitor", "visitor"
        )
        self.joined_at["visitor"] = time.time()
        await n.start(self._run_client, "visitor", self.visitor)
        self._receive(n, "visitor", self.visitor, "a")
        await self._send_snapshot()
        await self.visitor.wait_acked(self.visitor.seq.next_seq - 1, timeout=60)
        for k in range(h.opts.agents_per_session):
            name = f"agent-{k}"
            looked = await h.api.lookup(created["short_code"])
            agent = self._client(looked["gateways"], looked["agent_token"], "agent", name)
            self.joined_at[name] = time.time()
            await n.start(self._run_client, name, agent)
            delivered = agent.welcome.delivered if agent.welcome else None
            after = tuple(delivered) if isinstance(delivered, list) else None
            h.verifier.expect(self.sid, "v", name, after)
            self._receive(n, name, agent, "v")
            self.agents.append(agent)

    async def _send_snapshot(self) -> None:
        assert self.visitor is not None
        self.need_snapshot = False
        data = snapshot_bytes(self.mix.snapshot_size(), self.sid)
        parts = await self.visitor.send_snapshot(data)
        self.h.timeline.on_sent(time.time(), len(parts))

    def record_clients(self, verifier) -> None:
        """Each client's own figures into the verifier's totals, with how long each reconnect
        notice took to become a welcome (the next welcome after it)."""
        for name, c in self.clients:
            st = c.stats
            notice_waits = []
            for t in self.notices.get(name, []):
                later = [w for w in st.welcomes if w > t]
                if later:
                    notice_waits.append(min(later) - t)
            verifier.record_client(
                connects=st.connects,
                resumes=st.resumes,
                reconnect_notices=st.reconnect_notices,
                rejected_new=st.rejected_new,
                rejected_resume=st.rejected_resume,
                duplicates_dropped=st.duplicates_dropped,
                gaps=st.gaps,
                resume_times=st.resume_times,
                notice_times=notice_waits,
            )

    def connected(self) -> bool:
        return self.ready and all(c.connected.is_set() for _, c in self.clients)

    # -- what the two clients do differently --

    def _new_client(self, urls, token: str, role: str, name: str, rng, direction: str):
        raise NotImplementedError

    def _clocks(self, client) -> dict:
        """The clocks of the client's sequencer (push and ack times); time.time by default."""
        return {}

    def _receive(self, n: trio.Nursery, name: str, client, direction: str) -> None:
        """Deliveries from `client` go to `_delivered` from now on."""
        raise NotImplementedError

    async def _stream(self) -> None:
        """Play the session's event mix until the run stops sending."""
        raise NotImplementedError


class ReferenceSession(SimSession):
    """Every client is the trio reference client (`gateway.client.Client`), used as an
    application would: a task per client reads its `events` channel, a task per sender
    sleeps until each planned event and awaits `send`."""

    def _new_client(self, urls, token: str, role: str, name: str, rng, direction: str):
        return Client(urls, self.sid, token, role, rng=rng, on_control=self._on_control(name))

    def _receive(self, n: trio.Nursery, name: str, client: Client, direction: str) -> None:
        n.start_soon(self._consume, name, client, direction)

    async def _consume(self, name: str, client: Client, direction: str) -> None:
        async for d in client.events:
            self._delivered(name, direction, d.src, d.epoch, (d,), d.received)

    async def _stream(self) -> None:
        with trio.move_on_at(self.h.stop_at):
            async with trio.open_nursery() as senders:
                senders.start_soon(self._visitor_loop)
                for name, client in self.clients:
                    if client.role == "agent":
                        senders.start_soon(self._agent_loop, name, client)

    async def _visitor_loop(self) -> None:
        h, visitor = self.h, self.visitor
        assert visitor is not None
        start = trio.current_time()
        for ev in self.mix.visitor(max(0.0, h.stop_at - start)):
            await trio.sleep_until(start + ev.at)
            if self.need_snapshot:
                await self._send_snapshot()
            now = time.time()
            self.counter += 1
            await visitor.send(ev.kind, payload(ev.kind, ev.size, self.counter, now))
            h.timeline.on_sent(now)

    async def _agent_loop(self, name: str, agent: Client) -> None:
        start = trio.current_time()
        n = 0
        for ev in self.mix.agent(max(0.0, self.h.stop_at - start)):
            await trio.sleep_until(start + ev.at)
            n += 1
            await agent.send(ev.kind, payload(ev.kind, ev.size, n, time.time()))


class FastSession(SimSession):
    """Every client is a `FastClient` on the harness's reactor: deliveries arrive as calls,
    and the planned events are in the reactor's schedule, so one wake sends every event that is
    due across all sessions (docs/loadtest.md, "The load generator")."""

    def _new_client(self, urls, token: str, role: str, name: str, rng, direction: str):
        receives = "a" if role == "visitor" else "v"  # the direction this client receives
        return FastClient(
            self.h.reactor,
            urls,
            self.sid,
            token,
            role,
            rng=rng,
            on_control=self._on_control(name),
            on_delivery=self._delivery(name, receives),
        )

    def _clocks(self, client) -> dict:
        # A push happens at its turn's clock (the payload's "t"); an ack when its frame came.
        reactor = self.h.reactor
        return {"clock": lambda: reactor.now, "ack_clock": lambda: client.received}

    def _delivery(self, name: str, direction: str):
        """What a receiver does with each frame's events: write down, for the verifier's
        check of their stream, each one's seq, send time (the payload's "t") and arrival (the
        frame's), checked in bulk (`Inbox`, flushed by the harness every second)."""
        h = self.h
        verifier = h.verifier
        timeline = h.timeline if direction == "v" else None
        inboxes: dict[str | None, Any] = {}

        def on_delivery(src: str | None, epoch: int, evs: list, received: float) -> None:
            # evs: [seq, kind, ts, payload] each (decoded lists, or Event tuples)
            box = inboxes.get(src)
            if box is None:
                sender = "visitor" if src is None else src
                joined = self.joined_at.get(name, 0)
                box = inboxes[src] = verifier.inbox(
                    self.sid, direction, sender, name, joined, timeline
                )
            n = len(evs)
            h.delivered_total += n
            if timeline is not None:
                timeline.add_deliveries(received, n)
            if epoch != box.epoch:
                box.at_epoch(epoch)
            add_seq, add_sent, add_received = box.add_seq, box.add_sent, box.add_received
            for ev in evs:
                add_seq(ev[0])
                add_sent(sent_time(ev[3], ev[2]))
                add_received(received)
            if len(box.seqs) >= 512:
                box.flush()

        return on_delivery

    def _receive(self, n: trio.Nursery, name: str, client, direction: str) -> None:
        pass  # on_delivery is called by the reactor

    async def _stream(self) -> None:
        h = self.h
        start = trio.current_time()
        seconds = max(0.0, h.stop_at - start)
        visitor = self.visitor
        assert visitor is not None
        mix, plans = self.mix, h.reactor.plans
        plans.add(start, mix.visitor_tuples(seconds), self._visitor_event)
        for agent in self.agents:
            plans.add(start, mix.agent_tuples(seconds), self._agent_event(agent))
        await trio.sleep_until(h.stop_at)

    def _visitor_event(self, kind: str, size: int) -> bool:
        visitor, h = self.visitor, self.h
        now = h.reactor.now
        if self.need_snapshot and visitor.seq.can_push():
            self.need_snapshot = False
            data = snapshot_bytes(self.mix.snapshot_size(), self.sid)
            h.timeline.on_sent(now, len(visitor.push_snapshot(data)))
        if visitor.push(kind, Packed(payload_bytes(kind, size, self.counter + 1, now))) is None:
            return False  # the resend buffer is full: try again shortly
        self.counter += 1
        h.timeline.on_sent(now)
        return True

    def _agent_event(self, agent: FastClient):
        count = itertools.count(1)

        def fire(kind: str, size: int) -> bool:
            data = payload_bytes(kind, size, next(count), self.h.reactor.now)
            return agent.push(kind, Packed(data)) is not None

        return fire


class SenderStream:
    """A client's stream in the verifier, counted into directly (`pushed`, `acked`: the
    sequencer's hooks) and looked up again only when the sender's name changes (an agent's
    id: at its first welcome, or a new identity)."""

    __slots__ = ("verifier", "session", "direction", "name", "_key", "_stream")

    def __init__(self, verifier, session: str, direction: str, name) -> None:
        self.verifier, self.session, self.direction, self.name = verifier, session, direction, name
        self._key: str | None = None
        self._stream = None

    def stream(self):
        key = self.name()
        if key != self._key:
            self._key = key
            self._stream = self.verifier.stream(self.session, self.direction, key)
        return self._stream

    def pushed(self, epoch: int, seq: int) -> None:
        self.stream().sent += 1

    def ack(self, epoch: int, seq: int) -> None:
        self.stream().ack(epoch, seq)


SESSIONS = {"reference": ReferenceSession, "fast": FastSession}
