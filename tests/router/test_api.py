"""The router's HTTP API over real HTTP (Hypercorn on trio) against a real nats-server, its
pure parts directly, and the `router status` / `router drain` / `router serve` commands."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import structlog
import trio
from prometheus_client.parser import text_string_to_metric_families

from gateway import agent_roster, build_info, membership, session_store, streams, tokens
from gateway.codec import SESSION_ID_RE, Event, encode_batch
from gateway.nats_bridge import NatsBridge, open_bridge
from gateway.page_info import PageInfo
from router import natsproc, sessions, shortcodes
from router.api import auth as api_auth
from router.api import errors as api_errors
from router.api import rate_limits
from router.config import ConfigError, RouterConfig
from router.config import load as load_config
from router.serve import run_server
from tests.support.keys import KEYRING, KEYS

SITE_KEY = "pk_shop_" + secrets.token_hex(6)
OTHER_SITE_KEY = "pk_blog_" + secrets.token_hex(6)
AGENT_KEY = "ak_desk_" + secrets.token_urlsafe(24)
AGENT_KEY2 = "ak_crm_" + secrets.token_urlsafe(24)
ADMIN_KEY = "adm_" + secrets.token_urlsafe(24)


async def has_events(bridge, stream: str, subject: str) -> bool:
    """Whether the stream holds anything on `subject` (nats-py, like the router)."""
    from nats.js.errors import NotFoundError

    try:
        await bridge.call(bridge.js.get_last_msg, stream, subject)
    except NotFoundError:
        return False
    return True


def env_for(nats_url: str, **over: str) -> dict[str, str]:
    env = {
        "COBROWSE_NATS_URL": nats_url,
        "COBROWSE_TOKEN_KEYS": KEYS,
        "COBROWSE_SITE_KEYS": f"{SITE_KEY}:shop,{OTHER_SITE_KEY}:blog",
        "COBROWSE_AGENT_KEYS": f"{AGENT_KEY}:desk,{AGENT_KEY2}:crm",
        "COBROWSE_ADMIN_KEY": ADMIN_KEY,
        "COBROWSE_API_PORT": "0",
    }
    env.update({f"COBROWSE_{k.upper()}": v for k, v in over.items()})
    return env


def auth(key: str = AGENT_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class Api:
    http: httpx.AsyncClient
    bridge: NatsBridge
    cfg: RouterConfig
    kv_sessions: Any
    kv_codes: Any
    kv_gateways: Any

    async def create(self, site_key: str = SITE_KEY) -> dict:
        r = await self.http.post("/v1/sessions", json={"site_key": site_key})
        assert r.status_code == 201, r.text
        return r.json()

    async def lookup(
        self, code: str, key: str = AGENT_KEY, headers: dict | None = None
    ) -> httpx.Response:
        return await self.http.post(
            "/v1/sessions/lookup", json={"code": code}, headers={**auth(key), **(headers or {})}
        )


GATEWAYS = [
    membership.GatewayInfo(id="gw-a", url="ws://10.0.0.1:8765/", connections=3, load=0.25),
    membership.GatewayInfo(id="gw-b", url="ws://10.0.0.2:8765/", connections=1, load=0.5),
    membership.GatewayInfo(id="gw-c", url="ws://10.0.0.3:8765/", admin_url="http://10.0.0.3:9000/"),
    membership.GatewayInfo(id="gw-d", url="ws://10.0.0.4:8765/", state="draining"),
]


async def put_gateways(bridge, kv) -> list[membership.GatewayInfo]:
    for g in GATEWAYS:
        g.updated = time.time()
        await bridge.call(membership.put, kv, g)
    return GATEWAYS


@asynccontextmanager
async def serving(nats_url: str, gateways: bool = True, **over: str):
    """The API served by `run_server` (what `router serve` runs) on a free loopback port, and a
    second NATS connection for the test's own reads and writes."""
    cfg = load_config(env_for(nats_url, **over))
    stop = trio.Event()
    async with open_bridge(nats_url) as bridge, trio.open_nursery() as n:
        urls = await n.start(
            lambda task_status: run_server(cfg, shutdown_trigger=stop.wait, task_status=task_status)
        )
        kv_sessions = await bridge.call(bridge.js.key_value, cfg.stream.kv_bucket)
        kv_codes = await bridge.call(bridge.js.key_value, cfg.codes_bucket)
        kv_gateways = await bridge.call(bridge.js.key_value, membership.BUCKET)
        if gateways:
            await put_gateways(bridge, kv_gateways)
        async with httpx.AsyncClient(base_url=urls[0], timeout=10) as http:
            yield Api(http, bridge, cfg, kv_sessions, kv_codes, kv_gateways)
        stop.set()


async def chunks(piece: bytes, n: int):
    for _ in range(n):
        yield piece


def assert_error(r: httpx.Response, status: int | None = None, code: str | None = None) -> dict:
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    if status is not None:
        assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert isinstance(err["code"], str) and isinstance(err["message"], str), body
    if code is not None:
        assert err["code"] == code, body
    return err


# ---- pure parts -------------------------------------------------------------------------


def test_small_helpers():
    assert (
        shortcodes.normalize_code("123 456") == "123456"
        and shortcodes.normalize_code("12-34-56") == "123456"
    )
    assert not shortcodes.is_code(shortcodes.normalize_code("12345a"))
    keys = {AGENT_KEY: "desk", AGENT_KEY2: "crm"}
    assert api_auth.find_key(keys, AGENT_KEY2) == AGENT_KEY2
    assert api_auth.find_key(keys, AGENT_KEY[:-1]) is None and api_auth.find_key(keys, None) is None
    assert api_auth.key_id(AGENT_KEY) != api_auth.key_id(
        AGENT_KEY2
    ) and AGENT_KEY not in api_auth.key_id(AGENT_KEY)
    assert rate_limits.retry_after(0.01) == "1" and rate_limits.retry_after(12.2) == "13"


