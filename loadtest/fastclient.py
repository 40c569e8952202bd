"""The load generator's client: the protocol core of the reference client (`ClientProtocol`)
on raw non-blocking sockets, all of them behind one epoll per process.

Why not the reference client: it costs 250-600 us of CPU per event on this machine (a trio
reader task, a memory channel and wsproto per received frame, a sender task woken per
event), so on 2 cores a harness built on it runs out of CPU before the gateways do.

Here one trio task (`Reactor.run`) owns a private `select.epoll`. Each *turn* it fires the
sessions' planned events that are due (`Schedule`) and other timers (`TimerWheel`), writes
each socket that has something to send once (a turn's events of one connection leave in one
`send()`), then reads every ready socket once. Under load a turn starts `GAP` (2 ms) after
the previous one, so the wakes per second are bounded by the gap rather than by the frames
arriving; the thread waits in its own epoll or a sleep, and lets trio run the harness's
other tasks after idle turns and every `YIELD_EVERY` under load (`Reactor._wait`). Received
bytes carry the kernel's arrival time (SO_TIMESTAMPNS), which is what latencies are measured
from: the gap and the reactor's own work are not in them.

A `FastClient` has the attributes the harness reads on a reference `Client` (`seq`, `stats`,
`welcome`, `gateway`, `rt`, `connected`, `run`, `send_snapshot`, `wait_acked`, `close`), and
calls `on_delivery(src, epoch, events, received)` with each frame's events after duplicate
dropping (decoded lists [seq, kind, ts, payload], or `Event`s) instead of feeding a channel. `ws://` only: TLS gateways need `--client reference`.
"""

from __future__ import annotations

import errno
import heapq
import itertools
import math
import random
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import trio

from gateway.backoff import Backoff
from gateway.client_protocol import (
    FRAME_BUDGET,
    SNAPSHOT_CHUNK,
    WELCOME_TIMEOUT,
    Acked,
    ClientError,
    ClientProtocol,
    ClientStats,
    Decision,
    Delivery,
    Fatal,
    Reconnect,
    Welcomed,
    retry_after,
)
from gateway.codec import (
    MAX_EVENTS_PER_BATCH,
    Ack,
    Control,
    Event,
    Events,
    Frame,
    ProtocolError,
    decode_frame,
)
from gateway.sequencer import ResendBufferFull

from . import wsframes as wsf
from .workload import Packed

GAP = 0.002  # seconds from one turn's start to the next under load
IDLE_MAX = 0.005  # the longest the reactor blocks the thread while it has nothing to do
YIELD_EVERY = 0.01  # under load, let trio run the harness's other tasks this often
CONNECT_TIMEOUT = 5.0  # TCP connect and the HTTP upgrade, as the reference client
CLOSE_TIMEOUT = 2.0  # after bye: wait this long for the gateway's close
# One read per ready socket, into one buffer of the reactor: a recv() of more than 128 KiB
# makes glibc mmap and munmap a fresh buffer each time (three syscalls and a page fault,
# 25-35 us here), and a read of this size takes a burst of frames or a snapshot part at once.
RECV_BYTES = 256 * 1024
# The kernel's arrival time of received bytes (Linux; CPython has no name for it).
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TS_SPACE = socket.CMSG_SPACE(16)
_TIMESPEC = struct.Struct("qq")

_EPOLLIN, _EPOLLOUT = select.EPOLLIN, select.EPOLLOUT
_EPOLLERR = select.EPOLLERR | select.EPOLLHUP


_pack = msgpack.Packer(use_bin_type=True).pack  # one packer, reused (packb makes one a call)
_unpackb = msgpack.unpackb


_tuple_new = tuple.__new__


class WireEvent(Event):
    """An event with its encoding kept beside it: `wire` is the msgpack of
    [seq, kind, ts, payload], made once when the event is numbered and reused for every
    frame that carries it (a resend too) and as its size in the resend buffer."""

    wire: bytes


def wire_event(seq: int, kind: str, ts: int, payload: Any) -> WireEvent:
    """The event and its encoding (a `Packed` payload is already encoded)."""
    ev = _tuple_new(WireEvent, (seq, kind, ts, payload))
    if type(payload) is Packed:
        ev.wire = b"".join((b"\x94", _pack(seq), _pack(kind), _pack(ts), payload.data))
    else:
        ev.wire = _pack([seq, kind, ts, payload])
    return ev


