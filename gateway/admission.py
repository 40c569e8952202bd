"""Admission at the WebSocket handshake (G3), sans-I/O: the caller passes `now`, this decides.

Two token buckets. New sessions take only from their own bucket; resumes take from a
separate, larger one and may borrow from the new-session bucket, never the reverse. So a
drain's reconnect wave is not throttled behind new traffic and a flood of new sessions
never delays a resume (as Discord's RESUME does not count against IDENTIFY).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_RETRY_AFTER = 3600
"""Retry-After sent when a lane will never refill (rate 0): a long wait, not an error."""

_NUDGE_LIMIT = 64


class TokenBucket:
    """Starts full; refills continuously at `rate` tokens/s up to `burst`.

    A clock that steps backwards counts as no time passed: the bucket keeps the latest
    `now` it has seen, so a backwards step can never mint tokens when time moves on again.
    """

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if not rate >= 0:
            raise ValueError(f"rate must be >= 0, got {rate!r}")
        if not burst >= 1:
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        self.rate = float(rate)
        self.burst = float(burst)
        self._tokens = float(burst)
        self._last = now

    def _level_at(self, now: float) -> float:
        # Only when time moved forward: also keeps inf * 0 (NaN) out when rate is inf.
        if now > self._last and self.rate > 0:
            return min(self.burst, self._tokens + (now - self._last) * self.rate)
        return self._tokens

    def _refill(self, now: float) -> None:
        self._tokens = self._level_at(now)
        if now > self._last:
            self._last = now

    def level(self, now: float) -> float:
        self._refill(now)
        return self._tokens

    def try_take(self, now: float, n: float = 1.0) -> bool:
        if not n >= 0:
            raise ValueError(f"n must be >= 0, got {n!r}")
        self._refill(now)
        if self._tokens >= n:
            self._tokens -= n
            return True
        return False

    def retry_after(self, now: float, n: float = 1.0) -> float:
        """Seconds until `try_take(now + result, n)` succeeds, if nothing else takes first.

        The float estimate is nudged up ulp by ulp until that really holds, so a caller
        that sleeps exactly this long is not turned away again by a rounding error.
        """
        if not n >= 0:
            raise ValueError(f"n must be >= 0, got {n!r}")
        self._refill(now)
        if self._tokens >= n:
            return 0.0
        if self.rate == 0 or n > self.burst:
            return math.inf
        # self._last is now, or later if the clock stepped back.
        wait = max(self._last + (n - self._tokens) / self.rate - now, 0.0)
        for _ in range(_NUDGE_LIMIT):
            if self._level_at(now + wait) >= n:
                break
            wait = max(math.nextafter(wait, math.inf), wait + math.ulp(now + wait))
        return wait


@dataclass(frozen=True)
class Decision:
    """What the handshake does: admit, or refuse with a status and a Retry-After."""

    admit: bool
    lane: str  # "new", "resume", "resume-fallback", "rejected", "draining"
    status: int  # 0 when admitted, 429 rate-limited, 503 draining
    retry_after: float  # seconds; 0 when admitted
    reason: str


DRAINING = Decision(False, "draining", 503, 1.0, "gateway is draining")


class Admission:
    """The two lanes of G3 and their counters (for metrics)."""

    def __init__(
        self,
        *,
        new_rate: float,
        new_burst: float,
        resume_rate: float,
        resume_burst: float,
        now: float,
    ) -> None:
        self.new_bucket = TokenBucket(new_rate, new_burst, now)
        self.resume_bucket = TokenBucket(resume_rate, resume_burst, now)
        self.counts: dict[str, int] = dict.fromkeys(
            ("new", "resume", "resume-fallback", "rejected_new", "rejected_resume", "draining"),
            0,
        )

    def decide(self, *, resume: bool, now: float, draining: bool = False) -> Decision:
        if draining:
            # A draining gateway accepts nobody, resumes included: they belong elsewhere.
            self.counts["draining"] += 1
            return DRAINING
        if resume:
            if self.resume_bucket.try_take(now):
                return self._admit("resume", "resume lane")
            if self.new_bucket.try_take(now):
                return self._admit("resume-fallback", "resume lane empty, used new-session lane")
            self.counts["rejected_resume"] += 1
            wait = min(self.resume_bucket.retry_after(now), self.new_bucket.retry_after(now))
            return Decision(False, "rejected", 429, wait, "resume and new-session lanes empty")
        # Never the resume bucket: new traffic must not eat the reconnect wave's tokens.
        if self.new_bucket.try_take(now):
            return self._admit("new", "new-session lane")
        self.counts["rejected_new"] += 1
        wait = self.new_bucket.retry_after(now)
        return Decision(False, "rejected", 429, wait, "new-session lane empty")

    def _admit(self, lane: str, reason: str) -> Decision:
        self.counts[lane] += 1
        return Decision(True, lane, 0, 0.0, reason)


def retry_after_header(seconds: float) -> str:
    """HTTP Retry-After: whole seconds, rounded up, at least 1 (0 would invite a stampede)."""
    if not seconds > 1:  # also NaN
        return "1"
    if seconds >= MAX_RETRY_AFTER:  # also inf
        return str(MAX_RETRY_AFTER)
    return str(math.ceil(seconds))
