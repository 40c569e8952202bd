"""JetStream layout: one stream, a subject per session and direction, read back by direct get.

Subjects: `cb.<sid>.v` (visitor -> agents), `cb.<sid>.a.<aid>` (one agent -> visitor),
`cb.<sid>.ctl` (core NATS only, not stored: takeover and snapshot requests). One stream for
all sessions rather than a stream per session, because every clustered stream is a Raft group.

The live path is a core-NATS subscription (a stream-captured publish also reaches core
subscribers); JetStream is read only to resume and to fill gaps, with batched direct gets,
so a drain's reconnect wave creates no consumers. Every function here is an asyncio
coroutine, called through `NatsBridge.call` once per operation, never per event.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import nats
from nats.js.api import DiscardPolicy, KeyValueConfig, StorageType, StreamConfig
from nats.js.errors import BucketNotFoundError, NotFoundError

from .codec import MAX_FRAME_BYTES, Event, decode_stored


@dataclass(frozen=True)
class StreamSettings:
    stream: str = "COBROWSE"
    storage: str = "memory"  # memory (dev) | file (prod)
    replicas: int = 1
    max_age: float = 6 * 3600.0
    duplicate_window: float = 120.0  # >= 2 min: outlasts every publish retry
    max_msgs_per_subject: int = 200_000  # one session cannot fill the stream
    kv_bucket: str = "cobrowse_sessions"


def subject_v(sid: str) -> str:
    return f"cb.{sid}.v"


def subject_a(sid: str, aid: str) -> str:
    return f"cb.{sid}.a.{aid}"


def subject_a_all(sid: str) -> str:
    return f"cb.{sid}.a.*"


def subject_ctl(sid: str) -> str:
    return f"cb.{sid}.ctl"


def msg_id(sid: str, epoch_or_aid: int | str, seq: int) -> str:
    """Nats-Msg-Id: <sid>:<epoch>:<seq> (visitor) or <sid>:<aid>:<seq> (agent)."""
    return f"{sid}:{epoch_or_aid}:{seq}"


def _storage(s: str) -> StorageType:
    if s not in ("memory", "file"):
        raise ValueError("storage must be 'memory' or 'file'")
    return StorageType.MEMORY if s == "memory" else StorageType.FILE


async def ensure_stream(js, settings: StreamSettings):
    """Create or update the stream and the session KV bucket; safe to run at every start."""
    cfg = StreamConfig(
        name=settings.stream,
        subjects=["cb.*.v", "cb.*.a.*"],
        storage=_storage(settings.storage),
        num_replicas=settings.replicas,
        max_age=settings.max_age,
        duplicate_window=settings.duplicate_window,
        max_msgs_per_subject=settings.max_msgs_per_subject,
        max_msg_size=MAX_FRAME_BYTES + 4096,
        discard=DiscardPolicy.OLD,
        allow_direct=True,
    )
    try:
        info = await js.stream_info(settings.stream)
    except NotFoundError:
        await js.add_stream(cfg)
    else:
        if info.config.storage != cfg.storage:
            raise RuntimeError(
                f"stream {settings.stream} exists with storage {info.config.storage}; "
                "storage cannot change in place"
            )
        await js.update_stream(cfg)
    return await ensure_kv(
        js, settings.kv_bucket, settings.max_age, settings.storage, settings.replicas
    )


async def ensure_kv(js, bucket: str, ttl: float, storage: str, replicas: int):
    """Open a KV bucket, creating it when missing (its settings apply only at creation)."""
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        return await js.create_key_value(
            KeyValueConfig(
                bucket=bucket, history=1, ttl=ttl, storage=_storage(storage), replicas=replicas
            )
        )


@dataclass(frozen=True)
class Stored:
    sseq: int  # stream sequence
    epoch: int
    event: Event

    @property
    def key(self) -> tuple[int, int]:
        return (self.epoch, self.event.seq)


def _status(msg) -> str | None:
    return msg.headers.get("Status") if msg.headers else None


async def _direct(nc: nats.NATS, stream: str, req: dict, timeout: float = 3.0):
    """Batched direct get: the stored events from the request's position.

    Collected by a subscription callback: awaiting next_msg per message costs a task and a
    timer each (about 0.4 ms per message under trio-asyncio, 20x slower)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future = loop.create_future()
    out: list[Stored] = []
    single = "batch" not in req

    async def on_msg(msg) -> None:
        if done.done():
            return
        st = _status(msg)
        if st is None:
            epoch, ev = decode_stored(msg.data)
            out.append(Stored(int(msg.headers["Nats-Sequence"]), epoch, ev))
            if single:
                done.set_result(None)
        elif st in ("204", "404"):
            done.set_result(None)
        else:
            done.set_exception(RuntimeError(f"direct get failed: {msg.headers}"))

    sub = await nc.subscribe(nc.new_inbox(), cb=on_msg)
    try:
        await nc.publish(
            f"$JS.API.DIRECT.GET.{stream}", json.dumps(req).encode(), reply=sub.subject
        )
        await asyncio.wait_for(done, timeout)
        return out
    finally:
        await sub.unsubscribe()


