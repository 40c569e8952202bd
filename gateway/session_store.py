"""Session metadata in a NATS KV bucket, so a gateway holds nothing a restart loses.

One key per session: the visitor's epoch, the agents that joined, where the latest full
snapshot starts, whether a snapshot has been asked for, and which visitor connection owns
the session. Updates are compare-and-set loops, since any gateway may write at any time.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError


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

    @classmethod
    def from_bytes(cls, data: bytes) -> SessionMeta:
        raw = json.loads(data)
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        snap = known.get("snap")
        known["snap"] = (
            SnapshotPointer(*snap) if isinstance(snap, list) and len(snap) == 3 else None
        )
        return cls(**known)

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()


async def load(kv, sid: str) -> SessionMeta | None:
    try:
        entry = await kv.get(sid)
    except KeyNotFoundError:
        return None
    if entry.value is None:
        return None
    return SessionMeta.from_bytes(entry.value)


async def update(
    kv, sid: str, change: Callable[[SessionMeta], None], attempts: int = 50
) -> SessionMeta:
    """Read-modify-write with compare-and-set; `change` mutates the metadata in place."""
    for _ in range(attempts):
        try:
            entry = await kv.get(sid)
            meta = SessionMeta.from_bytes(entry.value) if entry.value else SessionMeta()
            rev = entry.revision
        except KeyNotFoundError:
            meta, rev = SessionMeta(), None
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
