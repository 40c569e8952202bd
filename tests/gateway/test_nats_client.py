"""nats_client against real nats-server processes (and, for bad input, a fake server).

Also pins JetStream behaviours the gateway relies on (publish dedupe against expected-sequence
checks, batched direct get), since a server upgrade could change them."""

from __future__ import annotations

import json
import os
import signal

import pytest
import structlog
import trio

from gateway.nats_client import (
    ConnectionLost,
    NatsClient,
    NoServersAvailable,
    OutboundBufferFull,
    PayloadTooLarge,
)
from gateway.nats_wire import Msg
from router import natsproc

pytestmark = pytest.mark.timeout(90)


class Inbox:
    """Messages a subscription received, and a way to wait for some."""

    def __init__(self) -> None:
        self.msgs: list[Msg] = []
        self._changed = trio.Event()

    def __call__(self, msg: Msg) -> None:
        self.msgs.append(msg)
        self._changed.set()

    async def wait_for(self, n: int, timeout: float = 10) -> list[Msg]:
        with trio.fail_after(timeout):
            while len(self.msgs) < n:
                self._changed = trio.Event()
                await self._changed.wait()
        return self.msgs


async def restart_same_port(srv: natsproc.NatsServer) -> None:
    def start() -> None:
        srv.start()
        srv.wait_ready()

    await trio.to_thread.run_sync(start)


# ---- core NATS ------------------------------------------------------------------------------


async def test_pub_sub_with_and_without_headers_in_order(nats_server):
    async with NatsClient.open(nats_server.url) as nc:
        assert nc.connected and nc.connected_url == nats_server.url
        inbox = Inbox()
        nc.subscribe("t.*", inbox)
        nc.publish("t.plain", b"hello")
        nc.publish("t.hdr", b"with", headers={"Nats-Msg-Id": "abc", "X-Case": "Kept"})
        nc.publish("t.reply", b"r", reply="some.reply")
        for i in range(5000):
            nc.publish("t.n", b"%d" % i)
        msgs = await inbox.wait_for(5003)
        assert (msgs[0].subject, msgs[0].data, msgs[0].headers) == ("t.plain", b"hello", None)
        assert msgs[1].data == b"with" and msgs[1].status is None
        assert msgs[1].header_dict() == {"Nats-Msg-Id": "abc", "X-Case": "Kept"}
        assert msgs[2].reply == "some.reply"
        assert [m.data for m in msgs[3:]] == [b"%d" % i for i in range(5000)]
        assert nc.stats.msgs_in == 5003 and nc.stats.msgs_out == 5003


async def test_a_read_interval_batches_a_stream_and_not_the_first_message(nats_server):
    """With read_interval, messages that keep coming are read at most that often; the first
    after a quiet spell is read at once, and nothing is lost or reordered."""
    async with (
        NatsClient.open(nats_server.url, read_interval=0.2) as slow,
        NatsClient.open(nats_server.url) as sender,
    ):
        inbox = Inbox()
        slow.subscribe("ri.>", inbox)
        await slow.flush()
        await trio.sleep(0.3)  # quiet for longer than the interval after the PONG was read
        t0 = trio.current_time()
        sender.publish("ri.first", b"0")
        await inbox.wait_for(1)
        first = trio.current_time() - t0
        await trio.sleep(0.05)  # still inside the interval that the first read started
        for i in range(1, 200):
            sender.publish("ri.n", b"%d" % i)
        await sender.flush()
        await trio.sleep(0.05)
        assert len(inbox.msgs) == 1  # held in the socket until the interval ends
        msgs = await inbox.wait_for(200, timeout=5)
        assert first < 0.15 and [m.data for m in msgs] == [b"%d" % i for i in range(200)]


async def test_hurry_ends_a_read_interval_for_someone_who_waits(nats_server):
    async with (
        NatsClient.open(nats_server.url, read_interval=5.0) as slow,
        NatsClient.open(nats_server.url) as sender,
    ):
        inbox = Inbox()
        slow.subscribe("rh.>", inbox)
        await slow.flush()
        await trio.sleep(0.1)
        sender.publish("rh.a", b"a")
        await inbox.wait_for(1)  # read at once; now the reader lingers for 5 s
        sender.publish("rh.b", b"b")
        await sender.flush()
        await trio.sleep(0.1)
        assert len(inbox.msgs) == 1
        t0 = trio.current_time()
        slow.hurry()
        await inbox.wait_for(2, timeout=2)
        assert trio.current_time() - t0 < 1.0