_HEADS: dict[int, bytes] = {}  # epoch -> the head of a one-event frame


def events_head(epoch: int, n: int) -> bytes:
    """The msgpack of an `ev` frame up to its events: {"t": "ev", "e": epoch, "ev": [n...]},
    keys in the codec's order."""
    if n == 1:
        head = _HEADS.get(epoch)
        if head is None:
            if len(_HEADS) > 1024:
                _HEADS.clear()
            head = _HEADS[epoch] = b"\x83\xa1t\xa2ev\xa1e" + _pack(epoch) + b"\xa2ev\x91"
        return head
    if n < 16:
        count = bytes((0x90 | n,))
    else:
        count = struct.pack(">BH", 0xDC, n)
    return b"\x83\xa1t\xa2ev\xa1e" + _pack(epoch) + b"\xa2ev" + count


def events_frames(epoch: int, events: list[Event]) -> list[bytes]:
    """`ev` frames (msgpack) of consecutive events from their kept encodings, split as
    `ClientProtocol.frames_to_send` splits them: at most MAX_EVENTS_PER_BATCH events and
    about FRAME_BUDGET bytes a frame."""
    if len(events) == 1:
        e = events[0]
        return [events_head(epoch, 1) + (e.wire if type(e) is WireEvent else _pack(list(e)))]
    wires = [e.wire if type(e) is WireEvent else _pack(list(e)) for e in events]
    frames = []
    chunk: list[bytes] = []
    size = 0
    for w in wires:
        if chunk and (len(chunk) >= MAX_EVENTS_PER_BATCH or size + len(w) > FRAME_BUDGET):
            frames.append(events_head(epoch, len(chunk)) + b"".join(chunk))
            chunk, size = [], 0
        chunk.append(w)
        size += len(w)
    frames.append(events_head(epoch, len(chunk)) + b"".join(chunk))
    return frames


_ACK_HEAD = b"\x82\xa1t\xa3ack\xa3seq"  # {"t": "ack", "seq": ...} as the codec writes it
_UINT_BYTES = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}  # msgpack's unsigned ints past 127


def read_from_gateway(data: bytes) -> Frame | tuple[int, list, str | None] | int:
    """A gateway's frame, with an `ev` frame left as (epoch, items, src), its events as
    decoded lists [seq, kind, ts, payload], and an `ack` as its seq. `ev` and `ack`, nearly
    all of the traffic, are checked only as far as the client relies on them (types of
    epoch, seqs, src; an ack in the codec's layout is read off its bytes); the rest goes
    through the codec."""
    if data.startswith(_ACK_HEAD) and len(data) > 9:
        b = data[9]
        if b < 0x80:
            if len(data) == 10:
                return b
        else:
            width = _UINT_BYTES.get(b)
            if width is not None and len(data) == 10 + width:
                return int.from_bytes(data[10:], "big")
    try:
        m = _unpackb(data, raw=False, strict_map_key=True)
    except Exception:
        return decode_frame(data)  # the codec's error for garbage
    if type(m) is dict:
        t = m.get("t")
        if t == "ev":
            evs, epoch, src = m.get("ev"), m.get("e"), m.get("src")
            if (
                type(epoch) is int
                and type(evs) is list
                and evs
                and (src is None or type(src) is str)
            ):
                for e in evs:
                    if type(e) is not list or len(e) != 4 or type(e[0]) is not int:
                        return decode_frame(data)
                return epoch, evs, src
        elif t == "ack" and type(m.get("seq")) is int:
            return m["seq"]
    return decode_frame(data)


def decode_from_gateway(data: bytes) -> Frame:
    """`read_from_gateway` with the codec's frames (`Events`, `Ack`). 1.9 us for a
    one-event frame against the codec's 7.5."""
    r = read_from_gateway(data)
    if type(r) is tuple:
        epoch, items, src = r
        return Events(epoch, [_tuple_new(Event, e) for e in items], src)
    if type(r) is int:
        return Ack(r)
    return r


