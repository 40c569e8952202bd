"""A KV bucket's read and compare-and-set write over the gateway's own trio NATS client.

A resumed connection's hello reads and writes the session bucket four times (admission's
resume check, the metadata with the ended record, the update, the re-read after
subscribing). Through nats-py on the trio-asyncio bridge each took 100-330 ms at the median
in a 300-session `drain` here, with the gateways busy: a resumed connection's set-up took
0.8-1.0 s at the median, up to 2.4 s; the stream reads of the same hello, on this client, took
5-10 ms. The bucket is a stream (`KV_<bucket>`, one subject `$KV.<bucket>.<key>` per key), so
both operations are plain JetStream requests:

- read: `$JS.API.STREAM.MSG.GET.KV_<bucket>` with `last_by_subj` (a bucket made by nats-py has
  no direct gets), the message's stream position being the key's revision;
- write: a publish to the key's subject with `Nats-Expected-Last-Subject-Sequence: <revision>`
  (0: no message yet), answered by the stream's ack or, when another write came first,
  err_code 10071 ("wrong last sequence: N"), or on a replicated bucket 10164 ("wrong last
  sequence") while the other write is still being replicated: both are `KvConflict`.

A deleted or purged key (`KV-Operation` header) reads as no value with its marker's revision,
so a write after it expects that revision. The parsing is sans-I/O (`parse_get`, `parse_ack`).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from .jetstream_codes import LOST_COMPARE_AND_SET, NO_MESSAGE
from .nats_client import NatsClient
from .nats_wire import ProtocolError, parse_headers


class KvError(Exception):
    """The bucket answered with an error, or with something that is not an answer."""


class KvConflict(KvError):
    """Another write to the key came after the revision the write expected."""


@dataclass(frozen=True, slots=True)
class KvEntry:
    """A key's last message: its value (None: no message, or a delete or purge marker; an
    empty value is b"") and revision (its stream position; 0: the key has no message)."""

    value: bytes | None
    revision: int


def stream_name(bucket: str) -> str:
    return f"KV_{bucket}"


def key_subject(bucket: str, key: str) -> str:
    return f"$KV.{bucket}.{key}"


@dataclass(frozen=True, slots=True)
class GotMessage:
    """A stored message as a `STREAM.MSG.GET` answer carries it."""

    seq: int  # its stream position
    headers: dict[str, str]
    data: bytes


def last_by_subject(subject: str) -> bytes:
    """The `STREAM.MSG.GET` request for a subject's newest message."""
    return json.dumps({"last_by_subj": subject}).encode()


def parse_msg_get(data: bytes) -> GotMessage | None:
    """Sans-I/O: a `STREAM.MSG.GET` answer (a KV key's or a stream subject's last message);
    None when there is none (err_code 10037, not 404 alone: "stream not found" is a 404
    too). Any other error, or an answer that does not parse, is a `KvError`."""
    try:
        resp = json.loads(data)
        if "error" in resp:
            err = resp["error"]
            if err.get("err_code") == NO_MESSAGE:
                return None
            raise KvError(f"stream get failed: {err.get('description', err)}")
        msg = resp["message"]
        headers = parse_headers(base64.b64decode(msg["hdrs"])) if msg.get("hdrs") else {}
        body = base64.b64decode(msg["data"]) if msg.get("data") else b""
        return GotMessage(int(msg["seq"]), headers, body)
    except KvError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error, ProtocolError) as exc:
        raise KvError(f"not a stream get answer: {data[:100]!r}") from exc


def parse_get(data: bytes) -> KvEntry:
    """A STREAM.MSG.GET answer for the key's last message."""
    got = parse_msg_get(data)
    if got is None:
        return KvEntry(None, 0)
    if got.headers.get("KV-Operation") in ("DEL", "PURGE"):
        return KvEntry(None, got.seq)
    return KvEntry(got.data, got.seq)


def parse_ack(data: bytes) -> int:
    """A write's answer: the new revision; `KvConflict` when the expected revision failed."""
    try:
        resp = json.loads(data)
        if "error" in resp:
            err = resp["error"]
            if err.get("err_code") in LOST_COMPARE_AND_SET:
                raise KvConflict(err.get("description", "wrong last sequence"))
            raise KvError(f"KV write failed: {err.get('description', err)}")
        return int(resp["seq"])
    except KvError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise KvError(f"not a JetStream ack: {data[:100]!r}") from exc


async def _answer(nc: NatsClient, subject: str, data: bytes, timeout: float, **kw) -> bytes:
    msg = await nc.request(subject, data, timeout=timeout, **kw)  # TooSlowError after timeout
    if msg.status is not None:  # 503: no responders (the stream has no leader yet)
        raise KvError(f"KV request not answered: {msg.status} {msg.description or ''}".strip())
    return msg.data


async def get(nc: NatsClient, bucket: str, key: str, timeout: float) -> KvEntry:
    subject = f"$JS.API.STREAM.MSG.GET.{stream_name(bucket)}"
    return parse_get(await _answer(nc, subject, last_by_subject(key_subject(bucket, key)), timeout))


async def write(
    nc: NatsClient, bucket: str, key: str, value: bytes, last: int, timeout: float
) -> int:
    """Store `value` if the key's revision is still `last`; the new revision."""
    headers = {"Nats-Expected-Last-Subject-Sequence": str(last)}
    return parse_ack(await _answer(nc, key_subject(bucket, key), value, timeout, headers=headers))
