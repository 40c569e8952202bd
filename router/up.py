"""`python -m router up` (`make run`): a working local cluster on loopback, for development
and demos.

A LocalCluster (router/launcher.py) of NATS with JetStream, two gateways, the HTTP API (which
also serves the snippet, the embed page and a demo page) and the asset proxy, with freshly
made dev keys (token keys, a site key, an agent API key, an admin key). It writes the URLs and
keys to .run/cluster.json, prints them, starts a gateway that drains or crashes again (as its
Deployment would), and stops all of it on Ctrl-C or SIGTERM. A second `make run` after a crash
first ends the leftovers recorded in .run/pids.json.

`--secure` runs NATS as production does (docs/operations.md, "NATS authentication and
TLS"): a fresh throwaway CA and server certificate in .run/nats-tls, TLS for every client,
a user per component with only the subjects it needs (router/nats_secure.py).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from . import nats_secure
from .launcher import ClusterSpec, DevKeys, LocalCluster, end_leftovers, write_json

STOP_GRACE = 15.0  # seconds a process gets to end on SIGTERM before SIGKILL
DRAIN_WINDOW = "5"  # seconds, in development: Ctrl-C should not take the 30 s default


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def cluster_info(cluster: LocalCluster) -> dict:
    """What .run/cluster.json holds: URLs and dev keys (gateway/demo.py and the docs read it)."""
    keys, run_dir, api_url = cluster.keys, cluster.run_dir, cluster.api_url
    nats = cluster.nats[0]
    nats_info = {"url": cluster.nats_url, "monitor": f"http://127.0.0.1:{nats.monitor_port}/"}
    if cluster.spec.secure is not None:  # the files, never the passwords themselves
        nats_info["tls_ca"] = str(cluster.spec.secure.ca)
        nats_info["users"] = {
            u: str(cluster.spec.secure.password_file(u)) for u in nats_secure.PERMISSIONS
        }
    return {
        "nats": nats_info,
        "gateways": [
            {
                "id": g.id,
                "url": g.url,
                "port": g.port,
                "admin": g.admin_url,
                "admin_port": g.admin_port,
                "log": str(run_dir / f"{g.id}.log"),
            }
            for g in cluster.gateways.values()
        ],
        "api": {"url": api_url, "openapi": api_url + "/openapi.json"},
        "proxy": {"url": cluster.proxy_url, "log": str(run_dir / "proxy.log")},
        "demo": api_url + "/demo",
        "embed": f"{api_url}/embed#key={keys.agent_api_key}&code=",
        "console": api_url + "/console",
        "token_keys": keys.token_keys,
        "site_key": keys.site_key,
        "agent_api_key": keys.agent_api_key,
        "admin_key": keys.admin_key,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def print_info(info: dict, run_dir: Path) -> None:
    api_url = info["api"]["url"]
    print("cobrowse local cluster is up")
    print(f"  NATS JetStream   {info['nats']['url']}   (monitoring {info['nats']['monitor']})")
    if "tls_ca" in info["nats"]:
        print(
            f"  NATS TLS + auth  CA {info['nats']['tls_ca']}; users {', '.join(info['nats']['users'])}"
        )
    for g in info["gateways"]:
        print(f"  gateway {g['id']:<8} {g['url']}   (log {g['log']})")
    print(f"  HTTP API         {api_url}   (log {run_dir / 'router.log'})")
    print(f"  asset proxy      {info['proxy']['url']}   (log {info['proxy']['log']})")
    print(f"  DEMO: open the visitor's page   {info['demo']}   and press Start")
    print(f"        then the agent's view     {info['embed']}<the code it shows>")
    print(f"        or the agents' console    {info['console']}   (sign in: agent API key)")
    print(f"  site key         {info['site_key']}")
    print(f"  agent API key    {info['agent_api_key']}")
    print(f"  admin key        {info['admin_key']}")
    print(f"  dev keys         written with the URLs to {run_dir / 'cluster.json'}")
    print(
        f"  new session:     curl -s -X POST {api_url}/v1/sessions "
        "-H 'Content-Type: application/json' "
        f"""-d '{{"site_key": "{info["site_key"]}"}}'"""
    )
    print("  mint a token:    .venv/bin/python -m router token --sid demo-session-1 --role agent")
    print("  try it:          .venv/bin/python -m gateway.demo   (a headless visitor and agent)")
    print("Ctrl-C stops everything.")
    sys.stdout.flush()


def up(run_dir: Path, gateways: int = 2, secure: bool = False) -> int:
    signal.signal(signal.SIGTERM, _interrupt)  # stop cleanly on SIGTERM as on Ctrl-C
    # Ctrl-C even when started as `make run &` from a script: bash starts a script's
    # background jobs with SIGINT ignored, and Python then keeps it ignored.
    signal.signal(signal.SIGINT, _interrupt)
    run_dir.mkdir(exist_ok=True)
    end_leftovers(run_dir)
    keys = DevKeys.fresh()
    try:
        tls = nats_secure.make(run_dir / "nats-tls") if secure else None
    except (nats_secure.OpensslMissing, RuntimeError) as exc:
        print(f"router up --secure: {exc}", file=sys.stderr)
        return 2
    spec = ClusterSpec(
        gateways=gateways,
        workers=None,  # the gateway's default: one worker per core
        proxy=True,
        # The gateways get the admin key it prints, so `POST /admin/drain` works as documented.
        env={"COBROWSE_DRAIN_WINDOW": os.environ.get("COBROWSE_DRAIN_WINDOW", DRAIN_WINDOW)},
        router_env={"COBROWSE_DEMO_SITE_KEY": keys.site_key},
        keys=keys,
        secure=tls,
    )
    cluster = LocalCluster(spec, run_dir)
    try:
        cluster.start()
        info = cluster_info(cluster)
        write_json(run_dir / "cluster.json", info, indent=2)
        print_info(info, run_dir)
        while True:
            for p in cluster.exited():
                if p.name not in cluster.gateways:
                    print(f"{p.name} exited with {p.proc.returncode}; stopping", file=sys.stderr)
                    return 1
                # A drained (or crashed) gateway comes back, as its Deployment would.
                print(f"{p.name} exited with {p.proc.returncode}; starting it again", flush=True)
                cluster.restart_gateway(p.name)
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nstopping")
        return 0
    finally:
        # A second Ctrl-C must not leave children behind half-way through the clean-up.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cluster.stop(grace=STOP_GRACE)
