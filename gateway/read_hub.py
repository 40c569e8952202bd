"""One epoll over a gateway's client sockets, read by one task.

A connection that reads with `trio.lowlevel.wait_readable` pays, per frame, a wake of its
own task and an `epoll_ctl` (trio arms each wait with EPOLLONESHOT). Under the many-small-
frames load a visitor's gateway carries, that is one task switch and one system call per
event. Here each client socket is registered once (level-triggered) while its connection
reads, and the hub's task calls the connection back for every socket the kernel reports,
all in one step: no task switch per frame, and one re-armed wait (the hub's own epoll in
trio's) per wake, shared by every socket ready in it.
"""

from __future__ import annotations

import select
from collections.abc import Callable

import trio

MAX_READY = 128  # sockets taken per wake, so one step of the hub stays short


class ReadHub:
    """Sockets registered by `add` are reported to their callback while readable."""

    def __init__(self) -> None:
        self._ep = select.epoll()
        self._readers: dict[int, Callable[[], None]] = {}

    def __len__(self) -> int:
        return len(self._readers)

    def add(self, fd: int, on_readable: Callable[[], None]) -> None:
        """Call `on_readable` (on the hub's task) whenever `fd` has bytes or an end to read,
        until `remove`; it must not block."""
        self._ep.register(fd, select.EPOLLIN)
        self._readers[fd] = on_readable

    def remove(self, fd: int) -> None:
        """Before the socket is closed: a closed fd's number is soon another socket's."""
        if self._readers.pop(fd, None) is not None:
            try:
                self._ep.unregister(fd)
            except OSError:  # already closed: the kernel dropped it from the epoll
                pass

    async def run(self) -> None:
        try:
            while True:
                await trio.lowlevel.wait_readable(self._ep.fileno())
                readers = self._readers
                for fd, _ in self._ep.poll(0, MAX_READY):
                    on_readable = readers.get(fd)
                    if on_readable is not None:  # removed by an earlier callback
                        on_readable()
        finally:
            for fd in list(self._readers):
                self.remove(fd)
            self._ep.close()
