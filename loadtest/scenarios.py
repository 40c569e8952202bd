"""The scenarios: what the cluster looks like, and what happens to it in the middle of a run.

| scenario      | local cluster                              | at mid-run                                  |
|---------------|--------------------------------------------|---------------------------------------------|
| steady        | 1 NATS node, 2 gateways                    | nothing                                     |
| drain         | 1 NATS node, 3 gateways                    | the busiest gateway is drained through the router API (`POST /v1/cluster/gateways/{id}/drain`, admin key) |
| crash         | 1 NATS node, 3 gateways                    | the busiest gateway is SIGKILLed (local only) |
| nats-failover | 3 NATS nodes, stream replicas 3, file storage, 2 gateways | the JetStream stream leader (from `/jsz?streams=true`) is SIGKILLed (local only) |
| storm         | 1 NATS node, 2 gateways, a small new-session bucket (20/s) | half of all clients lose their connection at once and resume, while new sessions arrive at a high rate (bare handshakes and real sessions) |

An action gets the running harness (`run.Harness`) and uses only: `h.api` (the router API),
`h.cluster` (the `LocalCluster`, or None against a deployment), `h.mark(label)`,
`h.details` (scenario figures for the report), `h.live_clients()`, `h.spawn_extra_sessions()`
and `h.rng`.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import socket
import time
from collections import defaultdict
from typing import Any

import trio
from trio_websocket import ConnectionRejected, HandshakeError, open_websocket_url

from gateway.client import Client, handshake_url
from router.launcher import ClusterSpec

SCENARIOS = ("steady", "drain", "crash", "nats-failover", "storm")
LOCAL_ONLY = {"crash", "nats-failover"}  # they kill processes: only ours
UNLIMITED = "1000000/minute"  # the harness's clients all come from 127.0.0.1
STORM_NEW_RATE = 20  # new sessions per second per gateway in the storm's local cluster


def drain_window(duration: float) -> float:
    """Short drains, so that a run sees the whole drain: a quarter of the run, 2-10 s."""
    return min(10.0, max(2.0, duration / 4))


def cluster_spec(scenario: str, sessions: int, agents: int, duration: float) -> ClusterSpec:
    clients = sessions * (1 + agents)
    gateways = 3 if scenario in ("drain", "crash") else 2
    args = ["--new-per-address", UNLIMITED]
    if scenario == "storm":
        # A small new-session bucket whose burst just fits the run's own sessions, so the
        # storm's flood of new sessions (100/s by default) meets 429s; resumes never should.
        burst = max(50, math.ceil(1.2 * clients / gateways))
        args += ["--new-rate", str(STORM_NEW_RATE), "--new-burst", str(burst)]
    else:
        # Never throttle the harness's own sessions.
        args += ["--new-rate", str(max(50, clients)), "--new-burst", str(max(1000, 2 * clients))]
    spec = ClusterSpec(
        gateways=gateways,
        replicas=1,
        storage="memory",
        drain_window=drain_window(duration),
        gateway_args=args,
        env={"COBROWSE_LOG_LEVEL": os.environ.get("COBROWSE_LOG_LEVEL", "INFO")},
        router_env={
            "COBROWSE_LOOKUP_LIMIT_PER_KEY": UNLIMITED,
            "COBROWSE_LOOKUP_LIMIT_PER_ADDRESS": UNLIMITED,
            "COBROWSE_CREATE_LIMIT_PER_ADDRESS": UNLIMITED,
        },
        tenant="loadtest",
    )
    if scenario == "nats-failover":
        spec.nats_nodes, spec.replicas, spec.storage = 3, 3, "file"
    return spec


def base_id(gateway_id: str) -> str:
    """A worker's id (`gw-1.w0`) names its gateway (`gw-1`)."""
    return re.sub(r"\.w\d+$", "", gateway_id)