class TimerWheel:
    """Timers in 1 ms slots, sans-I/O: adding one and firing it cost a dict lookup and a
    list append, where a heap of (when, order, fn) costs two sift passes over tuples scattered
    in memory per timer (the load generator fires one per event).

    A timer fires at the first `fire_due(now)` at or after its time rounded up to the
    millisecond (its slot): never early, at most 1 ms late. Timers of one slot fire in the
    order they were added; one added for a slot that has already fired (its time has passed)
    fires at the next `fire_due`, those in time order."""

    RES = 1000  # slots per second

    def __init__(self) -> None:
        self._slots: dict[int, list[Callable[[], None]]] = {}
        self._done = -1  # every slot up to this one has fired
        self._late: list[tuple[float, int, Callable[[], None]]] = []  # a heap
        self._order = itertools.count()

    def __bool__(self) -> bool:
        return bool(self._slots or self._late)

    def add(self, when: float, fn: Callable[[], None]) -> None:
        slot = math.ceil(when * self.RES)
        if slot <= self._done:
            heapq.heappush(self._late, (when, next(self._order), fn))
            return
        fns = self._slots.get(slot)
        if fns is None:
            self._slots[slot] = [fn]
        else:
            fns.append(fn)

    def fire_due(self, now: float) -> bool:
        """Run every timer due at `now` (and those they add that are due); False if none."""
        cur = math.floor(now * self.RES)
        done = self._done
        fired = False
        if cur > done:
            slots = self._slots
            self._done = cur  # from here on, a timer added for a slot up to cur is late
            if cur - done <= 64:
                due = [slots.pop(k) for k in range(done + 1, cur + 1) if k in slots]
            else:  # a long wait: look at the slots that exist rather than at every ms
                due = [slots.pop(k) for k in sorted(k for k in slots if k <= cur)]
            for fns in due:
                fired = True
                for fn in fns:
                    fn()
        late = self._late
        while late:
            fired = True
            heapq.heappop(late)[2]()
        return fired

    def next_at(self, horizon: float) -> float | None:
        """The time of the next timer if one is due within `horizon` seconds of the last
        `fire_due` (0.0 for a late one), else None."""
        if self._late:
            return 0.0
        slots = self._slots
        for k in range(self._done + 1, self._done + 1 + math.ceil(horizon * self.RES)):
            if k in slots:
                return k / self.RES
        return None


