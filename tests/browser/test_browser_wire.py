"""The browser's wire client (router/static/wire.js) in real Chromium against real gateways.

The wire client is what keeps G1-G3 in the browser: every event once and in order across a
drain, a refused handshake and a page reload. These tests drive it directly (the snippet and
the viewer sit on top of it), exposing the class on a blank page.
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from router import browser_assets
from tests.support.browser import STATIC
from tests.support.keys import ADMIN_KEY, mint, new_sid

pytestmark = pytest.mark.timeout(120)


def wire_script() -> str:
    return browser_assets._wrap(
        [
            ("wire.js", (STATIC / "wire.js").read_text()),
            ("expose", "window.CobrowseWire = CobrowseWire; window.MessagePack = MessagePack;"),
        ]
    )


HARNESS = """
window.logs = {};
window.makeWire = (name, opts) => {
  const log = window.logs[name] = {events: [], states: [], ctl: [], epochs: [], persisted: null};
  const w = new CobrowseWire(Object.assign({
    onEvents: (evs) => { for (const e of evs) log.events.push([e.epoch, e.seq, e.kind, e.payload, e.src]); },
    onControl: (c) => log.ctl.push(c.op),
    onEpoch: (e, fresh) => log.epochs.push([e, fresh]),
    onState: (s, d) => log.states.push([s, d.code || null, Date.now()]),
    onPersist: (st) => { log.persisted = st; },
  }, opts));
  window[name] = w;
  w.start();
  return true;
};
"""


def open_page(context, pages_server):
    # A page on loopback: Chromium refuses a public or opaque origin's connections to
    # loopback (Local Network Access), which is right for real sites and gateways.
    page = context.new_page()
    page.goto(pages_server.url + "/pages/wire_blank.html")
    page.add_script_tag(content=wire_script())
    page.evaluate(HARNESS)
    return page


def wait_for(page, expr: str, timeout: float = 20.0):
    page.wait_for_function(expr, timeout=timeout * 1000)


def make(page, name: str, role: str, sid: str, gateways: list[str], **extra) -> None:
    opts = {"role": role, "sid": sid, "token": mint(sid, role), "gateways": gateways, **extra}
    page.evaluate("([n, o]) => makeWire(n, o)", [name, opts])


def agent_keys(page, name: str = "agent") -> list[list]:
    return page.evaluate(f"logs.{name}.events.map(e => [e[0], e[1]])")


def test_events_flow_once_and_in_order_and_acks_empty_the_resend_buffer(
    context, pages_server, two_gateways
):
    url = two_gateways.url("gw-a")
    sid = new_sid()
    page = open_page(context, pages_server)
    make(page, "visitor", "visitor", sid, [url])
    page.evaluate("visitor.sendSnapshot(JSON.stringify({big: 'x'.repeat(300000)}))")
    page.evaluate("for (let i = 0; i < 600; i++) visitor.send('pointer', {x: i, y: i})")
    wait_for(page, "visitor.unacked.length === 0 && visitor.pending.length === 0 && visitor.live")
    make(page, "agent", "agent", sid, [url])
    wait_for(page, "logs.agent.events.length >= 603")
    events = page.evaluate("logs.agent.events")
    kinds = [e[2] for e in events]
    assert kinds[:3] == ["snapshot"] * 3  # 300 KB of JSON arrives as three parts
    parts = [
        bytes(e[3]["d"].values()) if isinstance(e[3]["d"], dict) else e[3]["d"] for e in events[:3]
    ]
    assert [e[3]["i"] for e in events[:3]] == [0, 1, 2]
    assert sum(len(p) for p in parts) == len(
        json.dumps({"big": "x" * 300000}, separators=(",", ":"))
    )
    assert [e[1] for e in events] == list(range(1, 604))
    assert [e[3]["x"] for e in events[3:]] == list(range(600))
    # the agent's events reach the visitor, tagged with the agent's id
    page.evaluate("agent.send('pointer', {x: 5, y: 6}); agent.send('highlight', {id: 3, on: true})")
    wait_for(page, "logs.visitor.events.length === 2")
    got = page.evaluate("logs.visitor.events")
    aid = page.evaluate("agent.aid")
    assert [(e[2], e[4]) for e in got] == [("pointer", aid), ("highlight", aid)]
    assert "joined" in page.evaluate("logs.visitor.ctl")


def test_a_drain_moves_both_roles_without_loss_duplicates_or_reordering(
    context, pages_server, nats_server, gateways_factory
):
    two_gateways = gateways_factory(nats_server.url)
    a = two_gateways.start("gw-a", ["--drain-window", "2"])
    b = two_gateways.start("gw-b", ["--drain-window", "2"])
    sid = new_sid()
    page = open_page(context, pages_server)
    make(page, "visitor", "visitor", sid, [a, b])
    page.evaluate("visitor.sendSnapshot('{}')")
    wait_for(page, "visitor.live && visitor.unacked.length === 0")
    make(page, "agent", "agent", sid, [a, b])
    wait_for(page, "agent.live")
    # A steady stream from the visitor while gw-a drains (its window is 2 s in this test).
    page.evaluate(
        "window.n = 0; window.pump = setInterval(() => { for (let i = 0; i < 5; i++) "
        "visitor.send('pointer', {x: ++window.n}); }, 20)"
    )
    time.sleep(0.5)
    req = urllib.request.Request(
        f"http://127.0.0.1:{two_gateways.health['gw-a']}/admin/drain",
        method="POST",
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 202  # accepted: the drain runs over the drain window
    wait_for(page, "visitor.gw === 'gw-b' && agent.gw === 'gw-b'", timeout=30)
    time.sleep(0.5)
    page.evaluate("clearInterval(window.pump)")
    total = page.evaluate("window.n")
    wait_for(page, f"logs.agent.events.filter(e => e[2] === 'pointer').length >= {total}")
    time.sleep(0.3)
    xs = page.evaluate("logs.agent.events.filter(e => e[2] === 'pointer').map(e => e[3].x)")
    assert xs == list(range(1, total + 1)), "lost, duplicated or reordered across the drain"
    keys = agent_keys(page)
    assert keys == sorted(keys) and len({tuple(k) for k in keys}) == len(keys)
    # both went through the protocol's resume, not a new epoch
    assert page.evaluate("logs.visitor.epochs.every(e => e[1] === false)")
    assert page.evaluate("visitor.stats.dropped") == 0


def test_a_refused_browser_waits_for_retry_after(
    context, pages_server, nats_server, gateways_factory
):
    g = gateways_factory(nats_server.url)
    url = g.start("gw-r", ["--new-rate", "1", "--new-burst", "1"])
    page = open_page(context, pages_server)
    make(page, "first", "visitor", new_sid(), [url])
    wait_for(page, "first.live")
    make(page, "second", "visitor", new_sid(), [url])
    wait_for(page, "second.live", timeout=20)
    states = page.evaluate("logs.second.states")
    refused = [s for s in states if s[0] == "reconnecting"]
    assert refused and refused[0][1] == 4009
    live_at = next(s[2] for s in states if s[0] == "live")
    assert live_at - refused[0][2] >= 900  # never sooner than Retry-After (1 s)


def test_state_saved_on_one_page_resumes_on_the_next(context, pages_server, two_gateways):
    url = two_gateways.url("gw-a")
    sid = new_sid()
    token = mint(sid, "visitor")
    page = open_page(context, pages_server)
    page.evaluate(
        "([sid, token, url]) => makeWire('visitor', {role: 'visitor', sid, token, gateways: [url]})",
        [sid, token, url],
    )
    page.evaluate(
        "visitor.sendSnapshot('{}'); for (let i = 1; i <= 50; i++) visitor.send('pointer', {x: i})"
    )
    wait_for(page, "visitor.live && visitor.unacked.length === 0")
    # Events queued but not yet sent when the page goes away travel in the saved state.
    page.evaluate(
        "visitor.live = false; for (let i = 51; i <= 60; i++) visitor.send('pointer', {x: i})"
    )
    state = page.evaluate("JSON.stringify(visitor.persistState())")
    epoch = page.evaluate("visitor.epoch")
    page.evaluate("visitor.ws.close(); visitor.stopped = true")
    page2 = open_page(context, pages_server)
    page2.evaluate(
        "([sid, token, url, st]) => makeWire('visitor', "
        "{role: 'visitor', sid, token, gateways: [url], state: JSON.parse(st)})",
        [sid, token, url, state],
    )
    wait_for(page2, "visitor.live && visitor.unacked.length === 0")
    assert page2.evaluate("visitor.epoch") == epoch
    assert page2.evaluate("logs.visitor.epochs") == [[epoch, False]]
    make(page2, "agent", "agent", sid, [url])
    wait_for(page2, "logs.agent.events.filter(e => e[2] === 'pointer').length >= 60")
    xs = page2.evaluate("logs.agent.events.filter(e => e[2] === 'pointer').map(e => e[3].x)")
    assert xs == list(range(1, 61))


def test_fatal_close_ends_without_retrying(context, pages_server, two_gateways):
    url = two_gateways.url("gw-a")
    sid = new_sid()
    page = open_page(context, pages_server)
    page.evaluate(
        "([sid, url]) => makeWire('bad', {role: 'visitor', sid, token: 'v1.nope.nope.nope', gateways: [url]})",
        [sid, url],
    )
    wait_for(page, "bad.state === 'ended'")
    assert page.evaluate("logs.bad.states.map(s => s[0])") == ["connecting", "ended"]
    assert page.evaluate("logs.bad.states[1][1]") == 4001
