"""A whole local cluster for the browser's end-to-end tests: real processes on loopback.

NATS (JetStream), one gateway, the router's HTTP service (API, snippet, embed page) and the
asset proxy, plus an origin server for the visitor's test pages. The origin fills in
`{{ROUTER}}` and `{{SITE_KEY}}` in `tests/pages/*.html`, so a page carries the one script
tag a real site would.
"""

from __future__ import annotations

import functools
import http.server
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from router.launcher import ClusterSpec, DevKeys, LocalCluster
from tests.support.browser import QuietServer
from tests.support.keys import ADMIN_KEY, KEYS

PAGES = Path(__file__).resolve().parents[1] / "pages"
SITE_KEY = "pk_e2e_" + secrets.token_hex(6)
AGENT_KEY = "ak_e2e_" + secrets.token_urlsafe(24)
PROXY_KEYS = "pe2e:" + secrets.token_urlsafe(32)
# Sheets under /pages/locked/ stand for a page behind a login: the origin serves them only
# with the cookie its pages set, so the proxy (no cookie) gets 403 (the CSS fallback's test).
LOCKED = "/pages/locked/"
LOGIN_COOKIE = "cb_login=1"


class _OriginHandler(http.server.SimpleHTTPRequestHandler):
    subst: dict[str, str] = {}

    def log_message(self, *args) -> None:
        pass

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path.startswith(LOCKED) and LOGIN_COOKIE not in self.headers.get("Cookie", ""):
            self.send_error(403, "log in first")
            return
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
                self.send_header("Set-Cookie", f"{LOGIN_COOKIE}; Path={LOCKED}; HttpOnly")
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
    local: LocalCluster
    httpd: http.server.ThreadingHTTPServer

    def page(self, name: str) -> str:
        return f"{self.origin}/pages/{name}"

    def embed_url(self, code: str) -> str:
        return f"{self.router}/embed#code={code}&key={AGENT_KEY}"

    def log(self, name: str) -> str:
        return self.local.log_text(name)

    def stop(self) -> None:
        self.local.stop(grace=10)
        self.httpd.shutdown()
        self.httpd.server_close()


def start(base: Path) -> Cluster:
    spec = ClusterSpec(
        gateways=1,
        proxy=True,
        env={"COBROWSE_LOG_LEVEL": "INFO", "COBROWSE_DRAIN_WINDOW": "3"},
        router_env={
            "COBROWSE_LOOKUP_LIMIT_PER_KEY": "1000/minute",
            "COBROWSE_LOOKUP_LIMIT_PER_ADDRESS": "1000/minute",
        },
        tenant="e2e",
        keys=DevKeys(KEYS, SITE_KEY, AGENT_KEY, ADMIN_KEY, PROXY_KEYS),
    )
    local = LocalCluster(spec, base).start()
    handler = type(
        "Handler", (_OriginHandler,), {"subst": {"ROUTER": local.api_url, "SITE_KEY": SITE_KEY}}
    )
    httpd = QuietServer(("127.0.0.1", 0), functools.partial(handler, directory=str(PAGES.parent)))
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return Cluster(
        router=local.api_url,
        proxy=local.proxy_url,
        origin=f"http://127.0.0.1:{httpd.server_address[1]}",
        gateway=local.gateways["gw-1"].url,
        base=base,
        local=local,
        httpd=httpd,
    )
