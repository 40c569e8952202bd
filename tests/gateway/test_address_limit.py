"""The per-address limit of new sessions is one count per gateway: the supervisor keeps it
and its workers ask over a Unix socket (gateway/address_limit.py)."""

from __future__ import annotations

import trio

from gateway.address_limit import (
    AddressLimitServer,
    AddressVerdict,
    SharedAddressLimit,
    decode_verdict,
    encode_verdict,
    socket_path,
)


async def test_two_workers_share_one_count(tmp_path):
    server = AddressLimitServer("3/minute", socket_path(tmp_path))
    async with trio.open_nursery() as n:
        await n.start(server.serve)
        w0 = SharedAddressLimit("3/minute", socket_path(tmp_path))
        w1 = SharedAddressLimit("3/minute", socket_path(tmp_path))
        got = [await (w0 if i % 2 else w1).hit("203.0.113.7") for i in range(6)]
        assert [v.admit for v in got] == [True, True, True, False, False, False]
        assert all(1.0 <= v.retry_after <= 60.0 for v in got[3:])
        assert (await w0.hit("198.51.100.1")).admit  # another address: its own count
        # Concurrent askers on one worker take turns on its one connection.
        results = []
        async with trio.open_nursery() as m:
            for i in range(10):
                m.start_soon(lambda i=i: _collect(results, w1, f"192.0.2.{i}"))
        assert len(results) == 10 and all(v.admit for v in results)
        stats = w0.local._limiter.get_window_stats(w0.local.limit, "new", "203.0.113.7")
        assert stats.remaining == 3  # the worker's own fallback count was never touched
        n.cancel_scope.cancel()


async def _collect(results: list, limit: SharedAddressLimit, address: str) -> None:
    results.append(await limit.hit(address))


async def test_a_worker_without_its_supervisor_counts_alone(tmp_path):
    w = SharedAddressLimit("2/minute", socket_path(tmp_path))  # nothing listens there
    got = [(await w.hit("203.0.113.9")).admit for _ in range(3)]
    assert got == [True, True, False]


async def test_a_supervisor_that_goes_away_is_asked_again_when_back(tmp_path):
    path = socket_path(tmp_path)
    w = SharedAddressLimit("100/minute", path)
    async with trio.open_nursery() as n:
        first = AddressLimitServer("1/minute", path)
        scope = trio.CancelScope()

        async def run_first(task_status=trio.TASK_STATUS_IGNORED):
            with scope:
                await first.serve(task_status=task_status)

        await n.start(run_first)
        assert (await w.hit("a")).admit and not (await w.hit("a")).admit  # the server's 1/min
        scope.cancel()
        await trio.sleep(0.05)
        assert (await w.hit("a")).admit  # gone: counted locally (100/minute)
        second = AddressLimitServer("1/minute", path)
        await n.start(second.serve)
        assert (await w.hit("b")).admit and not (await w.hit("b")).admit  # asked again
        n.cancel_scope.cancel()


def test_verdicts_round_trip_and_garbage_is_refused():
    for v in (AddressVerdict(True), AddressVerdict(False, 12.5)):
        assert decode_verdict(encode_verdict(v).strip()) == v
    for bad in (b"[]", b'{"admit": 1}', b"nope"):
        try:
            decode_verdict(bad)
        except ValueError:
            continue
        raise AssertionError(bad)
