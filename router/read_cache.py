"""One read of a NATS bucket shared by the API's requests for a short time (sans-I/O).

The API answers many requests from a few buckets that change rarely: the console's listing
(router/listing.py) and the gateways' registry (router/gateway_directory.py). A `ReadCache`
holds the latest read and when it was made; the caller decides what a read is and clears
the cache when it changed the bucket itself.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class ReadCache(Generic[T]):
    """The latest read and when it was made."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._at: float | None = None
        self._found: T | None = None

    def get(self, now: float) -> T | None:
        """The cached read if it is younger than `ttl` (and not from the future), else None."""
        if self._at is None or not (self._at <= now < self._at + self.ttl):
            return None
        return self._found

    def put(self, now: float, found: T) -> None:
        self._at, self._found = now, found

    def clear(self) -> None:
        self._at, self._found = None, None