def test_rate_limits_count_only_allowed_requests():
    import limits

    rl = rate_limits.RateLimits()
    per_key, per_addr = limits.parse("2/minute"), limits.parse("3/minute")
    assert rl.check((per_key, "k", "a"), (per_addr, "ip", "x")) is None
    assert rl.check((per_key, "k", "a"), (per_addr, "ip", "x")) is None
    wait = rl.check((per_key, "k", "a"), (per_addr, "ip", "x"))
    assert wait is not None and 1 <= wait <= 60
    # the refused request was not counted against the address
    assert rl.check((per_key, "k", "b"), (per_addr, "ip", "x")) is None
    assert rl.check((per_key, "k", "b"), (per_addr, "ip", "x")) is not None
    with pytest.raises(api_errors.ApiError) as refused:
        rl.enforce((per_addr, "ip", "x"))
    assert (refused.value.status, refused.value.code) == (429, "rate_limited")
    assert 1 <= int(refused.value.headers["Retry-After"]) <= 60
    rl.enforce((per_addr, "ip", "y"))  # another address is not limited


def test_config_from_env_and_file(tmp_path):
    cfg = load_config(env_for("nats://a:1,nats://b:2", code_ttl="30", api_port="9000"))
    assert cfg.nats_servers == ["nats://a:1", "nats://b:2"]
    assert cfg.site_keys == {SITE_KEY: "shop", OTHER_SITE_KEY: "blog"}
    assert cfg.agent_keys[AGENT_KEY] == "desk" and cfg.admin_key == ADMIN_KEY
    assert (cfg.code_ttl, cfg.token_ttl, cfg.port, cfg.host) == (30.0, 3600.0, 9000, "127.0.0.1")
    assert cfg.lookup_limit_per_key == "10/minute" and cfg.codes_ttl == 3600.0
    f = tmp_path / "router.json"
    f.write_text(
        json.dumps(
            {
                "site_keys": {"pk_from_file_1": "filesite"},
                "agent_keys": AGENT_KEY + ":desk",
                "token_keys": KEYS,
                "api_port": 7000,
                "code_ttl": 99,
                "stream_replicas": 3,
            }
        )
    )
    cfg = load_config({"COBROWSE_CONFIG": str(f), "COBROWSE_CODE_TTL": "5"})
    assert cfg.site_keys == {"pk_from_file_1": "filesite"} and cfg.port == 7000
    assert cfg.code_ttl == 5.0  # the environment wins over the file
    assert cfg.stream.replicas == 3 and cfg.admin_key is None


@pytest.mark.parametrize(
    "change, message",
    [
        ({"COBROWSE_SITE_KEYS": None}, "COBROWSE_SITE_KEYS is not set"),
        ({"COBROWSE_AGENT_KEYS": None}, "COBROWSE_AGENT_KEYS is not set"),
        ({"COBROWSE_TOKEN_KEYS": None}, "COBROWSE_TOKEN_KEYS is not set"),
        ({"COBROWSE_SITE_KEYS": "nocolon"}, "must look like"),
        ({"COBROWSE_SITE_KEYS": "short:x"}, "8-128 characters"),
        ({"COBROWSE_AGENT_KEYS": "tooshort:x"}, "at least 16"),
        ({"COBROWSE_AGENT_KEYS": f"{AGENT_KEY}:a,{AGENT_KEY}:b"}, "listed twice"),
        (
            {
                "COBROWSE_AGENT_KEYS": f"{SITE_KEY}xxxxxxxx:a",
                "COBROWSE_SITE_KEYS": f"{SITE_KEY}xxxxxxxx:s",
            },
            "public",
        ),
        ({"COBROWSE_ADMIN_KEY": AGENT_KEY}, "must differ"),
        ({"COBROWSE_LOOKUP_LIMIT_PER_KEY": "lots"}, "not a rate"),
        ({"COBROWSE_CODE_TTL": "soon"}, "not a number"),
        ({"COBROWSE_TOKEN_KEYS": "k:short"}, "COBROWSE_TOKEN_KEYS"),
        ({"COBROWSE_STREAM_STORAGE": "disk"}, "memory' or 'file"),
        ({"COBROWSE_CONFIG": "/nonexistent/router.json"}, "cannot read"),
    ],
)
def test_config_errors_are_clear(change, message):
    env = env_for("nats://x:1")
    for k, v in change.items():
        if v is None:
            env.pop(k)
        else:
            env[k] = v
    with pytest.raises(ConfigError, match=message):
        load_config(env)


# ---- the API over HTTP ------------------------------------------------------------------


async def test_create_session(nats_server):
    async with serving(nats_server.url) as a:
        before = time.time()
        body = await a.create()
        assert set(body) == {
            "session_id",
            "visitor_token",
            "token_expires_at",
            "gateways",
            "short_code",
            "code_expires_at",
        }
        sid = body["session_id"]
        assert len(sid) == 16 and SESSION_ID_RE.fullmatch(sid)
        assert shortcodes.is_code(body["short_code"])
        gws = await a.bridge.call(membership.list_gateways, a.kv_gateways)
        assert body["gateways"] == membership.urls_for(sid, gws)
        assert "ws://10.0.0.4:8765/" not in body["gateways"]  # draining
        assert len(body["gateways"]) == 3
        claims = tokens.verify(
            KEYRING, body["visitor_token"], sid=sid, role="visitor", now=time.time()
        )
        assert before + 3600 - 2 <= claims["exp"] <= time.time() + 3600
        assert before + 1200 - 1 <= body["code_expires_at"] <= time.time() + 1200
        meta = await a.bridge.call(session_store.load, a.kv_sessions, sid)
        assert (meta.site, meta.code, meta.ended) == ("shop", body["short_code"], False)
        assert before - 1 <= meta.created <= time.time()
        entry = await a.bridge.call(a.kv_codes.get, body["short_code"])
        assert entry.value.decode() == sid
        # many sessions: distinct ids and codes
        made = [await a.create(OTHER_SITE_KEY) for _ in range(20)]
        assert len({m["session_id"] for m in made}) == 20
        assert len({m["short_code"] for m in made} | {body["short_code"]}) == 21

        r = await a.http.post("/v1/sessions", json={"site_key": "pk_nonexistent_1"})
        assert_error(r, 401, "bad_site_key")
        r = await a.http.post("/v1/sessions", json={"site_key": AGENT_KEY})
        assert_error(r, 401, "bad_site_key")


