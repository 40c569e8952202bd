"""Stream and KV set-up is idempotent, and history reads locate resume points."""

from __future__ import annotations

import trio

from gateway import session_store, streams
from gateway.codec import Event, encode_stored
from gateway.nats_bridge import open_bridge


async def test_setup_is_idempotent_and_updates_settings(nats_server):
    async with open_bridge(nats_server.url) as bridge:
        s1 = streams.StreamSettings(max_msgs_per_subject=1000)
        await bridge.call(streams.ensure_stream, bridge.js, s1)
        await bridge.call(streams.ensure_stream, bridge.js, s1)  # again: no error
        s2 = streams.StreamSettings(max_msgs_per_subject=500)
        await bridge.call(streams.ensure_stream, bridge.js, s2)
        info = await bridge.call(bridge.js.stream_info, s2.stream)
        assert info.config.max_msgs_per_subject == 500
        assert info.config.duplicate_window >= 120
        assert info.config.allow_direct


async def test_locate_and_read_across_epochs(nats_server):
    async with open_bridge(nats_server.url) as bridge:
        settings = streams.StreamSettings()
        await bridge.call(streams.ensure_stream, bridge.js, settings)
        js, nc = bridge.js, bridge.nc
        subj = streams.subject_v("locate-test")
        other = streams.subject_v("other-session")
        for epoch, count in ((1, 300), (2, 200)):
            for seq in range(1, count + 1):
                await bridge.call(
                    js.publish, subj, encode_stored(epoch, Event(seq, "mutation", 0, seq))
                )
                if seq % 3 == 0:  # interleave another session
                    await bridge.call(
                        js.publish, other, encode_stored(1, Event(seq, "mutation", 0, 0))
                    )
        for key in [(1, 1), (1, 150), (1, 300), (2, 1), (2, 199)]:
            pos = await bridge.call(streams.locate, nc, settings.stream, subj, key, 0)
            got, _ = await bridge.call(streams.read_from, nc, settings.stream, subj, pos, 1)
            assert got[0].key == key
        pos = await bridge.call(streams.locate, nc, settings.stream, subj, (2, 100), 10)
        got, nxt = await bridge.call(streams.read_from, nc, settings.stream, subj, pos, 10_000)
        assert nxt is None
        assert got[0].key == (2, 90) and got[-1].key == (2, 200)
        assert all(s.key[0] == 2 for s in got)
        last = await bridge.call(streams.last_of, nc, settings.stream, subj)
        assert last.key == (2, 200)
        assert (
            await bridge.call(
                streams.last_of, nc, settings.stream, streams.subject_v("nothing-here")
            )
            is None
        )


async def test_session_meta_compare_and_set_under_contention(nats_server):
    async with open_bridge(nats_server.url) as bridge:
        kv = await bridge.call(streams.ensure_stream, bridge.js, streams.StreamSettings())

        def bump(m):
            m.vgen += 1

        async with trio.open_nursery() as n:
            for _ in range(20):
                n.start_soon(bridge.call, session_store.update, kv, "cas-test", bump)
        meta = await bridge.call(session_store.load, kv, "cas-test")
        assert meta.vgen == 20


async def test_publish_is_deduplicated_by_msg_id(nats_server):
    async with open_bridge(nats_server.url) as bridge:
        await bridge.call(streams.ensure_stream, bridge.js, streams.StreamSettings())
        results = []
        done = trio.Event()

        def cb(sseq, dup, err):
            results.append((sseq, dup, err))
            if len(results) == 2:
                done.set()

        body = encode_stored(1, Event(1, "mutation", 0, b"x"))
        bridge.publish(streams.subject_v("dedup-test"), body, "dedup-test:1:1", cb)
        bridge.publish(streams.subject_v("dedup-test"), body, "dedup-test:1:1", cb)
        with trio.fail_after(10):
            await done.wait()
    assert results[0][0] == results[1][0]
    assert [r[1] for r in results] == [False, True]
