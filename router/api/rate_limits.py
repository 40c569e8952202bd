"""Rate limits on the two endpoints anyone can reach: creating sessions (per client address)
and looking up short codes (per agent key and per address, so that a leaked key or one
address cannot walk the million codes). Moving windows, in memory: each router process counts
its own requests, so the cluster's limit is the setting times the number of routers."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import limits
from limits.strategies import MovingWindowRateLimiter

from gateway.limits_storage import SweptMemoryStorage

from .. import metrics
from ..config import RouterConfig
from .errors import ApiError

Rule = tuple[limits.RateLimitItem, str, str]
"""(limit, scope, identity): one counter of the `limits` package."""


@dataclass(frozen=True)
class RateRules:
    """The configured limits, parsed once (`COBROWSE_LOOKUP_LIMIT_PER_KEY` and friends)."""

    lookup_per_key: limits.RateLimitItem
    lookup_per_address: limits.RateLimitItem
    create_per_address: limits.RateLimitItem

    @classmethod
    def from_config(cls, cfg: RouterConfig) -> RateRules:
        return cls(
            lookup_per_key=limits.parse(cfg.lookup_limit_per_key),
            lookup_per_address=limits.parse(cfg.lookup_limit_per_address),
            create_per_address=limits.parse(cfg.create_limit_per_address),
        )


class RateLimits:
    """Moving-window limits (the `limits` package, in memory: per router process)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._limiter = MovingWindowRateLimiter(SweptMemoryStorage())
        self._clock = clock

    def check(self, *rules: Rule) -> float | None:
        """Count one request against every (limit, scope, identity) rule, or none if any is
        exhausted; return None when allowed, else seconds until a retry can succeed."""
        denied = [r for r in rules if not self._limiter.test(*r)]
        if not denied:
            for r in rules:
                self._limiter.hit(*r)
            return None
        for _, limit, _ in denied:
            metrics.RATE_LIMITED.labels(limit=limit).inc()
        wait = 1.0
        for item, *ids in denied:
            reset = self._limiter.get_window_stats(item, *ids).reset_time
            wait = max(wait, reset - self._clock())
        return wait

    def enforce(self, *rules: Rule) -> None:
        """`check`, raising 429 `rate_limited` with `Retry-After` when a rule is exhausted."""
        wait = self.check(*rules)
        if wait is not None:
            raise ApiError(
                429,
                "rate_limited",
                f"too many requests; retry in {retry_after(wait)} s",
                {"Retry-After": retry_after(wait)},
            )


def retry_after(seconds: float) -> str:
    """A `Retry-After` value: whole seconds, rounded up, at least 1 (0 would invite a retry
    that is certain to fail)."""
    return str(max(1, math.ceil(seconds)))