async def test_no_gateways_is_503(nats_server):
    async with serving(nats_server.url, gateways=False) as a:
        r = await a.http.post("/v1/sessions", json={"site_key": SITE_KEY})
        assert r.status_code == 503 and r.json()["error"]["code"] == "no_gateways"
        assert r.headers["retry-after"]


async def test_lookup_by_code(nats_server):
    async with serving(nats_server.url) as a:
        made = await a.create()
        sid, code = made["session_id"], made["short_code"]
        r = await a.lookup(code)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["session_id"] == sid
        assert body["gateways"] == made["gateways"]  # visitor and agent meet on the same one
        tokens.verify(KEYRING, body["agent_token"], sid=sid, role="agent", now=time.time())
        r = await a.lookup(f"{code[:3]} {code[3:]}", key=AGENT_KEY2)
        assert r.status_code == 200 and r.json()["session_id"] == sid

        for headers in (
            {},
            {"Authorization": "Bearer wrong-key-wrong-key-wrong"},
            {"Authorization": f"Basic {AGENT_KEY}"},
            {"Authorization": f"Bearer {SITE_KEY}"},
            {"Authorization": f"Bearer {ADMIN_KEY}"},
            {"Authorization": "Bearer"},
        ):
            r = await a.http.post("/v1/sessions/lookup", json={"code": code}, headers=headers)
            assert_error(r, 401, "bad_api_key")
            assert r.headers["www-authenticate"] == "Bearer"

        unknown = "000000" if code != "000000" else "000001"
        for c in (unknown, "12345", "abcdef", "1234567", "١٢٣٤٥٦"):
            assert_error(await a.lookup(c), 404, "unknown_code")


async def test_lookup_rate_limited_per_key(nats_server):
    async with serving(nats_server.url, lookup_limit_per_address="1000/minute") as a:
        code = (await a.create())["short_code"]
        for i in range(10):
            r = await a.lookup(code if i % 2 else "999999")
            assert r.status_code in (200, 404), r.text
        r = await a.lookup(code)
        err = assert_error(r, 429, "rate_limited")
        assert 1 <= int(r.headers["retry-after"]) <= 60, err
        assert (await a.lookup(code, key=AGENT_KEY2)).status_code == 200  # another key


async def test_lookup_rate_limited_per_address(nats_server):
    async with serving(
        nats_server.url,
        lookup_limit_per_key="1000/minute",
        lookup_limit_per_address="3/minute",
        api_forwarded_hops="1",
    ) as a:
        code = (await a.create())["short_code"]
        here = {"X-Forwarded-For": "203.0.113.7"}
        assert (await a.lookup(code, headers=here)).status_code == 200
        assert (await a.lookup(code, key=AGENT_KEY2, headers=here)).status_code == 200
        assert (await a.lookup(code, headers=here)).status_code == 200
        r = await a.lookup(code, key=AGENT_KEY2, headers=here)  # a fresh key, same address
        assert_error(r, 429, "rate_limited")
        assert int(r.headers["retry-after"]) >= 1
        there = {"X-Forwarded-For": "198.51.100.9"}
        assert (await a.lookup(code, key=AGENT_KEY2, headers=there)).status_code == 200


def sample(text: str, name: str, **labels: str) -> float:
    """One sample of a Prometheus text page (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return 0.0


async def test_metrics_and_access_log_by_route_never_through_the_ingress(nats_server):
    """Issue 16: what an SRE sees: requests by route template and status, latency, refusals
    by the rate limits, code lookups that miss (guessing), the access log's caller."""
    async with serving(
        nats_server.url, lookup_limit_per_address="2/minute", api_forwarded_hops="1"
    ) as a:
        before = (await a.http.get("/metrics")).text
        made = await a.create()
        here = {"X-Forwarded-For": "203.0.113.7"}
        with structlog.testing.capture_logs() as logs:
            assert (await a.lookup(made["short_code"], headers=here)).status_code == 200
            assert (await a.lookup("999999", headers=here)).status_code == 404
            assert (await a.lookup("999999", headers=here)).status_code == 429
            r = await a.http.get(f"/v1/sessions/{made['session_id']}", headers=auth())
            assert r.status_code == 200
            assert (await a.http.get("/no/such/" + secrets.token_hex(4))).status_code == 404
        through_ingress = await a.http.get("/metrics", headers=here)
        assert_error(through_ingress, 404, "not_found")
        after = (await a.http.get("/metrics")).text

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    lookup = "/v1/sessions/lookup"
    requests = "cobrowse_router_requests_total"
    for status in ("200", "404", "429"):
        assert delta(requests, route=lookup, status=status) == 1, status
    assert delta(requests, route="/v1/sessions/{session_id}", status="200") == 1
    assert delta(requests, route="unmatched", status="404") == 1  # no raw path as a label
    assert delta(requests, route="/metrics", status="404") == 1
    assert delta("cobrowse_router_request_duration_seconds_count", route=lookup) == 3
    assert delta("cobrowse_router_rate_limited_total", limit="lookup-addr") == 1
    assert delta("cobrowse_router_code_lookups_total", result="found") == 1
    assert delta("cobrowse_router_code_lookups_total", result="unknown") == 1
    assert sample(after, "cobrowse_build_info", version=build_info.version(), component="router")
    assert sample(after, "process_cpu_seconds_total") > 0
    access = [e for e in logs if e["event"] == "http_request" and e["route"] == lookup]
    assert [(e["method"], e["status"], e["client"]) for e in access] == [
        ("POST", 200, "203.0.113.7"),
        ("POST", 404, "203.0.113.7"),
        ("POST", 429, "203.0.113.7"),
    ]
    assert all(e["duration_ms"] >= 0 and e["log_level"] == "info" for e in access)