async def test_request_reply_no_responders_and_timeout(nats_server):
    async with NatsClient.open(nats_server.url) as nc:
        nc.subscribe("svc.upper", lambda m: nc.publish(m.reply, m.data.upper()))
        held: list[Msg] = []
        nc.subscribe("svc.slow", held.append)  # never answers in time
        await nc.flush()
        with trio.fail_after(10):
            reply = await nc.request("svc.upper", b"abc", timeout=2)
            assert reply.data == b"ABC" and reply.status is None
            replies = await asyncio_free_gather(nc, 50)
            assert replies == [b"REQ%d" % i for i in range(50)]
            none = await nc.request("svc.nobody", b"x", timeout=2)
            assert none.status == "503" and none.data == b""
            with pytest.raises(trio.TooSlowError):
                await nc.request("svc.slow", b"x", timeout=0.2)
            nc.publish(held[0].reply, b"too late")  # a late reply is dropped quietly
            await nc.flush()
            assert (await nc.request("svc.upper", b"ok", timeout=2)).data == b"OK"


async def test_request_timeouts_of_any_length_and_order_and_cancellation(nats_server):
    async with NatsClient.open(nats_server.url) as nc:
        nc.subscribe("svc.never", lambda m: None)
        await nc.flush()
        timed_out: dict[float, float] = {}

        async def expect_timeout(timeout: float) -> None:
            t0 = trio.current_time()
            with pytest.raises(trio.TooSlowError):
                await nc.request("svc.never", b"", timeout=timeout)
            timed_out[timeout] = trio.current_time() - t0

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for timeout in (1.0, 0.6, 0.2, 1.0, 0.4):  # a shorter one after longer ones
                    nursery.start_soon(expect_timeout, timeout)
                with trio.move_on_after(0.1):  # cancelled from outside: nothing left behind
                    await nc.request("svc.never", b"", timeout=5)
        for timeout, took in timed_out.items():
            assert timeout <= took < timeout + 0.5
        assert not nc._requests.by_token


async def asyncio_free_gather(nc: NatsClient, n: int) -> list[bytes]:
    """n requests in flight at once, each matched to its own reply."""
    out: list[bytes | None] = [None] * n

    async def one(i: int) -> None:
        out[i] = (await nc.request("svc.upper", b"req%d" % i, timeout=5)).data

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(one, i)
    return out


async def test_megabyte_payloads_cross_many_reads(nats_server):
    async with NatsClient.open(nats_server.url) as nc:
        inbox = Inbox()
        nc.subscribe("big", inbox)
        # max_payload (1 MiB) counts the headers too
        payloads = [bytes([65 + i]) * ((1 << 20) - (i % 2) * 64) for i in range(6)]
        for i, p in enumerate(payloads):
            nc.publish("big", p, headers={"N": str(i)} if i % 2 else None)
        with pytest.raises(PayloadTooLarge):
            nc.publish("big", payloads[0], headers={"N": "x"})
        msgs = await inbox.wait_for(6, timeout=20)
        assert [m.data for m in msgs] == payloads
        assert [m.header("N") for m in msgs] == [None, "1", None, "3", None, "5"]


async def test_unsubscribe_and_queue_groups(nats_server):
    async with NatsClient.open(nats_server.url) as nc:
        inbox, q1, q2 = Inbox(), Inbox(), Inbox()
        s = nc.subscribe("u", inbox)
        nc.subscribe("work", q1, queue="workers")
        nc.subscribe("work", q2, queue="workers")
        nc.publish("u", b"1")
        for i in range(100):
            nc.publish("work", b"%d" % i)
        await nc.flush()
        await inbox.wait_for(1)
        nc.unsubscribe(s)
        nc.publish("u", b"2")
        await nc.flush()
        assert [m.data for m in inbox.msgs] == [b"1"]
        assert len(q1.msgs) + len(q2.msgs) == 100  # each message to one member


