"""Outbox: writes coalesced per run-loop turn, back-pressure when the peer stops reading."""

from __future__ import annotations

import socket

import trio

from gateway.outbox import Outbox, current_flusher


def pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def read_all(sock: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


class CountingSocket:
    """A socket whose send() calls are counted."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sends: list[int] = []

    def send(self, data) -> int:
        self.sends.append(len(data))
        return self.sock.send(data)


async def test_writes_of_one_turn_go_out_in_one_send():
    a, b = pair()
    counting = CountingSocket(a)
    notified = []
    box = Outbox(counting, current_flusher(), lambda: notified.append(1))
    for i in range(50):
        box.write(b"%03d;" % i)
    assert read_all(b) == b""  # nothing before the turn ends
    await trio.lowlevel.checkpoint()  # ends the turn: the flusher runs before the I/O wait
    assert counting.sends == [200]
    assert read_all(b) == b"".join(b"%03d;" % i for i in range(50))
    assert not notified and box.pending == 0
    a.close()
    b.close()


async def test_a_peer_that_stops_reading_blocks_the_outbox_and_tells_the_owner():
    a, b = pair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    woken = trio.Event()
    box = Outbox(a, current_flusher(), woken.set)
    big = b"x" * (4 << 20)
    box.write(big)
    with trio.fail_after(5):
        await woken.wait()
    assert box.blocked and 0 < box.pending < len(big)
    box.write(b"more")  # queued behind, not flushed by the turn while blocked
    got = bytearray()

    async def reader():
        while len(got) < len(big) + 4:
            await trio.lowlevel.wait_readable(b)
            got.extend(read_all(b))

    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            n.start_soon(reader)
            await box.wait_flushed()
    assert bytes(got) == big + b"more"
    assert not box.blocked and box.pending == 0
    a.close()
    b.close()


async def test_a_reset_peer_closes_the_outbox_and_later_writes_are_dropped():
    a, b = pair()
    woken = trio.Event()
    box = Outbox(a, current_flusher(), woken.set)
    b.close()
    box.write(b"hello")
    with trio.fail_after(5):
        await woken.wait()
    assert box.closed and box.pending == 0
    box.write(b"ignored")
    assert box.pending == 0
    a.close()


async def test_the_flusher_is_one_per_run():
    assert current_flusher() is current_flusher()