async def test_code_expires_unless_an_agent_joined(nats_server):
    async with serving(nats_server.url, code_ttl="1") as a:
        lonely = await a.create()
        joined = await a.create()
        assert joined["code_expires_at"] - time.time() <= 1
        assert (await a.lookup(lonely["short_code"])).status_code == 200

        def agent_joins(meta):
            meta.agents["a0123456789ab"] = time.time()

        await a.bridge.call(session_store.update, a.kv_sessions, joined["session_id"], agent_joins)
        await trio.sleep(1.3)
        assert_error(await a.lookup(lonely["short_code"]), 404, "unknown_code")
        r = await a.lookup(joined["short_code"])
        assert r.status_code == 200 and r.json()["session_id"] == joined["session_id"]
        r = await a.http.get(f"/v1/sessions/{joined['session_id']}", headers=auth())
        assert r.json()["code_expires_at"] is None and r.json()["agents"]


async def test_agents_that_can_no_longer_resume_are_not_counted(nats_server):
    """An away agent counts (listing, inspect, the code) until its resume token expires
    plus the grace; after that it is gone (gateway/agent_roster.py)."""
    async with serving(nats_server.url, code_ttl="1") as a:
        away, gone = await a.create(), await a.create()
        now = time.time()

        def agent_dropped(until):
            def change(meta):
                meta.agents["a0123456789ab"] = now - 10
                meta.away["a0123456789ab"] = until

            return change

        for made, until in ((away, now + 60), (gone, now - agent_roster.AWAY_GRACE - 1)):
            await a.bridge.call(
                session_store.update, a.kv_sessions, made["session_id"], agent_dropped(until)
            )
        await trio.sleep(1.3)  # both codes past their own TTL
        assert (await a.lookup(away["short_code"])).status_code == 200
        assert_error(await a.lookup(gone["short_code"]), 404, "unknown_code")
        listed = (await a.http.get("/v1/sessions", headers=auth())).json()["sessions"]
        by_sid = {row["session_id"]: row for row in listed}
        assert by_sid[away["session_id"]]["agents"] == 1
        assert by_sid[gone["session_id"]]["agents"] == 0
        assert by_sid[gone["session_id"]]["joinable"] is False
        d = (await a.http.get(f"/v1/sessions/{away['session_id']}", headers=auth())).json()
        assert d["agents"] == {"a0123456789ab": now - 10}
        assert d["away"] == {"a0123456789ab": now + 60}
        assert d["code_expires_at"] is None
        d = (await a.http.get(f"/v1/sessions/{gone['session_id']}", headers=auth())).json()
        assert d["agents"] == {} and d["away"] == {} and d["code_expires_at"] is not None


async def test_an_agent_whose_gateway_left_the_registry_is_away_then_gone(nats_server):
    """The router judges agents with the gateway registry (gateway/agent_roster.py): one whose
    join's gateway instance is no longer registered (killed: nothing marked it) is away
    until its token expires, then gone, in the inspect, the listing and the code lookup."""
    async with serving(nats_server.url, code_ttl="1") as a:
        up = membership.GatewayInfo("gw-up", "ws://127.0.0.1:9/", instance="i-up")
        up.updated = time.time()
        await a.bridge.call(membership.put, a.kv_gateways, up)
        alive, killed, gone = await a.create(), await a.create(), await a.create()
        now, aid = time.time(), "a0123456789ab"
        joined = now - 60

        def agent_on(instance: str, until: float):
            host = session_store.AgentHost("gw-x", instance, joined, until)
            return lambda meta: agent_roster.join(meta, aid, joined, host)

        for made, instance, until in (
            (alive, "i-up", now + 60),
            (killed, "i-killed", now + 60),
            (gone, "i-killed", now - agent_roster.AWAY_GRACE - 1),
        ):
            await a.bridge.call(
                session_store.update, a.kv_sessions, made["session_id"], agent_on(instance, until)
            )
        await trio.sleep(1.3)  # the codes past their own TTL: only present agents keep them

        async def inspect(made):
            r = await a.http.get(f"/v1/sessions/{made['session_id']}", headers=auth())
            assert r.status_code == 200, r.text
            return r.json()

        d = await inspect(alive)
        assert (d["agents"], d["away"]) == ({aid: joined}, {})
        d = await inspect(killed)
        assert (d["agents"], d["away"]) == ({aid: joined}, {aid: now + 60})
        d = await inspect(gone)
        assert (d["agents"], d["away"]) == ({}, {}) and d["code_expires_at"] is not None
        listed = (await a.http.get("/v1/sessions", headers=auth())).json()["sessions"]
        rows = {row["session_id"]: row for row in listed}
        assert [rows[m["session_id"]]["agents"] for m in (alive, killed, gone)] == [1, 1, 0]
        assert [rows[m["session_id"]]["joinable"] for m in (alive, killed, gone)] == [
            True,
            True,
            False,
        ]
        assert (await a.lookup(killed["short_code"])).status_code == 200
        assert_error(await a.lookup(gone["short_code"]), 404, "unknown_code")


