"""`python -m proxy` (subprocess runs) and `proxy.config.ProxyConfig`."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from gateway.tokens import Keyring
from proxy import signing
from proxy.config import ConfigError, ProxyConfig

ROOT = Path(__file__).resolve().parents[2]
KEYS = "p-1:" + secrets.token_urlsafe(32) + ",p-0:" + secrets.token_urlsafe(32)
KEYRING = Keyring.parse(KEYS)
PUBLIC = "https://proxy.example.test"
CSS = """\
a:hover { color: red; background: url(img/bg.png) }
li:not(:hover) { opacity: .5 }
p::before:hover { content: "x" }
@import "theme.css";
.logo { background: url("data:image/png;base64,AAAA") }
"""
SIGNED_RE = re.compile(re.escape(PUBLIC) + r"(/v1/asset\?[A-Za-z0-9_%=&.~-]+)")


def run(*args: str, stdin: str | None = None, env: dict | None = None, keys: bool = True):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("COBROWSE_PROXY_")}
    if keys:
        environ["COBROWSE_PROXY_KEYS"] = KEYS
        environ["COBROWSE_PROXY_PUBLIC_URL"] = PUBLIC
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environ,
        timeout=60,
    )


def signed_targets(css: str, session: str = "cli") -> list[str]:
    targets = []
    for path in SIGNED_RE.findall(css):
        query = parse_qs(urlsplit(path).query, keep_blank_values=True)
        url, sid = signing.verify(KEYRING, query, time.time(), session_id=session)
        assert sid == session
        targets.append(url)
    return targets


@pytest.fixture
def css_file(tmp_path: Path) -> Path:
    path = tmp_path / "site.css"
    path.write_text(CSS)
    return path


# --------------------------------------------------------------------------- CLI


def test_rewrite_file_hover_copies_and_signed_urls(css_file: Path) -> None:
    r = run("rewrite", str(css_file), "--base", "https://site.example/css/main.css")
    assert r.returncode == 0, r.stderr
    assert "a:hover" in r.stdout  # the original rule is kept
    assert "a.cb-hover" in r.stdout  # and a class-based copy follows it
    assert "li:not(.cb-hover)" in r.stdout and "li:not(:hover)" not in r.stdout
    assert "data:image/png;base64,AAAA" in r.stdout
    targets = signed_targets(r.stdout)
    assert "https://site.example/css/img/bg.png" in targets
    assert "https://site.example/css/theme.css" in targets
    assert "ephemeral" not in r.stderr


def test_rewrite_stdin_and_session(tmp_path: Path) -> None:
    r = run(
        "rewrite",
        "-",
        "--base",
        "https://site.example/a/",
        "--session",
        "s123",
        stdin="b:hover{background:url(x.png)}",
    )
    assert r.returncode == 0, r.stderr
    assert "b.cb-hover" in r.stdout
    assert signed_targets(r.stdout, session="s123") == ["https://site.example/a/x.png"] * 2
    query = parse_qs(urlsplit(SIGNED_RE.findall(r.stdout)[0]).query)
    with pytest.raises(signing.SignatureError):
        signing.verify(KEYRING, query, time.time(), session_id="cli")


def test_signed_urls_expire_after_ttl() -> None:
    r = run(
        "rewrite",
        "-",
        "--base",
        "https://site.example/",
        stdin="a{background:url(x.png)}",
        env={"COBROWSE_PROXY_URL_TTL": "120"},
    )
    assert r.returncode == 0, r.stderr
    query = parse_qs(urlsplit(SIGNED_RE.findall(r.stdout)[0]).query)
    expires = int(query["e"][0])
    assert time.time() + 100 < expires <= time.time() + 121
    with pytest.raises(signing.SignatureError) as err:
        signing.verify(KEYRING, query, expires + 1)
    assert err.value.code == "expired"


def test_notes_on_stderr_for_hover_after_pseudo_element(css_file: Path) -> None:
    r = run("rewrite", str(css_file), "--base", "https://site.example/")
    assert r.returncode == 0, r.stderr
    assert "p::before:hover" in r.stdout
    assert ":hover after a pseudo-element" in r.stderr


def test_without_keys_uses_ephemeral_key_and_says_so(css_file: Path) -> None:
    r = run("rewrite", str(css_file), "--base", "https://site.example/", keys=False)
    assert r.returncode == 0, r.stderr
    assert "COBROWSE_PROXY_KEYS is not set" in r.stderr
    assert "ephemeral" in r.stderr
    assert "http://127.0.0.1:8090/v1/asset?" in r.stdout


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.css"
    r = run("rewrite", str(missing))
    assert r.returncode != 0
    assert "cannot read" in r.stderr and "nope.css" in r.stderr
    assert r.stdout == ""


def test_url_input_to_a_private_address_is_refused() -> None:
    r = run("rewrite", "http://169.254.169.254/latest/main.css")
    assert r.returncode == 1
    assert "address_refused" in r.stderr
    assert r.stdout == ""


def test_url_input_is_fetched_and_rewritten_against_its_own_url(tmp_path: Path) -> None:
    import functools
    import http.server
    import threading

    (tmp_path / "site.css").write_text("a:hover { background: url(img/bg.png) }\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/site.css"
        r = run("rewrite", url, env={"COBROWSE_PROXY_ALLOW": "127.0.0.1/32"})
    finally:
        server.shutdown()
        server.server_close()
    assert r.returncode == 0, r.stderr
    assert "a.cb-hover" in r.stdout
    signed = re.findall(r"url\(([^)]*)\)", r.stdout)
    query = {k: v[0] for k, v in parse_qs(urlsplit(signed[0].strip("\"'")).query).items()}
    target, _ = signing.verify(Keyring.parse(KEYS), query, time.time())
    assert target == url.rsplit("/", 1)[0] + "/img/bg.png"


def test_input_over_size_limit(css_file: Path) -> None:
    r = run("rewrite", str(css_file), env={"COBROWSE_PROXY_MAX_CSS_BYTES": "10"})
    assert r.returncode != 0
    assert "COBROWSE_PROXY_MAX_CSS_BYTES" in r.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("COBROWSE_PROXY_KEYS", "no-colon"),
        ("COBROWSE_PROXY_KEYS", "k:short"),
        ("COBROWSE_PROXY_TIMEOUT", "soon"),
        ("COBROWSE_PROXY_ALLOW", "not a host!"),
        ("COBROWSE_PROXY_PUBLIC_URL", "ftp://x"),
    ],
)
def test_bad_env_config_is_a_clear_error(css_file: Path, name: str, value: str) -> None:
    r = run("rewrite", str(css_file), env={name: value})
    assert r.returncode == 2
    assert "bad configuration" in r.stderr and name in r.stderr
    assert "Traceback" not in r.stderr
    assert r.stdout == ""


def test_serve_answers_health_and_stops_on_sigterm() -> None:
    import signal
    import urllib.error
    import urllib.request

    from router.natsproc import free_port

    port = free_port()
    environ = dict(
        os.environ,
        COBROWSE_PROXY_KEYS=KEYS,
        COBROWSE_PROXY_PUBLIC_URL=PUBLIC,
        COBROWSE_LOG_FORMAT="json",  # production's (k8s/base/config/common.env)
        COBROWSE_PROXY_FORWARDED_HOPS="1",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "proxy did not start"
                time.sleep(0.1)
        unsigned = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/asset?u=x", headers={"X-Forwarded-For": "203.0.113.9"}
        )
        try:
            urllib.request.urlopen(unsigned, timeout=5)
        except urllib.error.HTTPError as err:
            err.close()  # an open connection would hold the graceful shutdown
            assert err.code == 401
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Issue 16: /metrics by route template, and every line of stderr one JSON event:
    # Hypercorn's, the service's, the access log with the caller behind one trusted hop.
    assert 'cobrowse_proxy_requests_total{route="/v1/asset",status="401"} 1.0' in metrics
    assert 'cobrowse_proxy_request_duration_seconds_count{route="/v1/asset"} 1.0' in metrics
    assert 'cobrowse_build_info{component="proxy",version="' in metrics
    assert "process_cpu_seconds_total " in metrics
    events = [json.loads(line) for line in proc.stderr.read().splitlines()]
    assert all({"timestamp", "level", "event"} <= set(e) for e in events), events
    assert {e["event"] for e in events} >= {"proxy_listening", "http_request", "proxy_stopped"}
    assert any(e.get("logger") == "hypercorn.error" for e in events), events
    access = [e for e in events if e["event"] == "http_request"]
    assert [(e["route"], e["status"], e["client"]) for e in access] == [
        ("/v1/asset", 401, "203.0.113.9"),  # probes and scrapes (/healthz, /metrics): DEBUG
    ]


def test_help_lists_subcommands() -> None:
    r = run("--help")
    assert r.returncode == 0
    assert "rewrite" in r.stdout and "serve" in r.stdout
    r = run("rewrite", "--help")
    assert r.returncode == 0
    assert "--base" in r.stdout and "--session" in r.stdout


# --------------------------------------------------------------------------- config


def test_config_defaults() -> None:
    c = ProxyConfig.from_env({})
    assert c.keyring is None
    assert c.public_url == "http://127.0.0.1:8090"
    assert c.allow.networks == () and not c.allow.hosts
    assert c.max_css_bytes == 5 * 1024 * 1024
    assert c.timeout == 10.0
    assert c.max_redirects == 5
    assert c.cache_bytes == 64 * 1024 * 1024
    assert c.url_ttl == 3600


def test_config_from_env_values() -> None:
    c = ProxyConfig.from_env(
        {
            "COBROWSE_PROXY_KEYS": KEYS,
            "COBROWSE_PROXY_PUBLIC_URL": "https://cdn.example/proxy/",
            "COBROWSE_PROXY_ALLOW": "127.0.0.0/8,localhost",
            "COBROWSE_PROXY_MAX_CSS_BYTES": "1000",
            "COBROWSE_PROXY_TIMEOUT": "2.5",
            "COBROWSE_PROXY_MAX_REDIRECTS": "0",
            "COBROWSE_PROXY_CACHE_BYTES": "0",
            "COBROWSE_PROXY_URL_TTL": "60",
        }
    )
    assert c.keyring == KEYRING and c.keyring.current[0] == "p-1"
    assert c.public_url == "https://cdn.example/proxy"
    assert c.allow.allows_host("localhost")
    assert (c.max_css_bytes, c.timeout, c.max_redirects, c.cache_bytes, c.url_ttl) == (
        1000,
        2.5,
        0,
        0,
        60,
    )


def test_config_blank_values_mean_default() -> None:
    c = ProxyConfig.from_env({"COBROWSE_PROXY_KEYS": "", "COBROWSE_PROXY_TIMEOUT": "  "})
    assert c.keyring is None and c.timeout == 10.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("COBROWSE_PROXY_KEYS", "nocolon"),
        ("COBROWSE_PROXY_KEYS", "k:tooshort"),
        ("COBROWSE_PROXY_PUBLIC_URL", "not a url"),
        ("COBROWSE_PROXY_PUBLIC_URL", "https://x/?q=1"),
        ("COBROWSE_PROXY_ALLOW", "10.0.0.1/8"),
        ("COBROWSE_PROXY_MAX_CSS_BYTES", "5MiB"),
        ("COBROWSE_PROXY_MAX_CSS_BYTES", "0"),
        ("COBROWSE_PROXY_TIMEOUT", "0"),
        ("COBROWSE_PROXY_TIMEOUT", "nan"),
        ("COBROWSE_PROXY_TIMEOUT", "inf"),
        ("COBROWSE_PROXY_MAX_REDIRECTS", "-1"),
        ("COBROWSE_PROXY_CACHE_BYTES", "1.5"),
        ("COBROWSE_PROXY_URL_TTL", "0"),
    ],
)
def test_config_bad_values(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        ProxyConfig.from_env({name: value})
    assert name in str(err.value)


def test_config_error_does_not_echo_key_secret() -> None:
    secret = "k:tooshort"
    with pytest.raises(ConfigError) as err:
        ProxyConfig.from_env({"COBROWSE_PROXY_KEYS": secret})
    assert "tooshort" not in str(err.value)
