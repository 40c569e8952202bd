"""Asset cache pieces for the proxy: a byte-bounded LRU, HTTP freshness, single-flight.

`ByteLRU` and `freshness` are sans-I/O (the caller passes `now`); `SingleFlight` is a small
trio primitive so identical concurrent fetches for one key hit the origin once.

Freshness rules (deliberately simple, shared-cache flavoured):
  * `Cache-Control: no-store` or `no-cache` or `private` -> not storable/fresh (None).
  * `s-maxage=N` wins over `max-age=N`; either gives `now + N`.
  * otherwise `Expires: <HTTP date>` gives that time (a bad date counts as already expired).
  * otherwise None (no heuristic freshness).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import trio


@dataclass(frozen=True)
class Entry:
    """A cached response body with the metadata needed to serve and revalidate it."""

    value: bytes
    content_type: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    expires_at: float | None = None

    @property
    def size(self) -> int:
        return len(self.value)

    def is_fresh(self, now: float) -> bool:
        return self.expires_at is not None and now < self.expires_at


class ByteLRU:
    """Least-recently-used map bounded by the total size of the stored values in bytes.

    `get` refreshes recency; `put` evicts least-recently-used entries until the total fits.
    A value larger than `max_bytes` on its own is not stored (and evicts nothing)."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = max_bytes
        self.total = 0
        self._entries: OrderedDict[Hashable, Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def keys(self) -> list[Hashable]:
        """Keys from least to most recently used."""
        return list(self._entries)

    def get(self, key: Hashable) -> Entry | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: Hashable, entry: Entry) -> list[Hashable]:
        """Store `entry`; return the keys evicted to make room (oldest first)."""
        self.pop(key)
        if entry.size > self.max_bytes:
            return []
        evicted = []
        while self.total + entry.size > self.max_bytes and self._entries:
            old_key, old = self._entries.popitem(last=False)
            self.total -= old.size
            evicted.append(old_key)
        self._entries[key] = entry
        self.total += entry.size
        return evicted

    def pop(self, key: Hashable) -> Entry | None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.total -= entry.size
        return entry


def _cache_control(headers: Mapping[str, str]) -> dict[str, str | None]:
    directives: dict[str, str | None] = {}
    for name, value in headers.items():
        if name.lower() != "cache-control":
            continue
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            key, sep, arg = part.partition("=")
            directives[key.strip().lower()] = arg.strip().strip('"') if sep else None
    return directives


def _header(headers: Mapping[str, str], wanted: str) -> str | None:
    for name, value in headers.items():
        if name.lower() == wanted:
            return value
    return None


def _seconds(arg: str | None) -> int | None:
    if arg is None or not arg.isascii() or not arg.isdigit():
        return None
    return int(arg)


def freshness(headers: Mapping[str, str], now: float) -> float | None:
    """The time until which a response with `headers` is fresh, or None if it must not be
    served from cache without revalidation (see the module docstring for the rules).

    `headers` is any str->str mapping (httpx.Headers works; its values for repeated
    Cache-Control headers are comma-joined)."""
    cc = _cache_control(headers)
    if "no-store" in cc or "no-cache" in cc or "private" in cc:
        return None
    for directive in ("s-maxage", "max-age"):
        if directive in cc:
            seconds = _seconds(cc[directive])
            if seconds is None:
                return None  # malformed: treat as stale
            return now + seconds
    expires = _header(headers, "expires")
    if expires is not None:
        try:
            when = parsedate_to_datetime(expires)
        except (TypeError, ValueError, IndexError):
            return now  # invalid Expires means "already expired"
        if when is None or when.tzinfo is None:
            return now
        return when.timestamp()
    return None


class SingleFlight:
    """Collapse identical concurrent calls: while `run(key, fn)` is in flight for `key`,
    other callers with the same key wait for it and get the same result or exception.

    The first caller (the leader) runs `fn` in its own task. If the leader is cancelled,
    the waiters get `RuntimeError("leader cancelled")` instead of hanging (they never see
    the leader's trio.Cancelled); the next call for the key starts afresh."""

    def __init__(self) -> None:
        self._calls: dict[Hashable, _Call] = {}
        self.started = 0  # how many times fn actually ran (for tests / metrics)

    async def run(self, key: Hashable, fn: Callable[[], Awaitable[Any]]) -> Any:
        call = self._calls.get(key)
        if call is not None:
            await call.done.wait()
            if call.error is not None:
                raise call.error
            return call.result
        call = _Call()
        self._calls[key] = call
        self.started += 1
        try:
            call.result = await fn()
            return call.result
        except BaseException as e:
            if isinstance(e, trio.Cancelled):
                call.error = RuntimeError("leader cancelled")
            else:
                call.error = e
            raise
        finally:
            del self._calls[key]
            call.done.set()


class _Call:
    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: Any = None
        self.error: BaseException | None = None
