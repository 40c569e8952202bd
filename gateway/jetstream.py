"""The gateway's JetStream publishes: headers out, acknowledgements back to their connection.

Every publish carries a reply subject `<prefix><token>` under one wildcard subscription of
the gateway, so an acknowledgement costs a dictionary lookup, not a subscription, a future or
a task (nats-py's per-request path). A token names one message in flight and survives its
retries; a late duplicate answer for a message already settled finds no token and is dropped.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from .nats_client import Msg, NatsClient
from .publish_chain import ChainMessage


@dataclass(slots=True)
class AckReply:
    """JetStream's answer to one publish: `seq` when stored, else an error."""

    seq: int | None
    code: int | None = None  # HTTP-like: 503 no stream leader, 408 timeout, 400 ...
    err_code: int | None = None  # JetStream's own code (10071: wrong last sequence)
    text: str = ""


_HEADERS = b"NATS/1.0\r\nNats-Msg-Id: %b\r\nNats-Expected-Last-Subject-Sequence: %d\r\n\r\n"
# When the message's oldest client frame reached its gateway, in wall-clock microseconds: a
# receiving gateway (any of them) observes delivery latency with it, one header per message.
_RECEIVED = b"Cb-Received: "
_HEADERS_RECEIVED = _HEADERS[:-2] + _RECEIVED + b"%d\r\n\r\n"
_STORED_PREFIX = b'{"stream":"'
_SEQ = b'","seq":'


def publish_headers(msg: ChainMessage) -> bytes:
    """Sans-I/O: the `NATS/1.0` header block of one publish. Built here rather than from a
    dict: the id is made of a session id ([A-Za-z0-9_-]), an epoch or agent id and numbers,
    so it cannot hold CR or LF."""
    if msg.received:
        return _HEADERS_RECEIVED % (msg.msg_id.encode(), msg.expected, msg.received * 1e6)
    return _HEADERS % (msg.msg_id.encode(), msg.expected)


def received_at(headers: bytes) -> float | None:
    """Sans-I/O: the `Cb-Received` time of a stored message's headers, in seconds; None
    without one (a message from an older gateway) or with a bad one."""
    i = headers.find(_RECEIVED)
    if i < 0:
        return None
    j = i + len(_RECEIVED)
    k = headers.find(b"\r", j)
    digits = headers[j:k] if k >= 0 else headers[j:]
    return int(digits) / 1e6 if digits.isdigit() else None


def parse_ack(msg: Msg) -> AckReply:
    """Sans-I/O: a JetStream publish acknowledgement, or a NATS status reply.

    The common answer, `{"stream":"S","seq":N,...}`, is read without a JSON parser (a
    quarter of the cost, once per stored message); anything else goes through json."""
    data = msg.data
    if msg.headers is None and data.startswith(_STORED_PREFIX):
        i = data.find(_SEQ)
        if i > 0:
            j = i + len(_SEQ)
            k = j
            while k < len(data) and 48 <= data[k] <= 57:
                k += 1
            if k > j and data[k : k + 1] in (b",", b"}"):
                return AckReply(int(data[j:k]))
    if msg.status is not None:  # "503": no responders, no stream leader right now
        return AckReply(None, int(msg.status) if msg.status.isdigit() else None, None, "status")
    try:
        resp = json.loads(msg.data)
    except ValueError:
        return AckReply(None, None, None, "unparseable JetStream ack")
    err = resp.get("error") if isinstance(resp, dict) else None
    if err is None and isinstance(resp, dict) and type(resp.get("seq")) is int:
        return AckReply(resp["seq"])
    if not isinstance(err, dict):
        return AckReply(None, None, None, f"unexpected JetStream ack {str(resp)[:80]}")
    code, err_code = err.get("code"), err.get("err_code")
    return AckReply(
        None,
        code if type(code) is int else None,
        err_code if type(err_code) is int else None,
        str(err.get("description", "")),
    )


class Publisher:
    """Routes acknowledgements to whoever published, by token."""

    def __init__(self, nc: NatsClient) -> None:
        self.nc = nc
        self.prefix = f"_CBACK.{secrets.token_hex(6)}."
        self._next = 0
        self._waiting: dict[int, Callable[[AckReply], None]] = {}
        self._sub = nc.subscribe(self.prefix + "*", self._on_reply)

    def token(self, on_reply: Callable[[AckReply], None]) -> int:
        """A new token; `on_reply` gets every answer to it until `settle`."""
        self._next += 1
        self._waiting[self._next] = on_reply
        return self._next

    def settle(self, token: int) -> None:
        self._waiting.pop(token, None)

    def publish(self, subject: str, msg: ChainMessage, token: int) -> None:
        headers = publish_headers(msg)
        self.nc.publish(subject, msg.body, reply=f"{self.prefix}{token}", headers=headers)

    @property
    def in_flight(self) -> int:
        return len(self._waiting)

    def _on_reply(self, msg: Msg) -> None:
        try:
            token = int(msg.subject[len(self.prefix) :])
        except ValueError:
            return
        on_reply = self._waiting.get(token)
        if on_reply is not None:
            on_reply(parse_ack(msg))
