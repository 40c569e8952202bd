"""What a replicated (R3) JetStream stream answers that one replica does not: the figures
behind `streams.last_stored` and `jetstream_codes.WRONG_LAST_SEQUENCE_IN_PROCESS`.

On a fresh 3-node cluster on loopback (`router.natsproc`), with the COBROWSE stream's and
the session bucket's settings at 3 replicas:

- tails: publish to a subject, and as soon as the ack is back read the subject's last
  message from two clients, by direct get (any replica answers) and from the leader
  (`STREAM.MSG.GET`); count the reads that miss the acknowledged message;
- races: `writers` compare-and-set writes of one KV key on the same revision at once,
  `rounds` times; count the answers by err_code (one wins each round).

Run: `python -m loadtest.bench.replicas` (about 15 s). Not part of `make bench`.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

import trio

from gateway import kv_client, streams
from gateway.codec import Event, encode_batch
from gateway.nats_bridge import open_bridge
from gateway.nats_client import NatsClient
from router import natsproc


async def _ready(bridge, nc: NatsClient, settings: streams.StreamSettings, subject: str) -> None:
    """The stream and bucket set up, and the stream's group answering publishes."""
    with trio.fail_after(60):
        while True:
            try:
                await bridge.call(streams.ensure_stream, bridge.js, settings)
                break
            except Exception:
                await trio.sleep(0.5)
        while True:
            try:
                ack = await nc.request(subject, encode_batch(1, [Event(1, "m", 0, 0)]), timeout=2)
                if b"error" not in ack.data:
                    return
            except trio.TooSlowError:
                pass
            await trio.sleep(0.5)


async def stale_tails(readers: list[NatsClient], publishes: int, stream: str, subject: str):
    """How many reads of the tail right after an ack missed the acknowledged message."""
    stale = {"direct get": 0, "leader": 0}
    for seq in range(2, publishes + 2):
        ack = json.loads(
            (
                await readers[0].request(
                    subject, encode_batch(1, [Event(seq, "m", 0, 0)]), timeout=5
                )
            ).data
        )
        for nc in readers:
            direct = await streams.last_of(nc, stream, subject)
            leader = await streams.last_stored(nc, stream, subject)
            stale["direct get"] += direct.sseq != ack["seq"]
            stale["leader"] += leader.sseq != ack["seq"]
    return stale, publishes * len(readers)


async def cas_races(nc: NatsClient, bucket: str, writers: int, rounds: int) -> collections.Counter:
    """The answers to `writers` writes of one key on the same revision, `rounds` times."""
    answers: collections.Counter = collections.Counter()
    key = "race"
    rev = await kv_client.write(nc, bucket, key, b"0", 0, 5.0)
    for _ in range(rounds):
        won: list[int] = []

        async def write(last: int, won: list[int] = won) -> None:
            try:
                won.append(await kv_client.write(nc, bucket, key, b"x", last, 5.0))
                answers["stored"] += 1
            except kv_client.KvConflict as exc:
                # 10071 names the subject's last sequence ("wrong last sequence: 7"); 10164,
                # a replicated stream's answer while another write is proposed, does not.
                answers["10071 wrong last sequence: N" if ":" in str(exc) else "10164"] += 1

        async with trio.open_nursery() as n:
            for _ in range(writers):
                n.start_soon(write, rev)
        rev = max(won)
    return answers


async def measure(publishes: int, writers: int, rounds: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cluster = natsproc.start_cluster(Path(tmp) / "nats", 3)
        try:
            url = natsproc.servers_url(cluster)
            settings = streams.StreamSettings(replicas=3)
            subject = streams.subject_v("replica-reads")
            async with (
                open_bridge(url) as bridge,
                NatsClient.open(url) as one,
                NatsClient.open(url) as two,
            ):
                await _ready(bridge, one, settings, subject)
                stale, reads = await stale_tails([one, two], publishes, settings.stream, subject)
                races = await cas_races(one, settings.kv_bucket, writers, rounds)
        finally:
            for s in cluster:
                s.stop()
    return {"reads": reads, "stale": stale, "races": dict(races)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest.bench.replicas", description=__doc__)
    ap.add_argument("--publishes", type=int, default=2000)
    ap.add_argument("--writers", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    got = trio.run(measure, min(args.publishes, 20_000), min(args.writers, 100), args.rounds)
    print(f"tail reads right after an ack, {got['reads']} of each kind, missing it:")
    for kind, n in got["stale"].items():
        print(f"  {kind:10s} {n}")
    print(f"{args.writers} writers on one revision, {args.rounds} rounds:")
    for answer, n in sorted(got["races"].items()):
        print(f"  {n:4d}  {answer}")
    if args.json:
        Path(args.json).write_text(json.dumps(got, indent=1))
    return 1 if got["stale"]["leader"] else 0


if __name__ == "__main__":
    sys.exit(main())