async def test_list_inspect_and_end(nats_server):
    async with serving(nats_server.url, agent_sites="crm:blog") as a:
        s1, s2 = await a.create(), await a.create(OTHER_SITE_KEY)
        sid1, sid2 = s1["session_id"], s2["session_id"]
        # The visitor's page, as a gateway records it with a snapshot pointer, is listed.
        page = PageInfo("https://shop.example/cart?step=2", "Cart <2>")
        await a.bridge.call(
            session_store.update, a.kv_sessions, sid1, lambda m: setattr(m, "page", page)
        )
        r = await a.http.get("/v1/sessions", headers=auth())
        assert r.status_code == 200
        listed = {s["session_id"]: s for s in r.json()["sessions"]}
        assert listed[sid1] == {
            "session_id": sid1,
            "site": "shop",
            "created": listed[sid1]["created"],
            "epoch": 0,
            "agents": 0,
            "code": s1["short_code"],
            "joinable": True,
            "url": page.url,
            "title": page.title,
        }
        assert listed[sid2]["site"] == "blog" and r.json()["count"] == 2
        assert listed[sid2]["url"] is None and listed[sid2]["title"] is None
        assert [s["session_id"] for s in r.json()["sessions"]] == [sid2, sid1]  # newest first
        r = await a.http.get("/v1/sessions", params={"site": "blog", "limit": 5}, headers=auth())
        assert [s["session_id"] for s in r.json()["sessions"]] == [sid2]
        r = await a.http.get("/v1/sessions", params={"limit": 1}, headers=auth())
        assert [s["session_id"] for s in r.json()["sessions"]] == [sid2] and r.json()["count"] == 2
        # The crm key sees the blog's sessions only (COBROWSE_AGENT_SITES): the shop's session
        # is not listed, not found, not joinable and not ended by it.
        crm = auth(AGENT_KEY2)
        r = await a.http.get("/v1/sessions", headers=crm)
        assert [s["session_id"] for s in r.json()["sessions"]] == [sid2] and r.json()["count"] == 1
        assert (await a.http.get("/v1/sessions", params={"site": "shop"}, headers=crm)).json() == {
            "sessions": [],
            "count": 0,
        }
        assert_error(await a.http.get(f"/v1/sessions/{sid1}", headers=crm), 404, "unknown_session")
        assert_error(await a.lookup(s1["short_code"], AGENT_KEY2), 404, "unknown_code")
        assert_error(await a.http.delete(f"/v1/sessions/{sid1}", headers=crm), 404)
        assert (await a.http.get(f"/v1/sessions/{sid1}", headers=auth())).json()["ended"] is False
        assert (await a.http.get(f"/v1/sessions/{sid2}", headers=crm)).status_code == 200
        assert (await a.lookup(s2["short_code"], AGENT_KEY2)).status_code == 200
        assert_error(await a.http.get("/v1/sessions"), 401, "bad_api_key")
        for key in ("wrong-key-0123456789", ADMIN_KEY, SITE_KEY):  # only agent keys list
            assert_error(await a.http.get("/v1/sessions", headers=auth(key)), 401, "bad_api_key")
        for bad in ({"limit": 0}, {"limit": 1001}, {"limit": "x"}, {"site": "s" * 257}):
            assert_error(await a.http.get("/v1/sessions", params=bad, headers=auth()), 422)

        r = await a.http.get(f"/v1/sessions/{sid1}", headers=auth())
        assert r.status_code == 200
        d = r.json()
        assert (d["session_id"], d["site"], d["ended"], d["epoch"]) == (sid1, "shop", False, 0)
        assert d["agents"] == {} and d["snapshot"] is False and d["code"] == s1["short_code"]
        assert d["code_expires_at"] == s1["code_expires_at"]
        assert_error(
            await a.http.get("/v1/sessions/nosuchsession0", headers=auth()), 404, "unknown_session"
        )

        # events stored for both sessions; a gateway listens on the control subject
        js = a.bridge.js
        for sid in (sid1, sid2):
            await a.bridge.call(
                js.publish, streams.subject_v(sid), encode_batch(1, [Event(1, "mutation", 0, {})])
            )
            await a.bridge.call(
                js.publish,
                streams.subject_a(sid, "a0123456789ab"),
                encode_batch(0, [Event(1, "pointer", 0, {})], "a0123456789ab"),
            )
        stream = a.cfg.stream.stream
        assert await has_events(a.bridge, stream, streams.subject_v(sid1))
        ctl: list[bytes] = []
        sub = await a.bridge.subscribe(streams.subject_ctl(sid1), lambda s, d: ctl.append(d))

        r = await a.http.delete(f"/v1/sessions/{sid1}", headers=auth())
        assert r.status_code == 200 and r.json() == {"session_id": sid1, "ended": True}
        with trio.fail_after(5):
            while not ctl:
                await trio.sleep(0.01)
        assert json.loads(ctl[0]) == {"op": "end"}
        await a.bridge.unsubscribe(sub)

        d = (await a.http.get(f"/v1/sessions/{sid1}", headers=auth())).json()
        assert d["ended"] is True and d["code_expires_at"] is None
        listed = [
            s["session_id"]
            for s in (await a.http.get("/v1/sessions", headers=auth())).json()["sessions"]
        ]
        assert listed == [sid2]
        assert_error(await a.lookup(s1["short_code"]), 404, "unknown_code")
        assert await a.bridge.call(sessions._get, a.kv_codes, s1["short_code"]) is None
        assert not await has_events(a.bridge, stream, streams.subject_v(sid1))
        assert not await has_events(a.bridge, stream, streams.subject_a(sid1, "a0123456789ab"))
        # the other session is untouched
        assert await has_events(a.bridge, stream, streams.subject_v(sid2))
        assert (await a.lookup(s2["short_code"])).status_code == 200

        again = await a.http.delete(f"/v1/sessions/{sid1}", headers=auth())
        assert again.status_code == 200  # idempotent
        assert_error(
            await a.http.delete("/v1/sessions/nosuchsession0", headers=auth()),
            404,
            "unknown_session",
        )
        assert_error(await a.http.delete(f"/v1/sessions/{sid2}"), 401, "bad_api_key")


