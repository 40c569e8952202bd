"""The session buckets over the gateway's trio NATS client (kv_client.py, SessionBucket):
the answers parsed sans-I/O, and the same entries as nats-py's KV on a real server."""

from __future__ import annotations

import base64
import json

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from gateway import kv_client, session_store, streams
from gateway.kv_client import KvConflict, KvEntry, KvError, parse_ack, parse_get
from gateway.nats_bridge import open_bridge
from gateway.nats_client import NatsClient
from router import natsproc
from tests.support.jetstream import ensure_layout_when_ready


def msg_get(seq: int, data: bytes | None, hdrs: bytes | None = None) -> bytes:
    m: dict = {"subject": "$KV.b.k", "seq": seq, "time": "2026-12-02T00:00:00Z"}
    if data is not None:
        m["data"] = base64.b64encode(data).decode()
    if hdrs is not None:
        m["hdrs"] = base64.b64encode(hdrs).decode()
    return json.dumps(
        {"type": "io.nats.jetstream.api.v1.stream_msg_get_response", "message": m}
    ).encode()


def test_reads_parse_values_deletes_and_absence():
    assert parse_get(msg_get(7, b'{"epoch":1}')) == KvEntry(b'{"epoch":1}', 7)
    assert parse_get(msg_get(8, None)) == KvEntry(b"", 8)  # an empty value, not a delete
    for op in ("DEL", "PURGE"):
        hdrs = f"NATS/1.0\r\nKV-Operation: {op}\r\n\r\n".encode()
        assert parse_get(msg_get(9, None, hdrs)) == KvEntry(None, 9)
    hdrs = b"NATS/1.0\r\nNats-Msg-Id: x\r\n\r\n"
    assert parse_get(msg_get(10, b"v", hdrs)) == KvEntry(b"v", 10)
    none = {"error": {"code": 404, "err_code": 10037, "description": "no message found"}}
    assert parse_get(json.dumps(none).encode()) == KvEntry(None, 0)
    lost = {"error": {"code": 404, "err_code": 10059, "description": "stream not found"}}
    with pytest.raises(KvError, match="stream not found"):  # a 404, but not "no message"
        parse_get(json.dumps(lost).encode())


def test_acks_parse_revisions_and_conflicts():
    assert parse_ack(b'{"stream":"KV_b","seq":42}') == 42
    with pytest.raises(KvConflict, match="wrong last sequence: 41"):
        parse_ack(
            b'{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 41"}}'
        )
    # A replicated bucket's answer while the other write is still being proposed.
    with pytest.raises(KvConflict, match="wrong last sequence"):
        parse_ack(b'{"error":{"code":400,"err_code":10164,"description":"wrong last sequence"}}')
    with pytest.raises(KvError, match="insufficient resources") as exc:
        parse_ack(b'{"error":{"code":503,"err_code":10023,"description":"insufficient resources"}}')
    assert not isinstance(exc.value, KvConflict)


@given(st.binary(max_size=200))
def test_garbage_answers_are_a_kv_error_not_a_crash(data):
    for parse in (parse_get, parse_ack):
        try:
            parse(data)
        except KvError:
            pass


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda c: (
            st.lists(c, max_size=3)
            | st.dictionaries(
                st.sampled_from(["error", "message", "seq", "data", "hdrs", "err_code", "code"]),
                c,
                max_size=4,
            )
        ),
        max_leaves=12,
    )
)
def test_odd_json_is_a_kv_error_not_a_crash(value):
    data = json.dumps(value).encode()
    for parse in (parse_get, parse_ack):
        try:
            parse(data)
        except KvError:
            pass


