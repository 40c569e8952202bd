"""An agent's random events never break the visitor's page, run anything in it, or touch
what is private (G4).

The visitor's page is the customer's site: an agent's events (its pointer, highlights,
strokes, controls and, with the visitor's grant, remote control) act on it through the
snippet. This sends seeded random ones straight into the snippet's wire (as the gateway
would deliver them) on a page whose visitor has granted control: every agent kind and some
that are not, from the holder of the grant and from others, with ids of the page's fields
(private ones too) and of nothing, and payloads of random shape and type. Afterwards no
error escaped into the page, nothing ran, the page did not navigate, every private field
still holds its value, and the snippet is still live.

`COBROWSE_FUZZ_SEED` and `COBROWSE_FUZZ_EVENTS` repeat a run or make a longer hunt.
"""

from __future__ import annotations

import math
import os
import random
from typing import Any

from tests.browser.test_browser_visitor import HOLDER, granted_page

SEED = int(os.environ.get("COBROWSE_FUZZ_SEED", "20261203"))
EVENTS = int(os.environ.get("COBROWSE_FUZZ_EVENTS", "1500"))
CHUNK = 50
HOSTILE = "window.__pwned = (window.__pwned || 0) + 1"

PAGE = """
<input id="name" value="n0"><textarea id="msg">m0</textarea>
<select id="size"><option value="s">S</option><option value="m">M</option>
  <option value="x" disabled>X</option></select>
<div id="chat" contenteditable="true"><p id="line">c0 <b id="bold">b</b></p></div>
<button id="btn" type="button">b</button><input type="checkbox" id="box">
<div id="scroller" style="height: 50px; overflow: auto"><div style="height: 500px"></div></div>
<input type="password" id="secretpw" value="hunter2">
<input id="card" data-cobrowse-private value="4111111111111111">
<div id="note" contenteditable data-cobrowse-private>secret note</div>
<textarea id="ptext" data-cobrowse-private>private text</textarea>
<select id="psel" data-cobrowse-private><option value="a">a</option>
  <option value="b" selected>b</option></select>
"""
PUBLIC = ["name", "msg", "size", "chat", "line", "bold", "btn", "box", "scroller"]
PRIVATE = {"secretpw": "hunter2", "card": "4111111111111111", "ptext": "private text", "psel": "b"}
KINDS = [
    "pointer", "highlight", "click", "control", "custom", "draw", "rc-request", "rc-click",
    "rc-scroll", "rc-text", "rc-key", "rc-refused", "rc-grant", "mutation", "nope",
]  # fmt: skip
KEYS = ["Enter", "Escape", "Tab", "ArrowDown", "a", " ", "", "F5", "Backspace"]


def junk(r: random.Random, depth: int = 0) -> Any:
    pick = r.randrange(9 if depth < 2 else 6)
    if pick == 0:
        return None
    if pick == 1:
        return r.random() < 0.5
    if pick == 2:
        return r.choice([0, -1, 1e9, 2**53, math.inf, -math.inf, math.nan, 0.5, -20])
    if pick == 3:
        return r.choice(["", "x" * r.choice([1, 10_001]), HOSTILE, "<img src=x onerror=1>",
                         "javascript:" + HOSTILE, "css-need", "snapshot", "reset"])  # fmt: skip
    if pick == 4:
        return r.choice(KEYS + PUBLIC)
    if pick == 5:
        return r.randrange(-5, 2000)
    if pick in (6, 7):
        return [junk(r, depth + 1) for _ in range(r.randrange(5))]
    return {r.choice(["id", "x", "y", "value", "key", "op"]): junk(r, depth + 1)}


def event(r: random.Random, ids: dict[str, int]) -> dict:
    kind = r.choice(KINDS)
    src = r.choice([HOLDER] * 6 + ["a0000000000c3", None, 7, ""])
    if r.random() < 0.1:
        return {"kind": kind, "src": src, "payload": junk(r)}
    target = r.random()
    if target < 0.35:
        nid = ids[r.choice(sorted(PRIVATE))]
    elif target < 0.85:
        nid = ids[r.choice(PUBLIC)]
    else:
        nid = junk(r, 2)
    fields = {
        "id": nid,
        "value": r.choice(["pwned", "m", "x", "", "b"]) if r.random() < 0.7 else junk(r, 2),
        "done": junk(r, 2),
        "key": r.choice(KEYS) if r.random() < 0.8 else junk(r, 2),
        "x": r.uniform(-10, 900) if r.random() < 0.8 else junk(r, 2),
        "y": r.uniform(-10, 700) if r.random() < 0.8 else junk(r, 2),
        "dx": junk(r, 2),
        "dy": r.uniform(-300, 300),
        "on": junk(r, 2),
        "op": r.choice(["css-need", "snapshot", "reset", "x"]),
        "node": nid,
        "pts": [[r.uniform(0, 800), r.uniform(0, 600)] for _ in range(r.randrange(4))],
    }
    # Mostly well formed where it matters, so that inputs get past the first checks and act.
    keep = {"id": 0.9, "value": 0.8, "key": 0.8}
    payload = {k: v for k, v in fields.items() if r.random() < keep.get(k, 0.4)}
    return {"kind": kind, "src": src, "payload": payload}


def test_random_agent_events_never_break_or_leak_the_visitors_page(context):
    page = granted_page(context, PAGE, [])
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    navigations: list[str] = []
    page.on("framenavigated", lambda f: navigations.append(f.url) if f == page.main_frame else None)
    url = page.url
    ids = page.evaluate("(names) => Object.fromEntries(names.map((k) => [k, __id(k)]))",
                        PUBLIC + sorted(PRIVATE) + ["note"])  # fmt: skip
    assert all(isinstance(v, int) for v in ids.values()), ids
    r = random.Random(SEED)
    for start in range(0, EVENTS, CHUNK):
        evs = [event(r, ids) for _ in range(min(CHUNK, EVENTS - start))]
        page.evaluate("(evs) => __wire.o.onEvents(evs)", evs)  # a throw fails the test here
    page.wait_for_timeout(300)  # let timers (strokes, highlights, key follow-ups) run
    assert errors == [], (f"seed {SEED}", errors[:5])
    assert page.evaluate("() => window.__pwned") is None, f"seed {SEED}"
    assert navigations == [] and page.url == url, (f"seed {SEED}", navigations)
    values = page.evaluate(
        "(names) => Object.fromEntries(names.map((k) => [k, document.getElementById(k).value]))",
        sorted(PRIVATE),
    )
    assert values == PRIVATE, f"seed {SEED}"
    assert page.evaluate("() => document.getElementById('note').textContent") == "secret note"
    assert page.evaluate("() => Cobrowse.state()") == "live", f"seed {SEED}"
    # The fuzz reached past the first checks: the holder's inputs acted (34 of 1,500 at the
    # default seed) and changed public fields.
    assert page.evaluate("() => Cobrowse._controlState().done") >= 10
    changed = page.evaluate(
        "() => [document.getElementById('name').value, document.getElementById('chat').textContent]"
    )
    assert changed != ["n0", "c0 b"], changed