async def ended_record(a: Api, sid: str) -> session_store.EndedRecord | None:
    from nats.js.errors import BucketNotFoundError

    try:
        kv = await a.bridge.call(a.bridge.js.key_value, session_store.ENDED_BUCKET)
    except BucketNotFoundError:  # made at the first end
        return None
    return await a.bridge.call(session_store.load_ended, kv, sid)


async def test_a_session_token_ends_its_own_session(nats_server):
    """The visitor's join token (what `Cobrowse.end()` sends) and an agent's join token end
    their own session, even once expired; another session's token, a resume token or a
    forged one is refused. The end writes an ended record whose bucket outlives every join
    token, and the code stops resolving."""
    async with serving(nats_server.url) as a:
        s1, s2, s3 = await a.create(), await a.create(), await a.create()
        sid1, sid2, sid3 = s1["session_id"], s2["session_id"], s3["session_id"]
        agent2 = (await a.lookup(s2["short_code"])).json()["agent_token"]
        now = time.time()
        refused = [
            s2["visitor_token"],  # another session's visitor token
            agent2,  # another session's agent token
            tokens.mint(KEYRING, sid=sid1, role="resume", now=now, ttl=60, r="visitor"),
            tokens.mint(
                tokens.Keyring.parse("k9:" + "z" * 32), sid=sid1, role="visitor", now=now, ttl=60
            ),  # fmt: skip
        ]
        for tok in refused:
            r = await a.http.delete(f"/v1/sessions/{sid1}", headers=auth(tok))
            assert_error(r, 401, "bad_token")
        assert (await a.http.get(f"/v1/sessions/{sid1}", headers=auth())).json()["ended"] is False
        assert await ended_record(a, sid1) is None

        r = await a.http.delete(f"/v1/sessions/{sid1}", headers=auth(s1["visitor_token"]))
        assert r.status_code == 200 and r.json() == {"session_id": sid1, "ended": True}
        assert (await a.http.get(f"/v1/sessions/{sid1}", headers=auth())).json()["ended"] is True
        assert await ended_record(a, sid1) is not None
        assert_error(await a.lookup(s1["short_code"]), 404, "unknown_code")
        assert (await a.lookup(s3["short_code"])).status_code == 200  # others untouched

        r = await a.http.delete(f"/v1/sessions/{sid2}", headers=auth(agent2))
        assert r.status_code == 200 and await ended_record(a, sid2) is not None
        assert_error(await a.lookup(s2["short_code"]), 404, "unknown_code")

        # An expired visitor token still ends its session: the session outlives it.
        old = tokens.mint(KEYRING, sid=sid3, role="visitor", now=now - 7200, ttl=3600)
        r = await a.http.delete(f"/v1/sessions/{sid3}", headers=auth(old))
        assert r.status_code == 200 and await ended_record(a, sid3) is not None

        info = await a.bridge.call(a.bridge.js.stream_info, f"KV_{session_store.ENDED_BUCKET}")
        assert info.config.max_age >= a.cfg.token_ttl + session_store.ENDED_SKEW


async def test_ending_after_the_metadata_expired(nats_server):
    """A session whose metadata entry has expired is still ended by its token (its resume
    tokens may live on), and stays ended for the agent key: the ended record answers."""
    async with serving(nats_server.url) as a:
        made = await a.create()
        sid = made["session_id"]
        await a.bridge.call(a.kv_sessions.purge, sid)  # what the bucket's TTL does
        assert_error(await a.http.delete(f"/v1/sessions/{sid}", headers=auth()), 404)
        r = await a.http.delete(f"/v1/sessions/{sid}", headers=auth(made["visitor_token"]))
        assert r.status_code == 200 and await ended_record(a, sid) is not None
        assert await a.bridge.call(session_store.load, a.kv_sessions, sid) is None
        assert (await a.http.delete(f"/v1/sessions/{sid}", headers=auth())).status_code == 200
        # Inspecting it says ended, not "no such session".
        assert_error(await a.http.get(f"/v1/sessions/{sid}", headers=auth()), 410, "session_ended")
        never = "never-ended-session-1"
        assert_error(await a.http.get(f"/v1/sessions/{never}", headers=auth()), 404)


