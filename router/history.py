"""A session's retained visitor events, read page by page for replay (`/replay`).

The stream is already the recording: every visitor frame is stored on `cb.<sid>.v` for the
stream's max age (6 h by default), snapshots included. A page is one batched direct get
(`next_by_subj`, the read the gateways use to resume) from a stream position, so a replay
costs no consumer and no state on the server; the client walks forward with `next`.

The request/reply shape is sans-I/O (`page_request`, `Page.add`); `read_page` is the one
asyncio coroutine (nats-py, run through the router's bridge) that sends it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import msgpack

from gateway.codec import decode_batch
from gateway.streams import DIRECT_GET_BATCH, batch_request, direct_get_subject, subject_v

MAX_PAGE_MESSAGES = DIRECT_GET_BATCH
"""At most this many stored messages a page: one batched direct get."""
MAX_PAGE_BYTES = 4 * 2**20
"""A page stops after about this many stored bytes (4 MiB: a few snapshots), so one request
never makes the router hold more; the last message may pass it by up to 1 MiB."""
REQUEST_TIMEOUT = 5.0


@dataclass
class Page:
    """What one request read: events as [stream position, epoch, seq, kind, ts, payload],
    in stream order, and where the next page starts (None: the stored end was reached)."""

    events: list[list[Any]] = field(default_factory=list)
    messages: int = 0
    next: int | None = None
    last_pos: int = 0

    def add(self, pos: int, body: bytes) -> None:
        """One stored message at stream position `pos`; a body that is not a stored batch is
        skipped (counted, so the page still moves on)."""
        self.messages += 1
        self.last_pos = max(self.last_pos, pos)
        try:
            batch = decode_batch(body)
        except ValueError:  # msgpack's decode errors are ValueErrors too
            return
        for item in batch.items:
            if type(item) is list and len(item) == 4:
                self.events.append([pos, batch.epoch, *item])

    def encode(self) -> bytes:
        return msgpack.packb(
            {"events": self.events, "next": self.next, "messages": self.messages},
            use_bin_type=True,
        )


def page_request(sid: str, start: int, limit: int) -> bytes:
    """The batched direct-get request for a page of `sid`'s visitor subject from `start`."""
    return batch_request(subject_v(sid), start, limit, MAX_PAGE_BYTES)


async def read_page(nc: Any, stream: str, sid: str, start: int, limit: int) -> Page:
    """One page (nats-py, asyncio). The replies end with a status message: 204 (batch
    done, maybe more stored), 404 (nothing at or after `start`)."""
    limit = max(1, min(limit, MAX_PAGE_MESSAGES))
    inbox = nc.new_inbox()
    queue: asyncio.Queue = asyncio.Queue()

    async def on_msg(msg: Any) -> None:
        queue.put_nowait(msg)

    sub = await nc.subscribe(inbox, cb=on_msg)
    page = Page()
    at_end = False
    try:
        await nc.publish(direct_get_subject(stream), page_request(sid, start, limit), reply=inbox)
        async with asyncio.timeout(REQUEST_TIMEOUT):
            while True:
                msg = await queue.get()
                status = (msg.headers or {}).get("Status")
                if status is not None:
                    # 204 + Nats-Num-Pending 0, or 404: nothing more is stored now.
                    pending = (msg.headers or {}).get("Nats-Num-Pending")
                    at_end = status == "404" or pending == "0"
                    break
                page.add(int(msg.headers["Nats-Sequence"]), msg.data)
                if page.messages >= limit:
                    break
    finally:
        await sub.unsubscribe()
    page.next = None if at_end or not page.messages else page.last_pos + 1
    return page
