"""The router's side of sessions: create one with a short code, resolve a code, list, end.

A session's metadata is the gateways' `SessionMeta` in the `cobrowse_sessions` KV bucket; the
router adds `site`, `code`, `created` and `ended`, and an ended session gets a record in the
`cobrowse_ended` bucket that outlives every token of the session (gateway/session_store.py). Short codes live in a second bucket,
`cobrowse_codes` (key: the six digits, value: the session id), claimed with `kv.create`, which
fails when the key exists, so two live sessions never share a code. A code entry whose
session no longer accepts it (expired, ended, gone) may be taken over, compare-and-set.

The decisions (`code_live`, `new_session_id`) are plain functions; the rest are asyncio
coroutines for `NatsBridge.call`, one crossing per API operation.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from nats.js.errors import APIError, KeyNotFoundError, KeyWrongLastSequenceError

from gateway import agent_roster, session_store
from gateway.codec import SESSION_ID_RE
from gateway.session_store import SessionMeta
from gateway.streams import ensure_kv

from . import shortcodes

CODE_ATTEMPTS = 32


class CodeSpaceExhausted(RuntimeError):
    """No free short code after CODE_ATTEMPTS tries (about a million live sessions)."""


def new_session_id(token: Callable[[int], str] = secrets.token_urlsafe) -> str:
    """16 characters of [A-Za-z0-9_-] (96 random bits): a valid gateway session id, safe as
    a NATS subject token and a KV key."""
    sid = token(12)
    if not SESSION_ID_RE.fullmatch(sid) or len(sid) != 16:
        raise ValueError(f"generated session id {sid!r} is not subject-safe")
    return sid


def valid_session_id(sid: str) -> bool:
    return SESSION_ID_RE.fullmatch(sid) is not None


def code_live(
    meta: SessionMeta | None,
    code: str,
    now: float,
    code_ttl: float,
    live: agent_roster.LiveGateways | None = None,
) -> bool:
    """Whether `code` still lets an agent join the session `meta` describes.

    A code works until `created + code_ttl`; once an agent has joined it keeps working (more
    agents may join the same way) until the session ends, its code entry expires, or every
    agent has gone for good (agent_roster.py, judged with the registry `live` if given).
    A new session's claim of a code judges without the registry: it never takes over a
    code that some agent might still use."""
    if meta is None or meta.ended or meta.code != code:
        return False
    return bool(agent_roster.present(meta, now, live)) or now < meta.created + code_ttl


def code_expires_at(meta: SessionMeta, code_ttl: float) -> float:
    return meta.created + code_ttl


@dataclass(frozen=True)
class Created:
    sid: str
    code: str
    meta: SessionMeta


async def ensure_codes_bucket(js, bucket: str, ttl: float, storage: str, replicas: int):
    return await ensure_kv(js, bucket, ttl, storage, replicas)


def _conflict(exc: Exception) -> bool:
    """A compare-and-set write lost: the key exists or moved on since we read it."""
    text = str(exc).lower()
    return (
        isinstance(exc, KeyWrongLastSequenceError)
        or "wrong last sequence" in text
        or "key exists" in text
    )


async def _get(kv, key: str):
    try:
        entry = await kv.get(key)
    except KeyNotFoundError:  # also a deleted key (KeyDeletedError subclasses it)
        return None
    return entry if entry.value else None


async def _claim_code(
    kv_sessions, kv_codes, sid: str, code: str, now: float, code_ttl: float
) -> bool:
    """Point `code` at `sid` if it is free or its session no longer accepts it."""
    try:
        await kv_codes.create(code, sid.encode())
        return True
    except APIError as exc:
        if not _conflict(exc):
            raise
    entry = await _get(kv_codes, code)
    if entry is None:
        return False  # deleted meanwhile; the next attempt draws another code
    holder = await session_store.load(kv_sessions, entry.value.decode())
    if code_live(holder, code, now, code_ttl):
        return False
    try:
        await kv_codes.update(code, sid.encode(), last=entry.revision)
        return True
    except APIError as exc:
        if _conflict(exc):  # someone else took it over first
            return False
        raise


async def create(
    kv_sessions,
    kv_codes,
    sid: str,
    *,
    site: str,
    now: float,
    code_ttl: float,
    rng: random.Random | random.SystemRandom,
) -> Created:
    """Record a new session for `site` and give it a short code unique among live sessions.

    The metadata is written first (with `created`), so a session whose code claim is in
    progress never looks stale to a concurrent claim of the same code. Three KV writes and
    no reads when nothing races: the metadata is created, the code claimed, and the code
    written with the revision the create returned (a read-modify-write before each write
    made it five operations, about 3 ms more of the router's CPU per create here)."""
    meta = SessionMeta(site=site, created=now)
    try:
        rev = await kv_sessions.create(sid, meta.to_bytes())
    except (KeyWrongLastSequenceError, APIError) as exc:
        if _conflict(exc):
            raise ValueError(f"session id {sid} already in use") from None
        raise
    for _ in range(CODE_ATTEMPTS):
        code = shortcodes.new_code(rng)
        if await _claim_code(kv_sessions, kv_codes, sid, code, now, code_ttl):
            break
    else:
        raise CodeSpaceExhausted(f"no free short code after {CODE_ATTEMPTS} attempts")

    def coded(meta: SessionMeta) -> None:
        meta.code = code

    coded(meta)
    try:
        await kv_sessions.update(sid, meta.to_bytes(), last=rev)
    except (KeyWrongLastSequenceError, APIError) as exc:
        if not _conflict(exc):
            raise
        meta = await session_store.update(kv_sessions, sid, coded)  # it moved on meanwhile
    return Created(sid, code, meta)


async def resolve_code(
    kv_sessions,
    kv_codes,
    code: str,
    now: float,
    code_ttl: float,
    live: agent_roster.LiveGateways | None = None,
) -> tuple[str, SessionMeta] | None:
    """The session a code lets an agent join, or None (unknown, expired, ended: all alike)."""
    entry = await _get(kv_codes, code)
    if entry is None:
        return None
    sid = entry.value.decode()
    meta = await session_store.load(kv_sessions, sid)
    if not code_live(meta, code, now, code_ttl, live):
        return None
    return sid, meta


async def list_sessions(kv_sessions, *, include_ended: bool = False):
    """[(sid, meta)] of every session in the KV bucket, oldest first.

    One pass of a KV watcher over the latest value of every key (one ordered consumer, the
    values pushed in a stream), not a key listing followed by a request per session: the
    console polls this, so its cost is one consumer and the bytes of the metadata."""
    watcher = await kv_sessions.watchall(ignore_deletes=True)
    out: list[tuple[str, SessionMeta]] = []
    try:
        async for entry in watcher:
            if entry is None:  # the initial values are all delivered
                break
            if not entry.value:
                continue
            meta = SessionMeta.from_bytes(entry.value)
            if include_ended or not meta.ended:
                out.append((entry.key, meta))
    finally:
        await watcher.stop()
    return sorted(out, key=lambda item: (item[1].created, item[0]))


async def mark_ended(
    kv_sessions, kv_ended, sid: str, now: float, *, vouched: bool = False
) -> SessionMeta | None:
    """Write the session's ended record (it outlives every token: gateways refuse the session
    for good), then set `ended` in its metadata. None, and nothing written, when there is no
    such session; `vouched`: a token of this session was shown, so it existed even when its
    metadata has expired (6 h by default) while its resume tokens (24 h) have not."""
    meta = await session_store.load(kv_sessions, sid)
    if meta is None and not vouched and await session_store.load_ended(kv_ended, sid) is None:
        return None
    await session_store.put_ended(kv_ended, sid, now)
    if meta is None:
        return SessionMeta(ended=True)  # not recreated: the ended record is what counts

    def end(meta: SessionMeta) -> None:
        meta.ended = True

    return await session_store.update(kv_sessions, sid, end)


async def release_code(kv_codes, code: str, sid: str) -> bool:
    """Delete the code's entry if it still points at `sid`."""
    entry = await _get(kv_codes, code)
    if entry is None or entry.value.decode() != sid:
        return False
    try:
        await kv_codes.delete(code, last=entry.revision)
    except APIError as exc:
        if _conflict(exc):  # taken over meanwhile: it belongs to another session now
            return False
        raise
    return True
