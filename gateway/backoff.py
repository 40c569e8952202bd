"""Reconnect delays, sans-I/O: the caller sleeps, this only says how long."""

from __future__ import annotations

import random

_MAX_EXPONENT = 62  # base * 2**62 passes any sane cap; avoids huge ints and float overflow


class Backoff:
    """Exponential backoff with full jitter applied after the cap.

    Jittering after the cap keeps clients that have all reached the cap spread over
    [0, cap]; jittering first and then capping (Socket.IO) pins them all to the cap, so a
    gateway restart brings them back in lockstep.
    """

    def __init__(self, base: float = 0.5, cap: float = 20.0, rng: random.Random | None = None):
        self.base = base
        self.cap = cap
        self._rng = rng if rng is not None else random.Random()
        self._attempt = 0

    @property
    def attempt(self) -> int:
        return self._attempt

    def next_delay(self, floor: float = 0.0) -> float:
        """Seconds to wait before the next attempt.

        `floor` is a server's Retry-After or reconnect delay and wins even above the cap:
        the result is max(floor, jittered delay). Clients whose delay falls below the floor
        all get exactly the floor, so a server that wants them spread must vary the floor.
        """
        ceiling = min(self.cap, self.base * 2.0 ** min(self._attempt, _MAX_EXPONENT))
        self._attempt += 1
        return max(floor, self._rng.uniform(0.0, ceiling))

    def reset(self) -> None:
        """After a connection that worked: the next failure starts from base again."""
        self._attempt = 0
