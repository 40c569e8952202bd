"""`python -m router`: control-plane commands: the HTTP API, operator tools, the local cluster."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from pathlib import Path

from gateway import settings, tokens

PROG = "python -m router"


def _keyring(args) -> tokens.Keyring:
    reader = settings.Reader(os.environ)
    keyring = reader.value(settings.TOKEN_KEYS)
    if reader.problems:
        sys.stderr.write(settings.SettingsError(reader.problems).report(PROG))
        sys.exit(2)
    if keyring is not None:
        return keyring
    cluster = Path(args.cluster)
    if cluster.exists():
        return tokens.Keyring.parse(json.loads(cluster.read_text())["token_keys"])
    sys.exit("no keys: set COBROWSE_TOKEN_KEYS or run `make run` to create .run/cluster.json")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=PROG)
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start a local cluster (NATS, gateways, HTTP API) on loopback")
    up.add_argument("--run-dir", default=".run")
    up.add_argument("--gateways", type=int, default=2)
    up.add_argument(
        "--secure",
        action="store_true",
        help="NATS with TLS (a throwaway CA in RUN_DIR/nats-tls) and a user per component",
    )
    ns = sub.add_parser(
        "nats-secrets",
        help="make the files of the k8s Secrets cobrowse-nats-tls and cobrowse-nats-auth",
    )
    ns.add_argument("--out", required=True, help="a new directory for the files")
    ns.add_argument("--days", type=int, default=365, help="validity of the CA and certificate")
    tok = sub.add_parser("token", help="mint a development token")
    tok.add_argument("--sid", default=None, help="session id (default: a new random one)")
    tok.add_argument("--role", choices=["visitor", "agent"], required=True)
    tok.add_argument("--ttl", type=float, default=3600)
    tok.add_argument("--cluster", default=".run/cluster.json")
    srv = sub.add_parser("serve", help="serve the HTTP API (settings from COBROWSE_* variables)")
    srv.add_argument("--host", default=None, help="listen address (COBROWSE_API_HOST)")
    srv.add_argument("--port", default=None, help="listen port (COBROWSE_API_PORT)")
    st = sub.add_parser("status", help="list the cluster's gateways")
    st.add_argument("--nats", default=None, help="NATS URL (default: COBROWSE_NATS_URL)")
    dr = sub.add_parser("drain", help="tell one gateway to drain")
    dr.add_argument("gateway_id")
    dr.add_argument("--nats", default=None, help="NATS URL (default: COBROWSE_NATS_URL)")
    dr.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the answer")
    args = p.parse_args(argv)
    if args.cmd in ("serve", "status", "drain"):
        from . import serve

        if args.cmd == "serve":
            return serve.cmd_serve(args.host, args.port)
        if args.cmd == "status":
            return serve.cmd_status(args.nats)
        return serve.cmd_drain(args.gateway_id, args.nats, args.timeout)
    if args.cmd == "up":
        from .up import up as run_up

        return run_up(Path(args.run_dir), gateways=args.gateways, secure=args.secure)
    if args.cmd == "nats-secrets":
        from . import nats_secure

        out = Path(args.out)
        if out.exists():
            print(f"{out} exists: give a new directory", file=sys.stderr)
            return 2
        got = nats_secure.make(out, nats_secure.K8S_NAMES, args.days)
        print(nats_secure.kubectl_commands(got))
        return 0
    if args.cmd == "token":
        sid = args.sid or secrets.token_urlsafe(12)
        t = tokens.mint(_keyring(args), sid=sid, role=args.role, now=time.time(), ttl=args.ttl)
        print(json.dumps({"sid": sid, "role": args.role, "token": t}))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
