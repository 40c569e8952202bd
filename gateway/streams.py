"""JetStream layout: one stream, a subject per session and direction, read back by direct get.

Subjects: `cb.<sid>.v` (visitor -> agents), `cb.<sid>.a.<aid>` (one agent -> visitor),
`cb.<sid>.ctl` (core NATS only, not stored: takeover and snapshot requests). One stream for
all sessions rather than a stream per session, because every clustered stream is a Raft group.

The live path is a core-NATS subscription (a stream-captured publish also reaches core
subscribers); JetStream is read only to resume and to fill gaps, with batched direct gets,
so a drain's reconnect wave creates no consumers. The reads go through the gateway's own
NATS client (nats_client.py), on the same connection as its subscriptions, so a read made
after a subscription sees everything the subscription does not; a subject's tail that must
include every acknowledged publish is read from the stream's leader (`last_stored`), since
on a replicated stream a follower may answer a direct get before it holds the newest.
Stream and bucket set-up are management: asyncio coroutines on nats-py, called through
`NatsBridge.call`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import msgpack
from nats.js.api import DiscardPolicy, KeyValueConfig, StorageType, StreamConfig
from nats.js.errors import BucketNotFoundError, NotFoundError

from . import kv_client
from .codec import MAX_FRAME_BYTES, StoredBatch, decode_batch
from .nats_client import Msg, NatsClient

REQUEST_TIMEOUT = 3.0  # seconds for one direct get; a NATS reconnect may take this long


@dataclass(frozen=True)
class StreamSettings:
    stream: str = "COBROWSE"
    storage: str = "memory"  # memory (dev) | file (prod)
    replicas: int = 1
    max_age: float = 6 * 3600.0
    duplicate_window: float = 120.0  # >= 2 min: outlasts every publish retry
    max_msgs_per_subject: int = 200_000  # one session cannot fill the stream
    # All sessions together: fits the smallest NATS store we ship (k8s base: 256 MB of
    # memory, shared with the KV bucket); file storage in production sets more.
    max_bytes: int = 128 * 2**20
    kv_bucket: str = "cobrowse_sessions"


def subject_v(sid: str) -> str:
    return f"cb.{sid}.v"


def subject_a(sid: str, aid: str) -> str:
    return f"cb.{sid}.a.{aid}"


def subject_a_all(sid: str) -> str:
    return f"cb.{sid}.a.*"


def subject_ctl(sid: str) -> str:
    return f"cb.{sid}.ctl"


def msg_id_prefix(sid: str, epoch_or_aid: int | str) -> str:
    """Nats-Msg-Id of a stored batch: <sid>:<epoch>:<first>-<last> (visitor) or
    <sid>:<aid>:<first>-<last> (agent); see publish_chain.py."""
    return f"{sid}:{epoch_or_aid}"


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
        max_bytes=settings.max_bytes,
        max_msg_size=MAX_FRAME_BYTES + 4096,
        # When full, the oldest messages go, never a new publish: refusing new ones would
        # stop every session until max_age expired some (a flood would be an outage of
        # hours). What goes is old history; a receiver whose resume point went gets
        # `ctl reset` and restarts at a snapshot, as after max_age (protocol.md).
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
class StoredMessage:
    """One stored message: a batch of one sender's consecutive events, at stream position
    `sseq`."""

    sseq: int
    batch: StoredBatch
    msg_id: str | None = None  # the Nats-Msg-Id it was published with

    @property
    def epoch(self) -> int:
        return self.batch.epoch

    @property
    def first_key(self) -> tuple[int, int]:
        return (self.batch.epoch, self.batch.first)

    @property
    def last_key(self) -> tuple[int, int]:
        return (self.batch.epoch, self.batch.last)


def _stored(msg: Msg) -> StoredMessage:
    return StoredMessage(
        int(msg.header("Nats-Sequence")), decode_batch(msg.data), msg.header("Nats-Msg-Id")
    )


DIRECT_GET_BATCH = 256  # stored messages per batched direct get (the server's cap here)


def leader_elected_subject(stream: str) -> str:
    """JetStream's advisory, published in the stream's account when a new leader of the
    stream is elected (after a node holding the leader died or left)."""
    return f"$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.{stream}"


def direct_get_subject(stream: str) -> str:
    return f"$JS.API.DIRECT.GET.{stream}"


def batch_request(subject: str, pos: int, batch: int, max_bytes: int) -> bytes:
    """Sans-I/O: a batched direct get of up to `batch` messages on `subject` from stream
    position `pos`, stopping after about `max_bytes`; the replies end with a status message
    (204: this batch is done, 404: nothing at or after `pos`)."""
    req = {
        "seq": max(1, pos),
        "next_by_subj": subject,
        "batch": max(1, min(batch, DIRECT_GET_BATCH)),
        "max_bytes": max_bytes,
    }
    return json.dumps(req).encode()


class DirectGetFailed(RuntimeError):
    pass


def _check(msg: Msg, *ok: str) -> bool:
    """True for a stored message, False for an expected status (none found), else raise."""
    st = msg.status
    if st is None:
        return True
    if st in ok:
        return False
    raise DirectGetFailed(f"direct get failed: {st} {msg.description or ''}".strip())


async def last_of(nc: NatsClient, stream: str, subject: str) -> StoredMessage | None:
    """The newest stored message on a subject."""
    msg = await nc.request(f"{direct_get_subject(stream)}.{subject}", b"", timeout=REQUEST_TIMEOUT)
    return _stored(msg) if _check(msg, "404") else None


def parse_msg_get(data: bytes) -> StoredMessage | None:
    """Sans-I/O: a `STREAM.MSG.GET` answer for a subject's last message (kv_client reads
    the same answers for KV keys); None when the subject has none. Any other error, or an
    answer that is not a stored batch, raises `DirectGetFailed`."""
    try:
        got = kv_client.parse_msg_get(data)
        if got is None:
            return None
        return StoredMessage(got.seq, decode_batch(got.data), got.headers.get("Nats-Msg-Id"))
    except kv_client.KvError as exc:
        raise DirectGetFailed(str(exc)) from exc
    except (ValueError, msgpack.UnpackException) as exc:  # decode_batch
        raise DirectGetFailed(f"not a stream get answer: {data[:100]!r}") from exc


async def last_stored(nc: NatsClient, stream: str, subject: str) -> StoredMessage | None:
    """The newest stored message on a subject, as the stream's leader has it.

    On a replicated stream any replica answers a direct get (`last_of`), and a follower may
    not yet hold a message whose publish was acknowledged: `python -m loadtest.bench.replicas`
    finds 112-146 of 4,000 direct gets made right after the ack missing it (0-47 in earlier
    one-off runs), and none of the leader's reads, on a 3-node loopback cluster. What sets
    a hello's `durable`, or judges whose message a chain's tail is, must see every
    acknowledged message, so it reads through the JetStream API (`STREAM.MSG.GET`), which
    the leader answers."""
    msg = await nc.request(
        f"$JS.API.STREAM.MSG.GET.{stream}",
        kv_client.last_by_subject(subject),
        timeout=REQUEST_TIMEOUT,
    )
    if msg.status is not None:  # 503: no responders (no leader right now)
        raise DirectGetFailed(f"stream get failed: {msg.status} {msg.description or ''}".strip())
    return parse_msg_get(msg.data)


async def _next_at(nc: NatsClient, stream: str, subject: str, pos: int) -> StoredMessage | None:
    req = json.dumps({"seq": pos, "next_by_subj": subject}).encode()
    msg = await nc.request(direct_get_subject(stream), req, timeout=REQUEST_TIMEOUT)
    return _stored(msg) if _check(msg, "404") else None


async def first_of(nc: NatsClient, stream: str, subject: str) -> StoredMessage | None:
    return await _next_at(nc, stream, subject, 1)


async def locate(nc: NatsClient, stream: str, subject: str, key: tuple[int, int]) -> int | None:
    """The stream position of the first message on `subject` that holds `key` or anything
    after it; None when nothing stored comes at or after `key`.

    A subject is a chain in key order (publish_chain.py), so a binary search over stream
    positions with next-by-subject direct gets finds it in O(log n) requests."""
    last = await last_of(nc, stream, subject)
    if last is None or last.last_key < key:
        return None
    first = await first_of(nc, stream, subject)
    if first is None:
        return None
    if first.last_key >= key:
        return first.sseq
    # P(p): the first message at or after position p holds `key` or later. P is monotone,
    # false at first.sseq and true at last.sseq: find the smallest p where it holds.
    lo, hi = first.sseq, last.sseq
    while hi - lo > 1:
        mid = (lo + hi) // 2
        m = await _next_at(nc, stream, subject, mid)
        if m is None or m.last_key >= key:
            hi = mid
        else:
            lo = m.sseq if m.sseq < hi else mid
    return hi


async def read_from(
    nc: NatsClient, stream: str, subject: str, pos: int, limit: int = 2000
) -> tuple[list[StoredMessage], int | None]:
    """Up to `limit` stored messages of `subject` from stream position `pos` (batched direct
    gets, 256 messages or 8 MiB per request), and the position to continue from (None when
    the read reached the end)."""
    out: list[StoredMessage] = []
    while len(out) < limit:
        replies = await nc.request_many(
            direct_get_subject(stream),
            batch_request(subject, pos, limit - len(out), 8 * 2**20),
            timeout=REQUEST_TIMEOUT,
            until=lambda m: m.status is not None,
        )
        got = [_stored(m) for m in replies if _check(m, "404", "204")]
        if not got:
            return out, None
        out.extend(got)
        pos = got[-1].sseq + 1
    return out, pos