async def test_bad_input_is_always_a_json_4xx(nats_server):
    async with serving(nats_server.url) as a:
        h = a.http
        json_h = {"Content-Type": "application/json"}
        cases: list[tuple[str, str, dict]] = [
            ("POST", "/v1/sessions", {}),
            ("POST", "/v1/sessions", {"json": {}}),
            ("POST", "/v1/sessions", {"json": {"site_key": 5}}),
            ("POST", "/v1/sessions", {"json": {"site_key": None}}),
            ("POST", "/v1/sessions", {"json": {"site_key": ""}}),
            ("POST", "/v1/sessions", {"json": {"site_key": ["a"]}}),
            ("POST", "/v1/sessions", {"json": {"site_key": "x" * 300}}),
            ("POST", "/v1/sessions", {"json": {"site_key": "x" * 100_000}}),
            ("POST", "/v1/sessions", {"json": [SITE_KEY]}),
            ("POST", "/v1/sessions", {"json": "site"}),
            ("POST", "/v1/sessions", {"content": b"not json", "headers": json_h}),
            ("POST", "/v1/sessions", {"content": b"\xff\xfe\x00", "headers": json_h}),
            (
                "POST",
                "/v1/sessions",
                {"content": b'{"site_key": "' + b"a" * 20 + b'"', "headers": json_h},
            ),
            (
                "POST",
                "/v1/sessions",
                {
                    "content": b"site_key=x",
                    "headers": {"Content-Type": "application/x-www-form-urlencoded"},
                },
            ),
            (
                "POST",
                "/v1/sessions",
                {"content": chunks(b"x" * 1000, 100)},
            ),  # chunked, too big
            ("POST", "/v1/sessions/lookup", {"json": {"code": 123456}, "headers": auth()}),
            ("POST", "/v1/sessions/lookup", {"json": {"code": None}, "headers": auth()}),
            ("POST", "/v1/sessions/lookup", {"json": {"code": "1" * 40}, "headers": auth()}),
            ("POST", "/v1/sessions/lookup", {"json": {"code": {"$gt": ""}}, "headers": auth()}),
            ("POST", "/v1/sessions/lookup", {"json": {}, "headers": auth()}),
            ("POST", "/v1/sessions/lookup", {"content": b"[", "headers": {**auth(), **json_h}}),
            ("GET", "/v1/sessions", {"params": {"limit": "0"}, "headers": auth()}),
            ("GET", "/v1/sessions", {"params": {"limit": "many"}, "headers": auth()}),
            ("GET", "/v1/sessions", {"params": {"site": "s" * 300}, "headers": auth()}),
            ("GET", "/v1/sessions/a.b.c.d.e.f.g", {"headers": auth()}),
            ("GET", "/v1/sessions/%2A%3E%3E%3E%3E%3E%3E%3E", {"headers": auth()}),
            ("GET", "/v1/sessions/%00%00%00%00%00%00%00%00", {"headers": auth()}),
            ("GET", "/v1/sessions/short", {"headers": auth()}),
            ("GET", "/v1/sessions/" + "x" * 300, {"headers": auth()}),
            ("GET", "/v1/sessions/" + "y" * 65, {"headers": auth()}),
            (
                "GET",
                "/v1/sessions/%E2%98%83%E2%98%83%E2%98%83%E2%98%83%E2%98%83%E2%98%83",
                {"headers": auth()},
            ),
            ("DELETE", "/v1/sessions/a.b.c.d.e.f.g", {"headers": auth()}),
            ("DELETE", "/v1/sessions/" + "x" * 300, {"headers": auth()}),
            ("DELETE", "/v1/sessions/%20%20%20%20%20%20%20%20", {"headers": auth()}),
            ("POST", "/v1/cluster/gateways/gw.%2A/drain", {"headers": auth(ADMIN_KEY)}),
            ("POST", "/v1/cluster/gateways/" + "g" * 300 + "/drain", {"headers": auth(ADMIN_KEY)}),
            ("GET", "/v1/nothing-here", {}),
            ("PUT", "/v1/sessions", {"json": {}}),
            ("PATCH", "/v1/cluster", {}),
            ("GET", "/v1/sessions/lookup", {"headers": auth()}),
        ]
        for method, path, kw in cases:
            r = await h.request(method, path, **kw)
            err = assert_error(r)
            if err["code"] == "invalid_request" and r.status_code == 422:
                assert err["fields"], (path, kw, r.text)
                assert len(r.text) < 10_000  # the input is not echoed back
        r = await h.post("/v1/sessions", json={"site_key": "x" * 100_000})
        assert_error(r, 413, "body_too_large")
        r = await h.post("/v1/sessions", json={"site_key": 5})
        err = assert_error(r, 422, "invalid_request")
        assert err["fields"][0]["loc"] == "body.site_key"
        r = await h.post("/v1/sessions", content=b"\xff\xfe\x00", headers=json_h)
        assert_error(r, 400, "invalid_request")
        r = await h.get("/v1/sessions/" + "x" * 300, headers=auth())
        assert_error(r, 404, "unknown_session")
        assert_error(await h.get("/v1/nothing-here"), 404, "not_found")
        r = await h.put("/v1/sessions", json={})
        assert_error(r, 405, "method_not_allowed")
        assert r.headers["allow"] == "GET, POST"  # both routes of the path, not the first
        # the server is fine afterwards
        assert (await h.get("/healthz")).status_code == 200
        await a.create()


async def test_cluster_and_drain_endpoints(nats_server):
    async with serving(nats_server.url) as a:
        for key in (AGENT_KEY, ADMIN_KEY):
            r = await a.http.get("/v1/cluster", headers=auth(key))
            assert r.status_code == 200
            gws = r.json()["gateways"]
            assert [g["id"] for g in gws] == ["gw-a", "gw-b", "gw-c", "gw-d"]
            assert gws[2] == {
                "id": "gw-c",
                "url": "ws://10.0.0.3:8765/",
                "admin_url": "http://10.0.0.3:9000/",
                "state": "active",
                "connections": 0,
                "load": 0.0,
                "updated": gws[2]["updated"],
            }
            assert gws[3]["state"] == "draining" and gws[0]["connections"] == 3
            assert abs(gws[0]["updated"] - time.time()) < 30
        assert_error(await a.http.get("/v1/cluster"), 401, "bad_api_key")
        assert_error(await a.http.get("/v1/cluster", headers=auth(SITE_KEY)), 401, "bad_api_key")

        path = "/v1/cluster/gateways/gw-a/drain"
        assert_error(await a.http.post(path, headers=auth(AGENT_KEY)), 403, "admin_only")
        assert_error(await a.http.post(path), 401, "bad_api_key")
        r = await a.http.post(path, headers=auth(ADMIN_KEY))
        assert_error(r, 404, "unknown_gateway")
        assert "no gateway gw-a answered" in r.json()["error"]["message"]

        async with fake_gateway(a.bridge, "gw-a", connections=7):
            r = await a.http.post(path, headers=auth(ADMIN_KEY))
        assert r.status_code == 200, r.text
        assert r.json() == {
            "ok": True,
            "gateway": "gw-a",
            "state": "draining",
            "connections": 7,
            "workers": [{"gateway": "gw-a", "state": "draining", "connections": 7}],
        }


