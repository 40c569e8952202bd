"""Writes to non-blocking sockets, coalesced per turn of the trio run loop.

Co-browsing traffic is many small events, and one `send()` per event (an ack, a delivery to
an agent, a publish to NATS) was a large part of the gateway's cost. Here a task only appends
bytes to a socket's `Outbox`; everything queued during one turn of the run loop goes out in
one `send()` per socket just before trio waits for I/O (an Instrument's `before_io_wait`
hook). No task switch is involved and nothing waits longer than the turn it was queued in.

When the kernel's send buffer is full, the rest stays queued, the outbox is `blocked`, and
its owner is told (on the next turn, through `run_sync_soon`, since a task woken from inside
the hook would miss the I/O wait that follows); the owner then waits for the socket to be
writable and calls `flush()` itself. The owner also bounds `pending`: a receiver that stops
reading must not make its gateway buffer without limit.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable

import structlog
import trio

log = structlog.get_logger("gateway.outbox")

_SEND_CHUNK = 1 << 20  # one send() takes at most this much (the kernel takes less anyway)


class Outbox:
    """Bytes queued for one non-blocking socket."""

    __slots__ = ("sock", "_buf", "blocked", "closed", "_flusher", "_queued", "_notify")

    def __init__(
        self, sock: socket.socket, flusher: TurnFlusher, notify: Callable[[], None]
    ) -> None:
        self.sock = sock
        self._buf = bytearray()
        self.blocked = False  # the kernel refused bytes: the owner must wait writable
        self.closed = False  # the socket failed: nothing more will be written
        self._flusher = flusher
        self._queued = False  # in the flusher's list for this turn
        self._notify = notify  # called (next turn) when blocked or closed

    @property
    def pending(self) -> int:
        return len(self._buf)

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        self._buf += data
        if not self._queued and not self.blocked:
            self._queued = True
            self._flusher.dirty.append(self)

    def flush(self) -> bool:
        """Send what the kernel takes now; True when nothing is left."""
        buf = self._buf
        while buf and not self.closed:
            try:
                n = self.sock.send(buf[:_SEND_CHUNK] if len(buf) > _SEND_CHUNK else buf)
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                n = 0  # an SSLSocket's "not now" (the NATS client's TLS connections)
            except OSError as exc:  # reset by the peer, or closed under us
                log.debug("send_failed", error=repr(exc))
                self.closed = True
                buf.clear()
                return False
            if n == 0:
                self.blocked = True
                return False
            del buf[:n]
        self.blocked = False
        return True

    def close(self) -> None:
        """Drop whatever is queued; later writes are ignored."""
        self.closed = True
        self._buf.clear()

    async def wait_flushed(self) -> None:
        """Owner side, when blocked: wait until the socket takes the rest (or fails)."""
        while self._buf and not self.closed:
            await trio.lowlevel.wait_writable(self.sock)
            self.flush()


class TurnFlusher(trio.abc.Instrument):
    """Flushes every outbox written during this turn, once, right before the I/O wait."""

    def __init__(self, token: trio.lowlevel.TrioToken) -> None:
        self.dirty: list[Outbox] = []
        self._token = token

    def before_io_wait(self, timeout: float) -> None:
        if not self.dirty:
            return
        dirty, self.dirty = self.dirty, []
        for box in dirty:
            box._queued = False
            try:
                done = box.flush()
            except Exception as exc:  # an instrument that raises is removed by trio
                log.error("flush_failed", error=repr(exc))
                box.closed = True
                done = False
            if not done:
                # Not from here: a task woken now would wait out this turn's I/O timeout.
                self._token.run_sync_soon(box._notify)


_FLUSHER: trio.lowlevel.RunVar[TurnFlusher] = trio.lowlevel.RunVar("cobrowse_flusher")


def current_flusher() -> TurnFlusher:
    """The flusher of this trio run, installed on first use."""
    try:
        return _FLUSHER.get()
    except LookupError:
        flusher = TurnFlusher(trio.lowlevel.current_trio_token())
        trio.lowlevel.add_instrument(flusher)
        _FLUSHER.set(flusher)
        return flusher