async def test_a_failing_handler_is_logged_and_the_reader_goes_on(nats_server):
    async with NatsClient.open(nats_server.url) as nc:
        inbox = Inbox()

        def bad(msg: Msg) -> None:
            raise RuntimeError("handler bug")

        nc.subscribe("h", bad)
        nc.subscribe("h", inbox)
        with structlog.testing.capture_logs() as logs:
            nc.publish("h", b"1")
            nc.publish("h", b"2")
            await inbox.wait_for(2)
        assert [e["event"] for e in logs].count("nats_handler_failed") == 2
        assert nc.connected and nc.stats.reconnects == 0


async def test_first_connect_fails_clearly_when_no_server_answers():
    ports = [natsproc.free_port(), natsproc.free_port()]
    urls = [f"nats://127.0.0.1:{p}" for p in ports]
    with trio.fail_after(10), pytest.raises(NoServersAvailable) as err:
        async with NatsClient.open(urls, connect_timeout=0.5):
            pass
    assert all(u in str(err.value) for u in urls)


# ---- reconnects -------------------------------------------------------------------------------


async def test_server_killed_and_restarted_while_publishing(nats_server):
    async with NatsClient.open(nats_server.url, reconnect_wait=0.05) as nc:
        inbox = Inbox()
        nc.subscribe("r", inbox)
        lost, back = trio.Event(), trio.Event()
        nc.on_disconnected(lost.set)
        nc.on_reconnected(back.set)
        sent = 0

        async def publisher() -> None:
            nonlocal sent
            while True:
                nc.publish("r", b"%d" % sent)
                sent += 1
                await trio.sleep(0.002)

        with trio.fail_after(40):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(publisher)
                await inbox.wait_for(20)
                await trio.to_thread.run_sync(nats_server.kill)
                await lost.wait()
                assert not nc.connected
                await restart_same_port(nats_server)
                await back.wait()
                nursery.cancel_scope.cancel()
            await nc.flush()
            assert nc.connected and nc.stats.reconnects == 1
            before = len(inbox.msgs)
            nc.publish("r", b"after")
            await inbox.wait_for(before + 1)
        assert inbox.msgs[-1].data == b"after"
        numbers = [int(m.data) for m in inbox.msgs[:-1]]
        assert numbers == sorted(numbers)  # at most once, never reordered


async def test_publishes_queued_while_disconnected_follow_the_resubscribe(nats_server):
    async with NatsClient.open(nats_server.url, reconnect_wait=0.05, pending_limit=64 * 1024) as nc:
        inbox = Inbox()
        nc.subscribe("q", inbox)
        await nc.flush()
        lost, back = trio.Event(), trio.Event()
        nc.on_disconnected(lost.set)
        nc.on_reconnected(back.set)
        with trio.fail_after(30):
            await trio.to_thread.run_sync(nats_server.kill)
            await lost.wait()
            for i in range(3):
                nc.publish("q", b"queued %d" % i)
            with pytest.raises(OutboundBufferFull):
                nc.publish("q", b"x" * (64 * 1024))
            await restart_same_port(nats_server)
            await back.wait()
            msgs = await inbox.wait_for(3)
        assert [m.data for m in msgs] == [b"queued 0", b"queued 1", b"queued 2"]


async def test_cluster_node_killed_the_client_moves_to_another(nats_cluster):
    first = nats_cluster[0]
    async with NatsClient.open(first.url, reconnect_wait=0.05) as nc:
        with trio.fail_after(15):
            while len(nc.known_servers) < 3:  # the others come from INFO's connect_urls
                await trio.sleep(0.05)
        assert sorted(nc.known_servers) == sorted(s.url for s in nats_cluster)
        back = trio.Event()
        nc.on_reconnected(back.set)
        inbox = Inbox()
        nc.subscribe("c", inbox)
        victim = next(s for s in nats_cluster if s.url == nc.connected_url)
        with trio.fail_after(30):
            await trio.to_thread.run_sync(victim.kill)
            await back.wait()
            assert nc.connected_url not in (None, victim.url)
            other = next(s for s in nats_cluster if s.url not in (victim.url, nc.connected_url))
            async with NatsClient.open(other.url) as publisher:
                while not inbox.msgs:  # until the re-sent SUB has crossed the routes
                    publisher.publish("c", b"across")
                    await trio.sleep(0.05)
        assert inbox.msgs[0].data == b"across"