class Reactor:
    """One epoll and one timer wheel for every connection of this process."""

    def __init__(
        self, gap: float = GAP, idle_max: float = IDLE_MAX, yield_every: float = YIELD_EVERY
    ) -> None:
        self.gap = gap
        self.idle_max = idle_max
        self.yield_every = yield_every
        self.ep = select.epoll()
        self.conns: dict[int, FastClient] = {}
        self.timers = TimerWheel()  # deadlines, reconnects
        self.plans = Schedule()  # the sessions' planned events
        self._dirty: list[FastClient] = []
        self.turns = 0
        self.now = time.time()  # wall clock at this turn's timers: the send time of its events
        self.stamp = self.now  # wall clock when this turn's readiness was seen
        self.rbuf = memoryview(bytearray(RECV_BYTES))  # every socket's reads land here

    # -- used by connections and sessions --

    def call_at(self, when: float, fn: Callable[[], None]) -> None:
        """Run `fn` at the first turn at or after `when` (trio time)."""
        self.timers.add(when, fn)

    def register(self, conn: FastClient, events: int) -> None:
        self.conns[conn.sock.fileno()] = conn
        self.ep.register(conn.sock.fileno(), events)

    def modify(self, conn: FastClient, events: int) -> None:
        self.ep.modify(conn.sock.fileno(), events)

    def unregister(self, sock: socket.socket) -> None:
        fd = sock.fileno()
        if self.conns.pop(fd, None) is not None:
            try:
                self.ep.unregister(fd)
            except (OSError, ValueError):
                pass

    def dirty(self, conn: FastClient) -> None:
        if not conn._dirty:
            conn._dirty = True
            self._dirty.append(conn)

    # -- the loop --

    async def run(self) -> None:
        ready: list[tuple[int, int]] = []
        yielded = -math.inf
        try:
            while True:
                start = time.monotonic()
                worked = self.turn(ready)
                # The harness's other tasks: after an idle turn, and every `yield_every`
                # under load (a pass of trio's scheduler costs as much as a turn's work).
                if not worked or start - yielded >= self.yield_every:
                    await trio.lowlevel.checkpoint()
                    yielded = start
                ready = self._wait(worked, start)
        finally:
            for conn in list(self.conns.values()):
                conn._drop_socket()
            self.ep.close()

    def _wait(self, worked: bool, start: float) -> list[tuple[int, int]]:
        """Block this thread (trio's too, on purpose: a trio wake-up costs this machine 4-6
        times a plain epoll_wait's) until the next turn is due, and return what is ready.

        After a turn that had work, the next one starts `gap` after it did, whatever becomes
        ready meanwhile: under load the turns per second are bounded by the gap, not by the
        frames arriving. Received frames carry the kernel's arrival time (SO_TIMESTAMPNS), so
        the gap adds nothing to the latencies measured. After an idle turn, wait for
        readiness, the next timer or trio's next deadline, at most `idle_max` (trio's own
        sockets, the API calls and metrics scrapes, wait at most that long)."""
        if worked and self.gap > 0:
            rest = start + self.gap - time.monotonic()
            if rest > 0:
                time.sleep(rest)
            return self.ep.poll(0)
        stats = trio.lowlevel.current_statistics()
        if stats.tasks_runnable:
            return self.ep.poll(0)
        timeout = min(self.idle_max, stats.seconds_to_next_deadline)
        now = trio.current_time()
        for at in (self.timers.next_at(timeout), self.plans.next_at()):
            if at is not None:
                timeout = min(timeout, at - now)
        return self.ep.poll(max(0.0, timeout))

    def turn(self, ready: list[tuple[int, int]] | None = None) -> bool:
        """Fire due timers and send what they numbered, then read every socket of `ready`
        once and write what that produced; False when there was nothing to do."""
        self.turns += 1
        self.stamp = self.now = time.time()
        t = trio.current_time()
        fired = self.timers.fire_due(t)
        if self.plans.fire_due(t):
            fired = True
        if self._dirty:
            self.flush()
        if ready is None:
            ready = self.ep.poll(0)
        if ready:
            conns = self.conns
            for fd, ev in ready:
                conn = conns.get(fd)
                if conn is not None:
                    conn._on_ready(ev)
            if self._dirty:
                self.flush()
        return fired or bool(ready)

    def flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            conn._dirty = False
            conn._write_pending()


class _Sender:
    __slots__ = ("start", "plan", "fire", "pending", "backlog", "retry_at")

    def __init__(self, start: float, plan: Iterator[tuple], fire: Callable[..., bool]) -> None:
        self.start, self.plan, self.fire = start, plan, fire
        self.pending = next(plan, None)  # the next planned (at, kind, size) not yet listed
        self.backlog: list[tuple] = []  # refused events, and this sender's later ones
        self.retry_at = 0.0

    def take_until(self, until: float, out: list) -> None:
        """List this sender's events planned before `until` (absolute times) into `out`."""
        p, start, plan = self.pending, self.start, self.plan
        while p is not None and start + p[0] < until:
            out.append((start + p[0], self, p[1], p[2]))
            p = next(plan, None)
        self.pending = p


def _at(e: tuple) -> float:
    return e[0]