async def last_of(nc: nats.NATS, stream: str, subject: str) -> Stored | None:
    """The newest stored event on a subject (what is durable for that sender)."""
    msg = await nc.request(f"$JS.API.DIRECT.GET.{stream}.{subject}", b"", timeout=3.0)
    if _status(msg) is not None:
        return None
    epoch, ev = decode_stored(msg.data)
    return Stored(int(msg.headers["Nats-Sequence"]), epoch, ev)


async def _next_at(nc, stream: str, subject: str, pos: int) -> Stored | None:
    """One direct get through the connection's shared request inbox (no SUB/UNSUB)."""
    req = json.dumps({"seq": pos, "next_by_subj": subject}).encode()
    msg = await nc.request(f"$JS.API.DIRECT.GET.{stream}", req, timeout=3.0)
    st = _status(msg)
    if st == "404":
        return None
    if st is not None:
        raise RuntimeError(f"direct get failed: {msg.headers}")
    epoch, ev = decode_stored(msg.data)
    return Stored(int(msg.headers["Nats-Sequence"]), epoch, ev)


async def locate(
    nc: nats.NATS, stream: str, subject: str, key: tuple[int, int], margin: int = 1024
) -> int | None:
    """Stream position from which every event with (epoch, seq) >= key can be read.

    Binary search over stream positions with next-by-subject direct gets: O(log n) requests.
    Keys are in stream order except within the publish window (a retried publish may land
    after a later one), so the search targets `margin` sequences earlier; the reorder buffer
    drops what comes before the resume point.
    """
    last = await last_of(nc, stream, subject)
    if last is None:
        return None
    epoch, seq = key
    target = (epoch, max(1, seq - margin))
    first = await _next_at(nc, stream, subject, 1)
    if first is None:
        return None
    if first.key >= target:
        return first.sseq
    lo, hi = first.sseq + 1, last.sseq
    while lo < hi:
        mid = (lo + hi) // 2
        m = await _next_at(nc, stream, subject, mid)
        if m is None or m.key >= target:
            hi = mid
        else:
            lo = m.sseq + 1
    return lo


async def read_from(
    nc: nats.NATS, stream: str, subject: str, pos: int, limit: int = 2000
) -> tuple[list[Stored], int | None]:
    """Up to `limit` stored events of `subject` from stream position `pos`, and the position
    to continue from (None when the read reached the end)."""
    out: list[Stored] = []
    while len(out) < limit:
        batch = await _direct(
            nc,
            stream,
            {
                "seq": pos,
                "next_by_subj": subject,
                "batch": min(256, limit - len(out)),
                "max_bytes": 8 * 2**20,
            },
        )
        if not batch:
            return out, None
        out.extend(batch)
        pos = batch[-1].sseq + 1
    return out, pos


async def first_of(nc: nats.NATS, stream: str, subject: str) -> Stored | None:
    return await _next_at(nc, stream, subject, 1)
