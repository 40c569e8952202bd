"""Receiver-side reordering for one sender, sans-I/O.

Events reach a receiver from a live subscription and from stream fills that can overlap and
arrive out of order. `ReorderBuffer` releases each (epoch, seq) exactly once, in key order,
and tells the caller when a hole has lasted long enough to be worth filling from the stream.
"""

from __future__ import annotations

from typing import Any


class ReorderOverflow(Exception):
    """Too much is waiting behind a hole: resync from a snapshot instead."""


class ReorderBuffer:
    """Releases one sender's events strictly in (epoch, seq) order, exactly once.

    Seqs restart at 1 in each epoch and a newer epoch supersedes older ones. Items of a newer
    epoch wait until `advance_epoch`, because the current epoch may still have events in
    flight; only the caller (after checking the stream) can decide that its tail is gone.
    Time is passed in: a hole is reported by `gap_due` once it has lasted `gap_timeout`.
    """

    __slots__ = ("gap_timeout", "max_pending", "_epoch", "_next", "_buf", "_n", "_gap_since")

    def __init__(
        self,
        epoch: int,
        next_seq: int = 1,
        *,
        gap_timeout: float = 0.25,
        max_pending: int = 20_000,
    ):
        self.gap_timeout = gap_timeout
        self.max_pending = max_pending
        self.reset(epoch, next_seq)

    @property
    def expected(self) -> tuple[int, int]:
        """The key released next."""
        return (self._epoch, self._next)

    @property
    def pending(self) -> int:
        return self._n

    def reset(self, epoch: int, next_seq: int) -> None:
        """Forget everything and continue from a known point, e.g. after a snapshot resync."""
        self._epoch = epoch
        self._next = next_seq
        self._buf: dict[int, dict[int, Any]] = {}  # epoch -> seq -> item
        self._n = 0
        self._gap_since: float | None = None

    def push(self, epoch: int, seq: int, item: Any, now: float) -> list:
        """Returns the items now releasable, in order; duplicates and stale keys return [].

        Raises ReorderOverflow, without keeping the item, if it would make more than
        `max_pending` items wait.
        """
        if (epoch, seq) < (self._epoch, self._next):
            return []
        bucket = self._buf.get(epoch)
        if bucket is not None and seq in bucket:
            return []
        if epoch == self._epoch and seq == self._next:
            self._next += 1
            out = [item, *self._drain()]
            self._gap_since = now if self._n else None
            return out
        if self._n >= self.max_pending:
            raise ReorderOverflow(f"{self._n} items waiting for {self.expected}")
        self._buf.setdefault(epoch, {})[seq] = item
        self._n += 1
        if self._gap_since is None:
            self._gap_since = now
        return []

    def take_run(self, epoch: int, first: int, last: int) -> bool:
        """Release the consecutive keys (epoch, first..last) at once, if they are exactly what
        comes next and nothing waits behind a hole: the common case, in O(1) whatever the
        run's length. False changes nothing; the caller then pushes the items one by one."""
        if self._n or epoch != self._epoch or first != self._next or last < first:
            return False
        self._next = last + 1
        return True

    def gap_due(self, now: float) -> tuple[int, int] | None:
        """The missing key once a hole has lasted gap_timeout; then waits another gap_timeout."""
        if self._gap_since is None or now < self._gap_since + self.gap_timeout:
            return None
        self._gap_since = now
        return self.expected

    def deadline(self) -> float | None:
        """When gap_due will next report the hole, so the caller knows how long to sleep."""
        if self._gap_since is None:
            return None
        return self._gap_since + self.gap_timeout

    def pending_newer_epoch(self) -> int | None:
        return min((e for e in self._buf if e > self._epoch), default=None)

    def advance_epoch(self, epoch: int, now: float) -> list:
        """Give up on the current epoch's missing tail and continue at (epoch, 1)."""
        if epoch <= self._epoch:
            return []
        for e in [e for e in self._buf if e < epoch]:
            self._n -= len(self._buf.pop(e))
        self._epoch, self._next = epoch, 1
        out = self._drain()
        self._gap_since = now if self._n else None
        return out

    def _drain(self) -> list:
        bucket = self._buf.get(self._epoch)
        out = []
        while bucket and self._next in bucket:
            out.append(bucket.pop(self._next))
            self._next += 1
        self._n -= len(out)
        if bucket is not None and not bucket:
            del self._buf[self._epoch]
        return out