class Schedule:
    """Every sender's planned events in one time-ordered list, sans-I/O (the reactor fires
    it each turn).

    A sender is a plan, (at, kind, size) tuples in time order relative to its `start`, and a
    `fire(kind, size)` that returns False when the event cannot be numbered yet (its resend
    buffer is full). `fire_due(now)` fires every event due, in time order: one step along a
    list per event, where a timer per event costs an insertion and a removal in a heap or a
    wheel. The list holds what is planned before `horizon`; it is refilled from every plan
    `window` seconds ahead and sorted once. A refused event waits in its sender's backlog with
    the sender's later events, retried every `retry` seconds, so a sender's events keep their
    order."""

    def __init__(self, window: float = 0.5, retry: float = 0.01) -> None:
        self.window, self.retry = window, retry
        self.horizon = -math.inf  # every event planned before this is in the list
        self._senders: list[_Sender] = []
        self._due: list[tuple] = []  # (when, sender, kind, size), in time order from _i
        self._i = 0
        self._waiting: list[_Sender] = []  # senders with a backlog

    def add(self, start: float, plan: Iterator[tuple], fire: Callable[..., bool]) -> None:
        s = _Sender(start, iter(plan), fire)
        self._senders.append(s)
        if self.horizon > -math.inf:
            new: list[tuple] = []
            s.take_until(self.horizon, new)
            if new:
                rest = self._due[self._i :] + new
                rest.sort(key=_at)
                self._due, self._i = rest, 0

    def _refill(self, until: float) -> None:
        new: list[tuple] = []
        for s in self._senders:
            s.take_until(until, new)
        self._senders = [s for s in self._senders if s.pending is not None]
        new.sort(key=_at)
        self._due = self._due[self._i :] + new
        self._i = 0
        self.horizon = until

    def fire_due(self, now: float) -> bool:
        """Fire every event due at `now`; False if there was none."""
        if now >= self.horizon:
            self._refill(now + self.window)
        due, i = self._due, self._i
        n = len(due)
        start = i
        while i < n:
            e = due[i]
            if e[0] > now:
                break
            i += 1
            s = e[1]
            if s.backlog or not s.fire(e[2], e[3]):
                if not s.backlog:
                    s.retry_at = now + self.retry
                    self._waiting.append(s)
                s.backlog.append(e)
        self._i = i
        fired = i > start
        if self._waiting:
            fired = self._retry(now) or fired
        return fired

    def _retry(self, now: float) -> bool:
        fired = False
        waiting = []
        for s in self._waiting:
            if s.retry_at > now:
                waiting.append(s)
                continue
            fired = True
            backlog = s.backlog
            while backlog and s.fire(backlog[0][2], backlog[0][3]):
                backlog.pop(0)
            if backlog:
                s.retry_at = now + self.retry
                waiting.append(s)
        self._waiting = waiting
        return fired

    def next_at(self) -> float | None:
        """When `fire_due` has something to do next (None: nothing planned)."""
        at = None
        if self._i < len(self._due):
            at = self._due[self._i][0]
        elif self._senders:
            at = self.horizon
        for s in self._waiting:
            at = s.retry_at if at is None else min(at, s.retry_at)
        return at


# connection states (the socket's; the protocol core has its own phases)
_DOWN, _CONNECTING, _UPGRADING, _OPEN, _CLOSING = range(5)