async def test_lame_duck_server_makes_the_client_move(nats_cluster):
    async with NatsClient.open(natsproc.servers_url(nats_cluster), reconnect_wait=0.05) as nc:
        back = trio.Event()
        nc.on_reconnected(back.set)
        victim = next(s for s in nats_cluster if s.url == nc.connected_url)
        with structlog.testing.capture_logs() as logs, trio.fail_after(20):
            os.kill(victim.proc.pid, signal.SIGUSR2)  # nats-server: enter lame-duck mode
            await back.wait()
        assert "nats_lame_duck" in [e["event"] for e in logs]  # told, not dropped (10 s later)
        assert nc.connected_url != victim.url
        await nc.flush()
    await trio.to_thread.run_sync(victim.kill)  # a lame duck takes its time over SIGTERM


# ---- bad servers (a fake one: INFO, PONG to the handshake, then the test's script) -------


async def fake_server(nursery: trio.Nursery, scripts: list) -> str:
    """Connection i runs scripts[min(i, last)](stream) after the handshake."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    count = 0

    async def handle(stream: trio.SocketStream) -> None:
        nonlocal count
        script = scripts[min(count, len(scripts) - 1)]
        count += 1
        info = {"server_id": "fake", "max_payload": 1 << 20, "headers": True, "proto": 1}
        await stream.send_all(b"INFO " + json.dumps(info).encode() + b"\r\n")
        got = b""
        while b"PING\r\n" not in got:
            chunk = await stream.receive_some()
            if not chunk:
                return
            got += chunk
        try:
            await script(stream)
        except trio.BrokenResourceError:
            pass

    nursery.start_soon(trio.serve_listeners, handle, listeners)
    return f"nats://127.0.0.1:{port}"


async def good(stream: trio.SocketStream) -> None:
    """PONG to the handshake and to every PING after."""
    await stream.send_all(b"PONG\r\n")
    while True:
        data = await stream.receive_some()
        if not data:
            return
        for _ in range(data.count(b"PING\r\n")):
            await stream.send_all(b"PONG\r\n")


def then_send(garbage: bytes):
    async def script(stream: trio.SocketStream) -> None:
        await stream.send_all(b"PONG\r\n")
        await trio.sleep(0.05)  # after the handshake (within it, it would fail the connect)
        await stream.send_all(garbage)
        await trio.sleep_forever()

    return script


@pytest.mark.parametrize(
    "garbage",
    [
        b"BOGUS op\r\n",
        b"MSG a 1 " + b"9" * 70000,
        b"MSG a 1 999999999\r\n",
        b"MSG a 1 3\r\nabcd\r\n",
    ],
    ids=["unknown-op", "endless-line", "oversized-payload", "bad-framing"],
)
async def test_bad_input_from_a_server_is_an_error_and_a_reconnect(garbage):
    async with trio.open_nursery() as nursery:
        url = await fake_server(nursery, [then_send(garbage), good])
        with structlog.testing.capture_logs() as logs, trio.fail_after(10):
            async with NatsClient.open(url, reconnect_wait=0.05) as nc:
                back = trio.Event()
                nc.on_reconnected(back.set)
                await back.wait()
                await nc.flush()
        errors = [e for e in logs if e["event"] == "nats_error"]
        assert errors and "protocol error" in errors[0]["error"]
        nursery.cancel_scope.cancel()


async def test_an_error_before_the_handshake_pong_refuses_the_connection():
    async def refuse(stream: trio.SocketStream) -> None:
        await stream.send_all(b"-ERR 'Authorization Violation'\r\n")

    async with trio.open_nursery() as nursery:
        url = await fake_server(nursery, [refuse])
        with trio.fail_after(10), pytest.raises(NoServersAvailable, match="Authorization"):
            async with NatsClient.open(url):
                pass
        nursery.cancel_scope.cancel()


async def test_unanswered_pings_end_the_connection():
    async def mute(stream: trio.SocketStream) -> None:
        await stream.send_all(b"PONG\r\n")
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        url = await fake_server(nursery, [mute, good])
        with trio.fail_after(10):
            async with NatsClient.open(url, ping_interval=0.1, max_pings_out=2) as nc:
                back = trio.Event()
                nc.on_reconnected(back.set)
                with pytest.raises(ConnectionLost):  # its PONG never came on that connection
                    await nc.flush(timeout=5)
                await back.wait()
                await nc.flush()
        nursery.cancel_scope.cancel()


async def test_a_server_that_stops_reading_blocks_the_writer_not_the_client():
    received = 0

    async def slow(stream: trio.SocketStream) -> None:
        nonlocal received
        await stream.send_all(b"PONG\r\n")
        await trio.sleep(0.5)  # the kernel buffers fill up; the outbox blocks
        while True:
            data = await stream.receive_some(1 << 20)
            if not data:
                return
            received += len(data)
            if data.endswith(b"PING\r\n"):
                await stream.send_all(b"PONG\r\n")

    async with trio.open_nursery() as nursery:
        url = await fake_server(nursery, [slow])
        with trio.fail_after(20):
            async with NatsClient.open(url) as nc:
                chunk = b"x" * (256 * 1024)
                for _ in range(64):  # 16 MiB in one turn
                    nc.publish("flood", chunk)
                await trio.sleep(0.1)
                assert nc._conn.outbox.blocked  # the writer task waits for writable
                await nc.flush()  # answered once the server has read through everything
                assert received >= 64 * len(chunk)
                assert nc.stats.reconnects == 0
        nursery.cancel_scope.cancel()


async def test_lame_duck_info_moves_to_the_next_server():
    async def lame(stream: trio.SocketStream) -> None:
        await stream.send_all(b'PONG\r\nINFO {"server_id":"fake","ldm":true}\r\n')
        await good(stream)

    async with trio.open_nursery() as nursery:
        first = await fake_server(nursery, [lame])
        second = await fake_server(nursery, [good])
        with trio.fail_after(10), structlog.testing.capture_logs() as logs:
            async with NatsClient.open([first, second]) as nc:
                assert nc.connected_url == first
                back = trio.Event()
                nc.on_reconnected(back.set)
                await back.wait()
                assert nc.connected_url == second
        nursery.cancel_scope.cancel()
    # A NATS node's drain is normal: leaving it is no warning (issue 16).
    left = [e for e in logs if e["event"] == "nats_disconnected" and e["url"] == first]
    assert [(e["log_level"], e["lame_duck"]) for e in left] == [("info", True)]


# ---- JetStream through the hot-path client ----------------------------------------------------


async def create_stream(nc: NatsClient, name: str, subjects: list[str], replicas: int = 1):
    cfg = {
        "name": name,
        "subjects": subjects,
        "storage": "memory",
        "duplicate_window": 120_000_000_000,
        "allow_direct": True,
        "num_replicas": replicas,
    }
    with trio.fail_after(30):
        while True:  # a fresh cluster has no JetStream meta leader for a moment
            try:
                msg = await nc.request(
                    f"$JS.API.STREAM.CREATE.{name}", json.dumps(cfg).encode(), timeout=5
                )
            except trio.TooSlowError:
                # No answer: the meta leader changed under the request (seen in CI just after
                # the cluster formed). The same config again is idempotent.
                continue
            resp = json.loads(msg.data) if msg.data else {}
            if msg.status is None and "error" not in resp:
                break
            await trio.sleep(0.25)
        # A new clustered stream answers nothing until its group has a leader: probe it
        # (on a subject of its own) so the first publish a test makes is answered.
        while True:
            try:
                ack = await nc.request(
                    subjects[0].replace(">", "ready"), b"", headers={"Nats-Msg-Id": "r"}, timeout=1
                )
            except trio.TooSlowError:
                continue
            if ack.status is None and b"error" not in ack.data:
                return resp
            await trio.sleep(0.25)


async def js_publish(nc: NatsClient, subject: str, msg_id: str, expected: int | None) -> dict:
    headers = {"Nats-Msg-Id": msg_id}
    if expected is not None:
        headers["Nats-Expected-Last-Subject-Sequence"] = str(expected)
    reply = await nc.request(subject, b"event " + msg_id.encode(), headers=headers, timeout=5)
    assert reply.status is None, reply
    return json.loads(reply.data)


def wrong_last_sequence(ack: dict) -> bool:
    return ack.get("error", {}).get("err_code") == 10071


async def check_expected_sequence_facts(nc: NatsClient, stream: str, replicas: int) -> None:
    """What a publish with Nats-Msg-Id and Nats-Expected-Last-Subject-Sequence gets back."""
    subj = f"{stream}.s1"
    # (c) expected 0 on a subject with no messages succeeds...
    first = await js_publish(nc, subj, "m1", 0)
    assert set(first) == {"stream", "seq"}
    seq = first["seq"]  # a stream sequence; the subject's last from now on
    # (b) ...and a NEW msg id with a stale expected sequence fails with 10071.
    assert wrong_last_sequence(await js_publish(nc, subj, "m2", 0))
    # (a) the SAME msg id again with its now-stale expected sequence (a retry after a lost
    # ack): a duplicate ack only on a replicated stream; an R1 stream answers 10071, because
    # it checks the expected sequence before the duplicate window.
    again = await js_publish(nc, subj, "m1", 0)
    if replicas > 1:
        assert again == {"stream": stream, "seq": seq, "duplicate": True}
    else:
        assert wrong_last_sequence(again) and "duplicate" not in again
    # With the subject's current last sequence (or no expectation) it is a duplicate ack.
    assert (await js_publish(nc, subj, "m1", seq)).get("duplicate") is True
    assert (await js_publish(nc, subj, "m1", None)).get("duplicate") is True


async def test_jetstream_publish_acks_and_expected_sequences_single_node(nats_server):
    async with NatsClient.open(nats_server.url) as nc:
        await create_stream(nc, "JS1", ["JS1.>"])
        await check_expected_sequence_facts(nc, "JS1", replicas=1)
        # (c) again on a fresh subject: expected 0 means "no message yet on this subject".
        assert "seq" in await js_publish(nc, "JS1.s2", "n1", 0)
        assert wrong_last_sequence(await js_publish(nc, "JS1.s2", "n2", 0))


async def test_jetstream_expected_sequences_in_a_cluster_r1_and_r3(nats_cluster):
    async with NatsClient.open(natsproc.servers_url(nats_cluster)) as nc:
        await create_stream(nc, "C1", ["C1.>"], replicas=1)
        await check_expected_sequence_facts(nc, "C1", replicas=1)
        await create_stream(nc, "C3", ["C3.>"], replicas=3)
        await check_expected_sequence_facts(nc, "C3", replicas=3)


async def test_jetstream_batched_direct_get_ends_with_eob(nats_server):
    async with NatsClient.open(nats_server.url) as nc:
        await create_stream(nc, "DG", ["dg.>"])
        seqs = {}
        for i in range(5):
            seqs[f"a{i}"] = (await js_publish(nc, "dg.a", f"a{i}", None))["seq"]
            seqs[f"b{i}"] = (await js_publish(nc, "dg.b", f"b{i}", None))["seq"]
        req = json.dumps({"seq": 1, "next_by_subj": "dg.a", "batch": 100}).encode()
        msgs = await nc.request_many(
            "$JS.API.DIRECT.GET.DG", req, timeout=5, until=lambda m: m.status is not None
        )
        *stored, eob = msgs
        assert [m.data for m in stored] == [b"event a%d" % i for i in range(5)]
        assert [int(m.header("Nats-Sequence")) for m in stored] == [seqs[f"a{i}"] for i in range(5)]
        assert all(m.header("Nats-Subject") == "dg.a" for m in stored)
        assert (eob.status, eob.description) == ("204", "EOB")
        # Past the end: one 404, no 204 (so `until` must take any status).
        after = seqs["a4"] + 1
        req = json.dumps({"seq": after, "next_by_subj": "dg.a", "batch": 100}).encode()
        (only,) = await nc.request_many(
            "$JS.API.DIRECT.GET.DG", req, timeout=5, until=lambda m: m.status is not None
        )
        assert (only.status, only.description) == ("404", "Message Not Found")
        # A stored message keeps the headers it was published with.
        assert stored[0].header("Nats-Msg-Id") == "a0"
        # The last message of a subject, and of one with none.
        last = await nc.request("$JS.API.DIRECT.GET.DG.dg.b", b"", timeout=5)
        assert (last.data, last.header("Nats-Sequence")) == (b"event b4", str(seqs["b4"]))
        none = await nc.request("$JS.API.DIRECT.GET.DG.dg.none", b"", timeout=5)
        assert none.status == "404"
