"""Session metadata in a NATS KV bucket, so a gateway holds nothing a restart loses.

One key per session: the visitor's epoch, the agents that joined, where the latest full
snapshot starts, whether a snapshot has been asked for, and which visitor connection owns
the session. Updates are compare-and-set loops, since any gateway may write at any time.

A session ended through the API also gets an `EndedRecord` in a second bucket,
`cobrowse_ended`, whose TTL outlives every token of the session (`ended_ttl`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import trio
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from . import kv_client
from .budget import CarriedBudget
from .nats_client import NatsClient
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


class AgentHost(NamedTuple):
    """Which gateway process holds an agent's latest connection: its id and the instance it
    registered under (gateway/membership.py; a restart under the same id is a new instance),
    that connection's join time (the generation it describes) and until when its resume
    token lets the agent come back. A reader that finds the instance gone from the registry
    knows the connection died with its gateway (gateway/agent_roster.py)."""

    gateway: str
    instance: str
    joined_at: float
    resumable_until: float

    @classmethod
    def from_stored(cls, raw: object) -> AgentHost | None:
        if (
            isinstance(raw, list)
            and len(raw) == 4
            and all(isinstance(x, str) for x in raw[:2])
            and all(isinstance(x, int | float) and not isinstance(x, bool) for x in raw[2:])
        ):
            return cls(*raw)
        return None


@dataclass
class SessionMeta:
    epoch: int = 0
    agents: dict[str, float] = field(default_factory=dict)  # aid -> joined at (unix s)
    # Agents whose latest connection dropped without a bye: aid -> until when it may resume
    # (unix s). Past that the agent is gone (gateway/agent_roster.py).
    away: dict[str, float] = field(default_factory=dict)
    # Where each agent's latest connection was made, stored as [gateway, instance, joined at,
    # resumable until]: a reader that has the registry tells an agent whose gateway was
    # killed from a connected one (gateway/agent_roster.py).
    hosts: dict[str, AgentHost] = field(default_factory=dict)
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
    # Fields this version does not know, written back as they were read: in a rolling
    # upgrade an older gateway rewrites entries whose newer fields it cannot name, and must
    # not drop them (docs/operations.md).
    unknown: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_bytes(cls, data: bytes) -> SessionMeta:
        raw = json.loads(data)
        if not isinstance(raw, dict):
            raw = {}
        fields = cls.__dataclass_fields__
        known = {k: raw[k] for k in fields if k in raw and k != "unknown"}
        known["unknown"] = {k: v for k, v in raw.items() if k not in fields or k == "unknown"}
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
        for name in ("agents", "away"):
            known[name] = _times(known.get(name))
        hosts = known.get("hosts")
        known["hosts"] = {
            aid: host
            for aid, raw_host in (hosts.items() if isinstance(hosts, dict) else ())
            if (host := AgentHost.from_stored(raw_host)) is not None
        }
        if not isinstance(known.get("control"), str):
            known["control"] = None
        return cls(**known)

    def to_bytes(self) -> bytes:
        stored = asdict(self)
        return json.dumps({**stored.pop("unknown"), **stored}, separators=(",", ":")).encode()


def _times(raw: object) -> dict[str, float]:
    """A stored map of id -> unix time; entries of any other shape are dropped."""
    if not isinstance(raw, dict):
        return {}
    return {
        k: v
        for k, v in raw.items()
        if isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
    }


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
    """Read-modify-write with compare-and-set (nats-py); `change` mutates the metadata in
    place. With `start` (a read just made), the first attempt writes on its revision without
    reading; a conflict reads again."""

    async def write(data: bytes, rev: int | None) -> bool:
        try:
            if rev is None:
                await kv.create(sid, data)
            else:
                await kv.update(sid, data, last=rev)
            return True
        except KeyWrongLastSequenceError:
            return False
        except Exception as exc:  # create() on an existing key raises a generic API error
            if "wrong last sequence" in str(exc).lower() or "key exists" in str(exc).lower():
                return False
            raise

    return await compare_and_set(lambda: load_stored(kv, sid), write, sid, change, attempts, start)


async def compare_and_set(
    read: Callable[[], Awaitable[StoredMeta]],
    write: Callable[[bytes, int | None], Awaitable[bool]],
    sid: str,
    change: Callable[[SessionMeta], None],
    attempts: int,
    start: StoredMeta | None,
) -> SessionMeta:
    """The loop of both transports: `write` returns False on a conflict."""
    for _ in range(attempts):
        stored = start if start is not None else await read()
        start = None
        meta = stored.meta() or SessionMeta()
        change(meta)
        if await write(meta.to_bytes(), stored.revision):
            return meta
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
    return EndedRecord.from_bytes(entry.value or b"")  # nats-py reads an empty value as None


async def put_ended(kv_ended, sid: str, now: float) -> EndedRecord:
    """Record the end (a plain put: ending twice keeps the session ended)."""
    record = EndedRecord(now)
    await kv_ended.put(sid, record.to_bytes())
    return record


# ---- over the gateway's trio client ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionBucket:
    """The session and ended buckets over the gateway's trio NATS client (kv_client.py): the
    hello's reads and writes without the trio-asyncio bridge. Same entries as the nats-py
    functions above, read the same way: an empty or deleted entry has no metadata, an ended
    record that exists says "ended" however it reads."""

    nc: NatsClient
    bucket: str
    timeout: float
    ended_bucket: str = ENDED_BUCKET

    async def load_stored(self, sid: str) -> StoredMeta:
        entry = await kv_client.get(self.nc, self.bucket, sid, self.timeout)
        return StoredMeta(entry.value or None, entry.revision or None)

    async def load(self, sid: str) -> SessionMeta | None:
        return (await self.load_stored(sid)).meta()

    async def load_with_ended(self, sid: str) -> tuple[StoredMeta, EndedRecord | None]:
        """The entry and the ended record, read side by side."""
        got: dict[str, object] = {}

        async def ended() -> None:
            entry = await kv_client.get(self.nc, self.ended_bucket, sid, self.timeout)
            got["ended"] = None if entry.value is None else EndedRecord.from_bytes(entry.value)

        async with trio.open_nursery() as n:
            n.start_soon(ended)
            got["meta"] = await self.load_stored(sid)
        return got["meta"], got["ended"]  # type: ignore[return-value]

    async def update(
        self,
        sid: str,
        change: Callable[[SessionMeta], None],
        start: StoredMeta | None = None,
        attempts: int = 50,
    ) -> SessionMeta:
        async def write(data: bytes, rev: int | None) -> bool:
            try:
                await kv_client.write(self.nc, self.bucket, sid, data, rev or 0, self.timeout)
                return True
            except kv_client.KvConflict:
                return False

        return await compare_and_set(
            lambda: self.load_stored(sid), write, sid, change, attempts, start
        )