@asynccontextmanager
async def fake_gateway(bridge, gid: str, connections: int):
    """Answers drain requests the way a gateway does."""

    async def on_drain(msg):
        reply = {"ok": True, "gateway": gid, "state": "draining", "connections": connections}
        await msg.respond(json.dumps(reply).encode())

    subject = membership.DRAIN_SUBJECT.format(gateway_id=gid)
    sub = await bridge.call(bridge.nc.subscribe, subject, cb=on_drain)
    await bridge.call(bridge.nc.flush)
    try:
        yield
    finally:
        await bridge.unsubscribe(sub)


async def test_health_and_openapi(nats_server):
    metrics_port = natsproc.free_port()
    async with serving(nats_server.url, api_metrics_port=str(metrics_port)) as a:
        r = await a.http.get("/healthz")
        assert r.status_code == 200 and r.json() == {"status": "ok", "nats": "connected"}
        assert (await a.http.get("/readyz")).status_code == 200
        # With a metrics port (production), /metrics is there and not on the public port.
        assert_error(await a.http.get("/metrics"), 404, "not_found")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{metrics_port}") as m:
            page = (await m.get("/metrics")).text
            assert (await m.get("/readyz")).status_code == 200
            assert (await m.post("/admin/drain")).status_code == 405  # no drain: GETs only
        assert sample(page, "cobrowse_router_requests_total", route="/healthz", status="200")
        r = await a.http.get("/openapi.json")
        assert r.status_code == 200
        doc = r.json()
        assert doc["info"]["title"] == "cobrowse router API" and doc["info"]["version"]
        assert doc["info"]["description"]
        assert set(doc["paths"]) == {
            "/v1/sessions",
            "/v1/sessions/lookup",
            "/v1/sessions/{session_id}",
            "/v1/sessions/{session_id}/connect",
            "/v1/sessions/{session_id}/replay",
            "/v1/sessions/{session_id}/history",
            "/v1/cluster",
            "/v1/cluster/gateways/{gateway_id}/drain",
            "/healthz",
            "/readyz",
            "/cobrowse.js",
            "/embed",
            "/embed.js",
            "/replay",
            "/replay.js",
            "/console",
        }
        assert set(doc["paths"]["/v1/sessions"]) == {"get", "post"}
        assert set(doc["paths"]["/v1/sessions/{session_id}"]) == {"get", "delete"}
        assert doc["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
        lookup = doc["paths"]["/v1/sessions/lookup"]["post"]
        assert lookup["security"] == [{"ApiKey": []}]
        for status in ("401", "404", "422", "429"):
            assert status in lookup["responses"], status
        assert "ErrorBody" in doc["components"]["schemas"]
        end = doc["paths"]["/v1/sessions/{session_id}"]["delete"]
        assert "bad_token" in end["responses"]["401"]["description"]
        # The create's links name operations that exist (their ids are FastAPI's, made from
        # the route functions' names: a rename must not leave a link to nothing).
        ids = {op["operationId"] for ops in doc["paths"].values() for op in ops.values()}
        links = doc["paths"]["/v1/sessions"]["post"]["responses"]["201"]["links"]
        assert len(links) == 6 and {lk["operationId"] for lk in links.values()} <= ids
        # Every route that reads a JSON body documents what a bad one gets.
        with_body = [
            op for ops in doc["paths"].values() for op in ops.values() if "requestBody" in op
        ]
        assert len(with_body) == 2
        for op in with_body:
            assert {"400", "413", "422"} <= set(op["responses"]), op["summary"]
        # CORS: the snippet on the customer's page calls POST /v1/sessions from its origin
        r = await a.http.options(
            "/v1/sessions",
            headers={
                "Origin": "https://shop.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"


# ---- the commands -----------------------------------------------------------------------


def run_router(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "router", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


async def test_status_and_drain_commands(nats_server):
    url = nats_server.url
    async with open_bridge(url) as bridge:
        none = await trio.to_thread.run_sync(run_router, "status", "--nats", url)
        assert none.returncode == 0 and "no gateways" in none.stdout
        kv = await bridge.call(membership.ensure_bucket, bridge.js)
        await put_gateways(bridge, kv)
        st = await trio.to_thread.run_sync(run_router, "status", "--nats", url)
        assert st.returncode == 0, st.stderr
        lines = st.stdout.splitlines()
        assert lines[0].split() == ["ID", "STATE", "CONNECTIONS", "LOAD", "URL", "AGE"]
        assert [line.split()[0] for line in lines[1:]] == ["gw-a", "gw-b", "gw-c", "gw-d"]
        assert lines[4].split()[:4] == ["gw-d", "draining", "0", "0.00"]
        col = lines[0].index("URL")
        assert all(line[col:].startswith("ws://") for line in lines[1:])

        dr = await trio.to_thread.run_sync(run_router, "drain", "gw-nope", "--nats", url)
        assert dr.returncode == 1
        assert "no gateway gw-nope answered" in dr.stderr and "Traceback" not in dr.stderr
        async with fake_gateway(bridge, "gw-b", connections=2):
            dr = await trio.to_thread.run_sync(run_router, "drain", "gw-b", "--nats", url)
        assert dr.returncode == 0, dr.stderr
        assert "gw-b is draining (2 connections" in dr.stdout


def test_commands_fail_clearly_without_nats_or_keys():
    port = natsproc.free_port()
    t0 = time.monotonic()
    r = run_router("status", "--nats", f"nats://127.0.0.1:{port}")
    assert r.returncode == 1 and "cannot reach NATS" in r.stderr
    assert time.monotonic() - t0 < 30
    env = {k: v for k, v in os.environ.items() if not k.startswith("COBROWSE_")}
    env["COBROWSE_TOKEN_KEYS"] = KEYS
    r = run_router("serve", env=env)
    assert r.returncode == 2
    assert "COBROWSE_SITE_KEYS is not set" in r.stderr
    assert "COBROWSE_AGENT_KEYS is not set" in r.stderr