async def test_concurrent_writers_on_a_replicated_bucket_all_land(nats_cluster):
    """On an R3 bucket most losers of a compare-and-set race are told 10164 ("wrong last
    sequence", while the winner is being replicated), not 10071: each must read again and
    land, as on one node. Before, they failed with a KvError (a join, a snapshot pointer)."""
    url = natsproc.servers_url(nats_cluster)
    settings = streams.StreamSettings(replicas=3)
    async with open_bridge(url) as bridge, NatsClient.open(url, name="kv-r3") as nc:
        with trio.fail_after(60):
            await ensure_layout_when_ready(bridge, settings)
            bucket = session_store.SessionBucket(nc, settings.kv_bucket, 5.0)
            while True:  # and then the bucket's own group leader
                try:
                    await bucket.update("kv-r3", lambda m: setattr(m, "vgen", 0))
                    break
                except (KvError, trio.TooSlowError):
                    await trio.sleep(0.5)

        def bump(m):
            m.vgen += 1

        with trio.fail_after(60):
            async with trio.open_nursery() as n:
                for _ in range(20):
                    n.start_soon(bucket.update, "kv-r3", bump)
        assert (await bucket.load("kv-r3")).vgen == 20


async def test_the_trio_bucket_reads_and_writes_what_nats_py_does(nats_server):
    async with (
        open_bridge(nats_server.url) as bridge,
        NatsClient.open(nats_server.url, name="kv-test") as nc,
    ):
        kv = await bridge.call(streams.ensure_stream, bridge.js, streams.StreamSettings())
        kv_ended = await bridge.call(
            session_store.ensure_ended_bucket, bridge.js, 60.0, "memory", 1
        )
        bucket = session_store.SessionBucket(nc, streams.StreamSettings().kv_bucket, 5.0)
        absent = await bucket.load_stored("kv-native")
        assert absent == session_store.StoredMeta(None, None)
        meta = await bucket.update("kv-native", lambda m: setattr(m, "vgen", 1), absent)
        assert meta.vgen == 1
        assert (await bridge.call(session_store.load, kv, "kv-native")).vgen == 1
        # nats-py writes, the trio bucket reads the same entry and revision
        await bridge.call(session_store.update, kv, "kv-native", lambda m: setattr(m, "epoch", 3))
        stored = await bucket.load_stored("kv-native")
        entry = await bridge.call(kv.get, "kv-native")
        assert stored.revision == entry.revision and stored.meta().epoch == 3
        # a stale revision conflicts, and update reads again
        with pytest.raises(KvConflict):
            await kv_client.write(nc, bucket.bucket, "kv-native", b"{}", absent.revision, 5.0)

        def bump(m):
            m.vgen += 1

        assert (await bucket.update("kv-native", bump, absent)).vgen == 2
        assert (await bucket.update("kv-native", bump, stored)).vgen == 3
        # concurrent writers on both clients: every change lands once
        async with trio.open_nursery() as n:
            for i in range(20):
                if i % 2:
                    n.start_soon(bucket.update, "kv-native", bump)
                else:
                    n.start_soon(bridge.call, session_store.update, kv, "kv-native", bump)
        assert (await bucket.load("kv-native")).vgen == 23
        # deleted: no value, and a write after the delete marker creates it again
        await bridge.call(kv.delete, "kv-native")
        gone = await bucket.load_stored("kv-native")
        assert gone.raw is None and gone.revision > stored.revision
        assert await bridge.call(session_store.load, kv, "kv-native") is None
        assert (await bucket.update("kv-native", bump, gone)).vgen == 1
        assert (await bridge.call(session_store.load, kv, "kv-native")).vgen == 1
        # the ended record, as the router writes it
        stored, ended = await bucket.load_with_ended("kv-native")
        assert ended is None and stored.meta().vgen == 1
        await bridge.call(session_store.put_ended, kv_ended, "kv-native", 1234.5)
        _, ended = await bucket.load_with_ended("kv-native")
        assert ended == session_store.EndedRecord(1234.5)
        # an ended record that does not read still says "ended", on both clients
        await bridge.call(kv_ended.put, "kv-empty", b"")
        _, ended = await bucket.load_with_ended("kv-empty")
        assert ended == session_store.EndedRecord(0.0)
        assert await bridge.call(session_store.load_ended, kv_ended, "kv-empty") == ended
        # a bucket that does not exist is an error, not a hang or an empty read
        missing = session_store.SessionBucket(nc, "no_such_bucket", 2.0)
        with pytest.raises(KvError):
            await missing.load("kv-native")
