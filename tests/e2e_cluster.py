"""A whole local cluster for the browser's end-to-end tests: real processes on loopback.

NATS (JetStream), one gateway, the router's HTTP service (API, snippet, embed page) and the
asset proxy, plus an origin server for the visitor's test pages. The origin fills in
`{{ROUTER}}` and `{{SITE_KEY}}` in `tests/pages/*.html`, so a page carries the one script
tag a real site would.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import secrets
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from router import natsproc
from router.cluster import _wait_healthy, spawn_gateway, spawn_proxy, spawn_router

from .conftest import ADMIN_KEY, KEYS

PAGES = Path(__file__).resolve().parent / "pages"
SITE_KEY = "pk_e2e_" + secrets.token_hex(6)
AGENT_KEY = "ak_e2e_" + secrets.token_urlsafe(24)
PROXY_KEYS = "pe2e:" + secrets.token_urlsafe(32)


class _OriginHandler(http.server.SimpleHTTPRequestHandler):
    subst: dict[str, str] = {}

    def log_message(self, *args) -> None:
        pass

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path.endswith(".html"):
            file = PAGES / path.lstrip("/").removeprefix("pages/")
            if file.is_file() and file.resolve().is_relative_to(PAGES):
                body = file.read_text()
                for k, v in self.subst.items():
                    body = body.replace("{{" + k + "}}", v)
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
        super().do_GET()


@dataclass
class Cluster:
    router: str
    proxy: str
    origin: str
    gateway: str
    base: Path
    procs: list[subprocess.Popen] = field(default_factory=list)
    httpd: http.server.ThreadingHTTPServer | None = None

    def page(self, name: str) -> str:
        return f"{self.origin}/pages/{name}"

    def embed_url(self, code: str) -> str:
        return f"{self.router}/embed#code={code}&key={AGENT_KEY}"

    def log(self, name: str) -> str:
        return (self.base / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        # One at a time, NATS last: a gateway draining on SIGTERM still needs NATS.
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()


def start(base: Path) -> Cluster:
    base.mkdir(parents=True, exist_ok=True)
    nats = natsproc.start_single(base / "nats")
    procs: list[subprocess.Popen] = [nats.proc]
    try:
        env = dict(
            os.environ,
            COBROWSE_TOKEN_KEYS=KEYS,
            COBROWSE_ADMIN_KEY=ADMIN_KEY,
            COBROWSE_LOG_LEVEL="INFO",
            COBROWSE_DRAIN_WINDOW="3",
        )
        gw_port, gw_admin = natsproc.free_port(), natsproc.free_port()
        gw = spawn_gateway(
            "gw-e2e",
            gw_port,
            nats.url,
            env,
            base,
            ["--health-port", str(gw_admin), "--workers", "1"],
        )
        procs.append(gw)
        proxy_port, router_port = natsproc.free_port(), natsproc.free_port()
        proxy_url = f"http://127.0.0.1:{proxy_port}"
        proxy = spawn_proxy(
            proxy_port,
            dict(
                env,
                COBROWSE_PROXY_KEYS=PROXY_KEYS,
                COBROWSE_PROXY_PUBLIC_URL=proxy_url,
                COBROWSE_PROXY_ALLOW="127.0.0.1/32",  # the test origin is on loopback
            ),
            base,
        )
        procs.append(proxy)
        router = spawn_router(
            router_port,
            nats.url,
            dict(
                env,
                COBROWSE_SITE_KEYS=f"{SITE_KEY}:e2e",
                COBROWSE_AGENT_KEYS=f"{AGENT_KEY}:e2e",
                COBROWSE_PROXY_PUBLIC_URL=proxy_url,
                COBROWSE_LOOKUP_LIMIT_PER_KEY="1000/minute",
                COBROWSE_LOOKUP_LIMIT_PER_ADDRESS="1000/minute",
            ),
            base,
        )
        procs.append(router)
        router_url = f"http://127.0.0.1:{router_port}"
        _wait_healthy(f"http://127.0.0.1:{gw_admin}/readyz", gw, timeout=30)
        _wait_healthy(proxy_url + "/healthz", proxy, timeout=30)
        _wait_healthy(router_url + "/readyz", router, timeout=30)
        # The router lists gateways from their heartbeats: wait until ours is there.
        deadline = time.monotonic() + 20
        while True:
            req = urllib.request.Request(
                router_url + "/v1/cluster", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
            )
            with urllib.request.urlopen(req, timeout=2) as r:
                if json.loads(r.read()).get("gateways"):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway never registered with the cluster")
            time.sleep(0.1)
    except BaseException:
        for p in procs:
            p.kill()
        raise
    handler = type(
        "Handler", (_OriginHandler,), {"subst": {"ROUTER": router_url, "SITE_KEY": SITE_KEY}}
    )
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(PAGES.parent))
    )
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return Cluster(
        router=router_url,
        proxy=proxy_url,
        origin=f"http://127.0.0.1:{httpd.server_address[1]}",
        gateway=f"ws://127.0.0.1:{gw_port}/",
        base=base,
        procs=procs,
        httpd=httpd,
    )
