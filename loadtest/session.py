"""One simulated co-browsing session: created through the API, a visitor that sends a snapshot
and then its event mix, agents that join at the snapshot and point back, every client
instrumented for the verifier."""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING

import trio

from gateway.client import Client, ClientError

from .api import ApiError
from .instrumented import LaneStats, RecordingSequencer
from .verifier import record_latency
from .workload import EventMix, payload, snapshot_bytes

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
        client = Client(urls, self.sid, token, role, rng=rng, on_control=self._on_control(name))
        client.stats = LaneStats().bind(client)
        direction = "v" if role == "visitor" else "a"

        def sender() -> str:
            if role == "visitor":
                return "visitor"
            return client.welcome.aid if client.welcome and client.welcome.aid else name

        def on_push(epoch: int, seq: int) -> None:
            h.verifier.sent(self.sid, direction, sender(), epoch, seq)

        def on_ack(epoch: int, seq: int) -> None:
            h.verifier.acked(self.sid, direction, sender(), epoch, seq)

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

        def on_acked_after(seconds: float) -> None:
            record_latency(h.ack_latency[direction], seconds)

        client.seq = RecordingSequencer(
            on_push,
            on_ack,
            on_restart,
            on_acked_after=on_acked_after,
            epoch=0,
            max_unacked=client.seq.max_unacked,
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

    async def _consume(self, name: str, client: Client, direction: str) -> None:
        h = self.h
        async for d in client.events:
            sent_at = d.payload.get("t") if isinstance(d.payload, dict) else None
            if not isinstance(sent_at, float):
                sent_at = d.ts / 1000
            # Only events sent after this receiver joined have a meaningful latency (a late
            # joiner starts with a snapshot sent before it came).
            latency = d.received - sent_at if sent_at >= self.joined_at.get(name, 0) else None
            sender = "visitor" if d.src is None else d.src
            h.delivered_total += 1
            h.verifier.delivered(self.sid, direction, sender, name, d.epoch, d.seq, latency)
            if direction == "v":
                h.timeline.on_delivered(d.received, latency)

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
            with trio.move_on_at(h.stop_at):
                async with trio.open_nursery() as senders:
                    senders.start_soon(self._visitor_loop)
                    for name, client in self.clients:
                        if client.role == "agent":
                            senders.start_soon(self._agent_loop, name, client)
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
        n.start_soon(self._consume, "visitor", self.visitor, "a")
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
            n.start_soon(self._consume, name, agent, "v")
            self.agents.append(agent)

    async def _send_snapshot(self) -> None:
        assert self.visitor is not None
        self.need_snapshot = False
        data = snapshot_bytes(self.mix.snapshot_size(), self.sid)
        parts = await self.visitor.send_snapshot(data)
        self.h.timeline.on_sent(time.time(), len(parts))

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

    def connected(self) -> bool:
        return self.ready and all(c.connected.is_set() for _, c in self.clients)
