"""Session metadata in a NATS KV bucket, so a gateway holds nothing a restart loses.

One key per session: the visitor's epoch, the agents that joined, where the latest full
snapshot starts, whether a snapshot has been asked for, and which visitor connection owns
the session. Updates are compare-and-set loops, since any gateway may write at any time.

A session ended through the API also gets an `EndedRecord` in a second bucket,
`cobrowse_ended`, whose TTL outlives every token of the session (`ended_ttl`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from .budget import CarriedBudget
from .page_info import PageInfo
from .streams import ensure_kv


class SnapshotPointer(NamedTuple):
    """Where the latest full snapshot starts: part 0's key and the stream position of the
    stored message that holds it. Late-joining agents start there."""

    epoch: int
    seq: int
    sseq: int

    @property
    def key(self) -> tuple[int, int]:
        return (self.epoch, self.seq)


@dataclass
class SessionMeta:
    epoch: int = 0
    agents: dict[str, float] = field(default_factory=dict)  # aid -> joined at (unix s)
    snap: SnapshotPointer | None = None  # stored as [epoch, seq, stream seq]
    snap_wanted: bool = False
    vgen: int = 0  # bumped by every visitor connection: the newest one owns the session
    # Last seq acked to each sender when its connection ended: "v" (this epoch's visitor) and
    # each agent id. Informational (operators, status): resumes read the stream itself,
    # which is authoritative even after a gateway crash that skipped this write.
    durable: dict[str, int] = field(default_factory=dict)
    # Set by the HTTP API (router): the site it belongs to, its short code, when it was
    # created, and whether it has been ended (then every gateway refuses and closes it).
    site: str | None = None
    code: str | None = None
    created: float = 0.0
    ended: bool = False
    # The visitor's send budget when its last connection saved it (gateway/budget.py),
    # stored as [events, bytes, unix s]: a reconnect does not get a fresh burst.
    budget: CarriedBudget | None = None
    # The visitor's page as of the latest snapshot, stored as [url, title] (page_info.py):
    # what the agents' console lists.
    page: PageInfo | None = None
    # The agent id the visitor granted remote control to, None: nobody
    # (gateway/remote_control.py). Written only by gateways, from the visitor's own events.
    control: str | None = None

    @classmethod
    def from_bytes(cls, data: bytes) -> SessionMeta:
        raw = json.loads(data)
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        snap = known.get("snap")
        known["snap"] = (
            SnapshotPointer(*snap) if isinstance(snap, list) and len(snap) == 3 else None
        )
        budget = known.get("budget")
        known["budget"] = (
            CarriedBudget(*budget)
            if isinstance(budget, list)
            and len(budget) in (3, 4)  # 3: written before the session byte cap
            and all(isinstance(x, int | float) for x in budget)
            else None
        )
        known["page"] = PageInfo.from_stored(known.get("page"))
        if not isinstance(known.get("control"), str):
            known["control"] = None
        return cls(**known)

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class StoredMeta:
    """One read of a session's entry: its bytes and KV revision (None: no key), so that an
    update can compare-and-set on that revision instead of reading the entry again (a hello
    reads it anyway: one NATS round trip fewer per join)."""

    raw: bytes | None
    revision: int | None

    def meta(self) -> SessionMeta | None:
        """The metadata, parsed afresh on every call (an update mutates what it gets)."""
        return SessionMeta.from_bytes(self.raw) if self.raw else None


async def load_stored(kv, sid: str) -> StoredMeta:
    try:
        entry = await kv.get(sid)
    except KeyNotFoundError:
        return StoredMeta(None, None)
    return StoredMeta(entry.value or None, entry.revision)


async def load(kv, sid: str) -> SessionMeta | None:
    return (await load_stored(kv, sid)).meta()


async def update(
    kv,
    sid: str,
    change: Callable[[SessionMeta], None],
    attempts: int = 50,
    start: StoredMeta | None = None,
) -> SessionMeta:
    """Read-modify-write with compare-and-set; `change` mutates the metadata in place. With
    `start` (a read just made), the first attempt writes on its revision without reading;
    a conflict reads again."""
    for _ in range(attempts):
        stored = start if start is not None else await load_stored(kv, sid)
        start = None
        meta, rev = stored.meta() or SessionMeta(), stored.revision
        change(meta)
        try:
            if rev is None:
                await kv.create(sid, meta.to_bytes())
            else:
                await kv.update(sid, meta.to_bytes(), last=rev)
            return meta
        except KeyWrongLastSequenceError:
            continue
        except Exception as exc:  # create() on an existing key raises a generic API error
            if "wrong last sequence" in str(exc).lower() or "key exists" in str(exc).lower():
                continue
            raise
    raise RuntimeError(f"session {sid}: KV update kept conflicting")


# ---- ended sessions ------------------------------------------------------------------------

ENDED_BUCKET = "cobrowse_ended"
# Added to the longest token lifetime: clocks of different hosts disagree by seconds, and a
# resume token may be minted a few seconds after the end (a hello under way when the end
# came: hello timeout plus KV timeouts); an hour covers both with a wide margin.
ENDED_SKEW = 3600.0


@dataclass(frozen=True)
class EndedRecord:
    """A session was ended through the API at `at` (unix s). Kept in its own bucket, whose
    TTL outlives every token of the session: the session's metadata expires after the
    stream's max age (6 h by default) while a resume token lives 24 h, and a hello must not
    take "no metadata" for "not ended"."""

    at: float

    def to_bytes(self) -> bytes:
        return json.dumps({"at": self.at}, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> EndedRecord:
        """Anything unreadable still says "ended": the key exists only for ended sessions."""
        try:
            at = json.loads(data).get("at")
        except (ValueError, AttributeError):
            at = None
        return cls(float(at) if isinstance(at, int | float) else 0.0)


def ended_ttl(*token_lifetimes: float) -> float:
    """The ended bucket's TTL: the longest lifetime of any token a session hands out (join
    tokens, resume tokens), plus ENDED_SKEW. Tokens minted before the end expire before the
    record does."""
    return max(token_lifetimes, default=0.0) + ENDED_SKEW


async def ensure_ended_bucket(js, ttl: float, storage: str, replicas: int):
    """Open the ended bucket, creating it when missing, and raise its TTL when it is shorter
    than `ttl`: the router (join tokens) and the gateways (resume tokens) each know only
    their own lifetimes, so the bucket keeps the longest anyone needs. Never lowered."""
    kv = await ensure_kv(js, ENDED_BUCKET, ttl, storage, replicas)
    info = await js.stream_info(f"KV_{ENDED_BUCKET}")
    if (info.config.max_age or 0) < ttl:
        info.config.max_age = ttl
        await js.update_stream(info.config)
    return kv


async def load_ended(kv_ended, sid: str) -> EndedRecord | None:
    try:
        entry = await kv_ended.get(sid)
    except KeyNotFoundError:
        return None
    return None if entry.value is None else EndedRecord.from_bytes(entry.value)


async def put_ended(kv_ended, sid: str, now: float) -> EndedRecord:
    """Record the end (a plain put: ending twice keeps the session ended)."""
    record = EndedRecord(now)
    await kv_ended.put(sid, record.to_bytes())
    return record


async def load_with_ended(kv, kv_ended, sid: str) -> tuple[StoredMeta, EndedRecord | None]:
    """The session's entry and its ended record, read concurrently (one bridge crossing
    per hello)."""
    stored, ended = await asyncio.gather(load_stored(kv, sid), load_ended(kv_ended, sid))
    return stored, ended