class FastClient:
    """One visitor or agent: a `ClientProtocol` on a socket of the reactor."""

    def __init__(
        self,
        reactor: Reactor,
        urls: list[str] | str,
        sid: str,
        token: str,
        role: str,
        *,
        rng: random.Random | None = None,
        on_control: Callable[[Control], None] | None = None,
        on_delivery: Callable[[str | None, int, list, float], None] | None = None,
        max_unacked: int = 20_000,
    ) -> None:
        self.reactor = reactor
        self.protocol = ClientProtocol(
            urls, sid, token, role, max_unacked=max_unacked, backoff=Backoff(rng=rng)
        )
        self.on_control = on_control
        self.on_delivery = on_delivery
        self.connected = trio.Event()
        self.sock: socket.socket | None = None
        self._state = _DOWN
        self._attempt = 0  # a deadline is for the attempt it was set in
        self._out = bytearray()
        self._want_out = False
        self._dirty = False
        self._rbuf = bytearray()
        self._parser = wsf.FrameParser()
        self._accept = b""
        self._close: tuple[int | None, str] | None = None  # the gateway's close frame
        self._started = trio.Event()
        self._done = trio.Event()
        self._fatal: ClientError | None = None
        self._ack_waiters: list[tuple[int, trio.Event]] = []
        self.received = 0.0  # when the bytes being handled arrived (the kernel's stamp)

    # ---- the reference client's attributes ---------------------------------------------

    role = property(lambda self: self.protocol.role)
    welcome = property(lambda self: self.protocol.welcome)
    rt = property(lambda self: self.protocol.rt)
    gateway = property(lambda self: self.protocol.gateway)

    @property
    def seq(self):
        return self.protocol.seq

    @seq.setter
    def seq(self, value) -> None:
        self.protocol.seq = value

    @property
    def stats(self) -> ClientStats:
        return self.protocol.stats

    # ---- application API ---------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        """Connect; report started at the first welcome; return when closed, or raise the
        ClientError that ended the client."""
        self._connect()
        await self._started.wait()
        if self._fatal is not None and not self.connected.is_set():
            raise self._fatal
        task_status.started()
        await self._done.wait()
        if self._fatal is not None:
            raise self._fatal

    def push(self, kind: str, payload: Any) -> Event | None:
        """Number an event (encoded once, here; a `Packed` payload is already) and have it
        sent at the end of this turn; None (nothing numbered) while the resend buffer is
        full."""
        seq = self.protocol.seq
        ev = wire_event(seq.next_seq, kind, int(self.reactor.now * 1000), payload)
        try:
            seq.push_event(ev, len(ev.wire))
        except ResendBufferFull:
            return None
        if not self._dirty and self._state == _OPEN:
            self._dirty = True
            self.reactor._dirty.append(self)
        return ev

    def push_snapshot(self, data: bytes, chunk: int = SNAPSHOT_CHUNK) -> list[Event]:
        parts = [data[i : i + chunk] for i in range(0, len(data), chunk)] or [b""]
        seq = self.protocol.seq
        ts = int(time.time() * 1000)
        evs = []
        for i, p in enumerate(parts):
            ev = wire_event(seq.next_seq, "snapshot", ts, {"i": i, "n": len(parts), "d": p})
            evs.append(seq.push_event(ev, len(ev.wire)))
        if self._state == _OPEN:
            self.reactor.dirty(self)
        return evs

    async def send_snapshot(self, data: bytes) -> list[Event]:
        evs = self.push_snapshot(data)
        self.reactor.flush()  # from a task, not a turn: do not wait for the next one
        return evs

    async def wait_acked(self, seq: int, timeout: float = 30.0) -> None:
        with trio.fail_after(timeout):
            if self.protocol.seq.acked < seq:
                ev = trio.Event()
                self._ack_waiters.append((seq, ev))
                await ev.wait()

    def close(self) -> None:
        """Say bye (once everything sent is out) and close; no reconnect after this."""
        p = self.protocol
        if p.closed:
            return
        p.close()
        if self._state == _OPEN and p.connected:
            self._write(wsf.frame(p.bye()))
            self._write(wsf.close_frame(1000))
            self._state = _CLOSING
            self._deadline_after(CLOSE_TIMEOUT, "close")
            self.reactor.flush()
        elif self._state in (_DOWN, _CONNECTING, _UPGRADING, _OPEN):
            self._drop_socket()
            self._finish()

    def abort(self) -> bool:
        """Drop the TCP connection under the WebSocket, as a network does (no close frame)."""
        if self.sock is None or self._state != _OPEN:
            return False
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            return False
        return True

    # ---- connecting ----------------------------------------------------------------------

    def _connect(self) -> None:
        p = self.protocol
        if p.closed:
            self._finish()
            return
        self._attempt += 1
        url = p.connect_url()
        try:
            t = wsf.target(url)
        except wsf.WsError as exc:
            self._end_with(Fatal(ClientError("unsupported_url", str(exc))))
            return
        self._rbuf.clear()
        self._out.clear()
        self._parser = wsf.FrameParser()
        self._close = None
        try:
            addr = _resolve(t.host, t.port)
            sock = socket.socket(addr[0], socket.SOCK_STREAM)
        except OSError:
            self._decide(p.connect_failed(time.time()))
            return
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        except OSError:
            pass  # no kernel stamps: the turn's own clock reading stands in
        self.sock = sock
        self._state = _CONNECTING
        err = sock.connect_ex(addr[1])
        if err not in (0, errno.EINPROGRESS):
            self._fail_attempt()
            return
        req, self._accept = wsf.handshake_request(t)
        self._out += req
        self._want_out = True
        self.reactor.register(self, _EPOLLOUT | _EPOLLIN)
        self._deadline_after(CONNECT_TIMEOUT, "connect")

    def _deadline_after(self, seconds: float, what: str) -> None:
        attempt = self._attempt
        self.reactor.call_at(trio.current_time() + seconds, lambda: self._deadline(attempt, what))

    def _deadline(self, attempt: int, what: str) -> None:
        if attempt != self._attempt:
            return
        if what == "connect" and self._state in (_CONNECTING, _UPGRADING):
            self._fail_attempt()
        elif what == "welcome" and self._state == _OPEN and not self.protocol.connected:
            self._fail_attempt()
        elif what == "close" and self._state == _CLOSING:
            self._lost(None, "")

    def _fail_attempt(self) -> None:
        self._drop_socket()
        self._decide(self.protocol.connect_failed(time.time()))

    def _upgraded(self) -> None:
        """The HTTP response is complete in the read buffer."""
        try:
            parsed = wsf.parse_response(self._rbuf)
        except wsf.WsError:
            self._fail_attempt()
            return
        if parsed is None:
            return
        resp, n = parsed
        del self._rbuf[:n]
        if resp.status != 101:
            self._drop_socket()
            if resp.status in (429, 503):
                ra = resp.headers.get("retry-after")
                refused = self.protocol.handshake_refused(resp.status, retry_after(ra), time.time())
                self._decide(refused)
            else:
                self._decide(self.protocol.connect_failed(time.time()))
            return
        try:
            wsf.check_accept(resp, self._accept)
        except wsf.WsError:
            self._fail_attempt()
            return
        self._state = _OPEN
        self._write(wsf.frame(self.protocol.hello()))
        self._deadline_after(WELCOME_TIMEOUT, "welcome")
        if self._rbuf:
            data = bytes(self._rbuf)
            self._rbuf.clear()
            self.received = self.reactor.stamp
            self._frames(data, self.received)

    # ---- socket events -------------------------------------------------------------------

    def _on_ready(self, ev: int) -> None:
        if ev & _EPOLLOUT and self._want_out:
            if self._state == _CONNECTING:
                if self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    self._fail_attempt()
                    return
                self._state = _UPGRADING
            self._write_pending()
        sock = self.sock
        if not ev & (_EPOLLIN | _EPOLLERR) or sock is None:
            return
        rbuf = self.reactor.rbuf
        try:
            n, anc, _, _ = sock.recvmsg_into((rbuf,), _TS_SPACE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            n, anc = 0, None
        if n and self._state == _OPEN:
            if anc:  # when the last of these bytes reached the socket
                sec, ns = _TIMESPEC.unpack_from(anc[0][2])
                received = sec + ns * 1e-9
            else:
                received = self.reactor.stamp
            self.received = received
            b1 = rbuf[1] if n > 1 else 0
            if rbuf[0] == 0x82 and b1 < 126 and n == b1 + 2 and self._parser.idle():
                self._binary(rbuf[2:n].tobytes(), received)  # the usual read: one small frame
            else:
                self._frames(rbuf[:n].tobytes(), received)
            return
        data = rbuf[:n].tobytes()
        if not data:
            if self._state in (_CONNECTING, _UPGRADING):
                self._fail_attempt()
            else:
                code, reason = self._close or (None, "")
                self._lost(code, reason)
            return
        if self._state == _UPGRADING:
            self._rbuf += data
            self._upgraded()
        elif self._state == _CLOSING:
            self.received = self.reactor.stamp
            self._frames(data, self.received)

    def _frames(self, data: bytes, received: float) -> None:
        try:
            messages = self._parser.feed(data)
        except wsf.WsError:
            self._lost(None, "")
            return
        for op, payload in messages:
            if op == wsf.OP_BINARY:
                if not self._binary(payload, received):
                    return
            elif op == wsf.OP_CLOSE:
                self._close = wsf.parse_close(payload)
                if self._state == _OPEN:  # answer it; the gateway then closes the socket
                    self._write(wsf.close_frame(self._close[0] or 1000))
                    self._state = _CLOSING
                    self._deadline_after(CLOSE_TIMEOUT, "close")
            elif op == wsf.OP_PING:
                self._write(wsf.frame(payload, wsf.OP_PONG))
            elif op == wsf.OP_TEXT:
                self._protocol_broken(ClientError("text_frame", "the gateway sent text"))
                return

    def _binary(self, payload: bytes, received: float) -> bool:
        """One message from the gateway; False when it broke the protocol (the connection
        is then gone)."""
        p = self.protocol
        try:
            r = read_from_gateway(payload)
            if type(r) is tuple:  # events: the usual frame
                epoch, items, src = r
                kept = p.receive_items(epoch, items, src, received)
                if kept and self.on_delivery is not None:
                    self.on_delivery(src, epoch, kept, received)
                return True
            if type(r) is int:  # an ack
                if p.receive_ack(r) and self._ack_waiters:
                    self._wake_ack_waiters()
                return True
            happenings = p.receive_frame(r, received)
        except ProtocolError as exc:
            self._protocol_broken(ClientError(exc.code, f"gateway sent a bad frame: {exc.message}"))
            return False
        except ClientError as exc:
            self._protocol_broken(exc)
            return False
        self._apply(happenings)
        return True

    def _apply(self, happenings: list) -> None:
        for h in happenings:
            if type(h) is Delivery:
                if h.events and self.on_delivery is not None:
                    self.on_delivery(h.src, h.epoch, h.events, h.received)
            elif type(h) is Acked:
                if h.freed and self._ack_waiters:
                    self._wake_ack_waiters()
            elif type(h) is Welcomed:
                self.connected.set()
                self._started.set()
                if h.resend:
                    self.reactor.dirty(self)
            elif self.on_control is not None:
                self.on_control(h.control)

    def _wake_ack_waiters(self) -> None:
        acked = self.protocol.seq.acked
        keep = []
        for seq, ev in self._ack_waiters:
            (ev.set() if seq <= acked else keep.append((seq, ev)))
        self._ack_waiters = keep

    # ---- writing -------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        self._out += data
        self.reactor.dirty(self)

    def _write_pending(self) -> None:
        """Frame the events numbered since the last write, then send what the kernel takes."""
        if self.sock is None:
            return
        out = self._out
        data = b""
        if self._state == _OPEN:
            p = self.protocol
            evs = p.take_unsent()
            if evs:
                frames = events_frames(p.seq.epoch, evs)
                if not out and len(frames) == 1:
                    data = wsf.frame(frames[0])  # the usual write: one frame, sent as it is
                else:
                    for f in frames:
                        out += wsf.frame(f)
        if not data:
            if self._state == _CONNECTING or not out:
                return
            data = out
        try:
            n = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:
            return  # the read side sees the end and decides
        if data is out:
            if n == len(out):
                out.clear()
            else:
                del out[:n]
        elif n < len(data):
            out += data[n:]
        want = bool(out)
        if want != self._want_out:
            self._want_out = want
            self.reactor.modify(self, _EPOLLIN | (_EPOLLOUT if want else 0))

    # ---- the end of a connection -----------------------------------------------------------

    def _protocol_broken(self, err: ClientError) -> None:
        self._drop_socket()
        self._end_with(Fatal(err))

    def _lost(self, code: int | None, reason: str) -> None:
        self._drop_socket()
        self._decide(self.protocol.connection_lost(code, reason, time.time()))

    def _decide(self, decision: Decision) -> None:
        if isinstance(decision, Reconnect):
            self.reactor.call_at(trio.current_time() + decision.delay, self._connect)
        else:
            self._end_with(decision)

    def _end_with(self, decision: Decision) -> None:
        if isinstance(decision, Fatal):
            self._fatal = decision.error
        self._finish()

    def _finish(self) -> None:
        self._started.set()
        self._done.set()
        for _, ev in self._ack_waiters:
            ev.set()
        self._ack_waiters = []

    def _drop_socket(self) -> None:
        if self.connected.is_set():
            self.connected = trio.Event()
        self._state = _DOWN
        self._attempt += 1  # deadlines of this attempt no longer apply
        sock, self.sock = self.sock, None
        if sock is not None:
            self.reactor.unregister(sock)
            sock.close()
        self._want_out = False
        self._out.clear()


_ADDRS: dict[tuple[str, int], tuple[int, tuple]] = {}


def _resolve(host: str, port: int) -> tuple[int, tuple]:
    """Resolved once per host and port (blocking, so a name costs one lookup per run)."""
    key = (host, port)
    addr = _ADDRS.get(key)
    if addr is None:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        addr = _ADDRS[key] = (info[0], info[4])
    return addr
