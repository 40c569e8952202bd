"""Gateway membership in a NATS KV bucket, and each session's order of gateways.

Every gateway writes its entry (id, public URL, admin URL, state, connections, load) every
few seconds into a bucket whose entries expire after a TTL, so a gateway that dies
disappears on its own. A session's gateways are ordered by rendezvous hashing of its id over
the active gateways: visitor and agents meet on the first, and when it drains they all
move to the next one in the same order.

The functions here are asyncio coroutines (nats-py), called through NatsBridge.call.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

from nats.js.errors import NoKeysError

from .rendezvous import order
from .streams import ensure_kv

BUCKET = "cobrowse_gateways"
TTL = 10.0  # an entry not refreshed for this long is gone
HEARTBEAT = 2.0
DRAIN_SUBJECT = "cobrowse.admin.drain.{gateway_id}"
# A gateway id, or a worker's: "<gateway id>.w<index>" (`python -m gateway --workers N`).
GATEWAY_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}(\.w[0-9]{1,4})?")


def drain_subject(gateway_id: str) -> str:
    """Where a gateway's workers all listen for a drain request, and (with a worker's id)
    where that worker alone does."""
    return DRAIN_SUBJECT.format(gateway_id=gateway_id)


def workers_of(gateway_id: str, gateways: list[GatewayInfo]) -> list[GatewayInfo]:
    """The registered processes a drain of `gateway_id` reaches: the gateway itself, or
    every worker of it, or the one worker a worker id names."""
    return [g for g in gateways if g.id == gateway_id or g.id.rpartition(".w")[0] == gateway_id]


@dataclass
class GatewayInfo:
    id: str
    url: str
    state: str = "active"  # active | draining
    connections: int = 0
    load: float = 0.0  # CPU seconds per second used by the process over the last beat
    admin_url: str | None = None
    updated: float = 0.0
    # Random per process: a restart under the same id is another instance, so an agent whose
    # connection died with the old one is not taken for connected (gateway/agent_roster.py).
    instance: str = ""

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> GatewayInfo:
        raw = json.loads(data)
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})


async def ensure_bucket(js, storage: str = "memory", replicas: int = 1):
    return await ensure_kv(js, BUCKET, TTL, storage, replicas)


async def put(kv, info: GatewayInfo) -> None:
    await kv.put(info.id, info.to_bytes())


async def remove(kv, gateway_id: str) -> None:
    await kv.delete(gateway_id)


async def list_gateways(kv) -> list[GatewayInfo]:
    try:
        keys = await kv.keys()
    except NoKeysError:
        return []
    out = []
    for k in keys:
        try:
            entry = await kv.get(k)
        except Exception:  # deleted or expired between keys() and get()
            continue
        if entry.value:
            out.append(GatewayInfo.from_bytes(entry.value))
    return sorted(out, key=lambda g: g.id)


def urls_for(sid: str, gateways: list[GatewayInfo], exclude: tuple[str, ...] = ()) -> list[str]:
    """The session's gateway URLs, best first: rendezvous order over active gateways."""
    active = {g.id: g for g in gateways if g.state == "active" and g.id not in exclude}
    urls: list[str] = []
    for i in order(sid, list(active)):
        if active[i].url not in urls:  # worker processes of one gateway share its URL
            urls.append(active[i].url)
    return urls


def drain_hint(sid: str, gateways: list[GatewayInfo], own_url: str) -> list[str] | None:
    """Where a draining gateway sends a client of `sid`: the first URL of the session's order
    that is not its own (nor a sibling worker's behind the same URL), the URL the router
    would now hand both ends; None when there is no other gateway."""
    others = [u for u in urls_for(sid, gateways) if u != own_url]
    return others[:1] or None