def busiest(gateways: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The active gateway (all worker entries behind one URL) with the most connections."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for g in gateways:
        if g.get("state") == "active":
            groups[g["url"]].append(g)
    if not groups:
        raise RuntimeError("no active gateway to act on")
    url = max(sorted(groups), key=lambda u: sum(int(g.get("connections", 0)) for g in groups[u]))
    return url, groups[url]


# ---- actions ------------------------------------------------------------------------------


async def act(scenario: str, h) -> None:
    action = {
        "drain": drain,
        "crash": crash,
        "nats-failover": nats_failover,
        "storm": storm,
    }.get(scenario)
    if action is not None:
        await action(h)


async def drain(h) -> None:
    gws = await h.api.cluster()
    url, members = busiest(gws)
    ids = sorted({base_id(g["id"]) for g in members})
    h.mark(f"drain {', '.join(ids)}")
    started = time.monotonic()
    replies = []
    for gid in ids:
        status, body = await h.api.drain(gid)
        if status == 404 and len(members) > 1:  # no gateway-wide id: drain each worker
            for g in members:
                replies.append((g["id"], *await h.api.drain(g["id"])))
        else:
            replies.append((gid, status, body))
    h.details["drained"] = {
        "gateways": ids,
        "url": url,
        "connections": sum(int(g.get("connections", 0)) for g in members),
        "replies": [{"id": i, "status": s, "body": b} for i, s, b in replies],
    }
    if any(s != 200 for _, s, _ in replies):
        h.errors.append(f"drain request failed: {replies}")
    # Follow the drained gateway to its end, scraping its metrics on the way (its last
    # figures, drain notices included, vanish with the process).
    gid = ids[0]
    with trio.move_on_after(window(h) + 30):
        while True:
            alive = [await h.scrape_gateway(g["id"], g.get("admin_url")) for g in members]
            if h.cluster is not None:
                if h.cluster.gateway_exit_code(gid) is not None:
                    break
            elif not any(alive):
                break
            await trio.sleep(0.5)
    h.details["drained"]["gone_after_s"] = round(time.monotonic() - started, 2)
    if h.cluster is not None:
        h.details["drained"]["exit_code"] = h.cluster.gateway_exit_code(gid)


def window(h) -> float:
    return h.cluster.spec.drain_window if h.cluster is not None else 30.0


async def crash(h) -> None:
    if h.cluster is None:
        raise RuntimeError("the crash scenario kills a local gateway: run it without --target")
    gws = await h.api.cluster()
    url, _ = busiest(gws)
    gid = h.cluster.gateway_id_for_url(url)
    if gid is None:
        raise RuntimeError(f"{url} is not a gateway this harness started")
    pid = h.cluster.kill_gateway(gid)
    h.mark(f"SIGKILL {gid}")
    h.details["killed"] = {"gateway": gid, "pid": pid, "url": url}


async def nats_failover(h) -> None:
    if h.cluster is None or len(h.cluster.nats) < 3:
        raise RuntimeError("nats-failover kills a local NATS node: run it without --target")
    leader = None
    with trio.move_on_after(15):
        while leader is None:
            leader = await trio.to_thread.run_sync(h.cluster.stream_leader)
            if leader is None:
                await trio.sleep(0.5)
    if leader is None:
        raise RuntimeError("no stream leader found in /jsz")
    pid = await trio.to_thread.run_sync(h.cluster.kill_nats, leader)
    h.mark(f"SIGKILL stream leader {leader}")
    h.details["killed"] = {"nats_node": leader, "pid": pid}


def abort_connection(client: Client) -> bool:
    """Drop a client's connection the way a network does: the TCP socket is shut down under
    the WebSocket, with no close frame. The client sees 1006 and resumes on its own."""
    abort = getattr(client, "abort", None)  # the load generator's FastClient
    if abort is not None:
        return abort()
    ws = getattr(client, "_ws", None)
    stream = getattr(ws, "_stream", None)
    sock = getattr(stream, "socket", None)
    if sock is None:  # TLS: the socket is under the SSL stream
        sock = getattr(getattr(stream, "transport_stream", None), "socket", None)
    if sock is None:
        return False
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        return False
    return True


async def storm(h) -> None:
    clients = [c for c in h.live_clients() if c.connected.is_set()]
    victims = h.rng.sample(clients, len(clients) // 2)
    dropped = sum(1 for c in victims if abort_connection(c))
    h.mark(f"storm: {dropped} connections dropped")
    seconds = h.opts.storm_seconds
    flood = {"attempts": 0, "admitted": 0, "rejected_429": 0, "rejected_503": 0, "errors": 0}
    h.details["storm"] = {"clients": len(clients), "dropped": dropped, "seconds": seconds}
    h.details["flood"] = flood
    urls = sorted({g["url"] for g in await h.api.cluster() if g.get("state") == "active"})
    async with trio.open_nursery() as n:
        n.start_soon(h.spawn_extra_sessions, h.opts.storm_sessions, seconds)
        if urls and h.opts.storm_rate > 0:
            n.start_soon(_flood, urls, h.opts.storm_rate, seconds, flood)


async def _flood(urls: list[str], rate: float, seconds: float, counts: dict[str, int]) -> None:
    """Bare new-session handshakes at `rate` per second for `seconds`: a bounded number of
    attempts, at most 200 open at once, each closed as soon as it is admitted."""
    limit = trio.CapacityLimiter(200)
    total = int(rate * seconds)

    async def one(url: str) -> None:
        async with limit:
            sid = "flood" + secrets.token_hex(6)
            try:
                with trio.fail_after(10):
                    async with open_websocket_url(handshake_url(url, sid, None), connect_timeout=5):
                        counts["admitted"] += 1
            except ConnectionRejected as exc:
                key = {429: "rejected_429", 503: "rejected_503"}.get(exc.status_code, "errors")
                counts[key] += 1
            except (HandshakeError, OSError, trio.TooSlowError, trio.BrokenResourceError):
                counts["errors"] += 1

    start = trio.current_time()
    async with trio.open_nursery() as n:
        for i in range(total):
            await trio.sleep_until(start + i / rate)
            counts["attempts"] += 1
            n.start_soon(one, urls[i % len(urls)])
