"""What the agent's view says (router/static/viewer/status.js and the /embed page).

The pure state logic runs on a table in Chromium with made-up clocks (no timers, no
network): each row feeds connection states, the gateway's `visitor` control messages and
visitor events at given times, and reads the displayed state and when it would next change.
Then the real embed page, with a fake router and gateway (tests/browser/test_browser_viewer.py's
FakeCluster), shows those states: status text, data-state, messages to the parent window,
a message in the frame area instead of an empty box, and once ended a greyed, inert
replica with the Highlight button off and disabled.
"""

from __future__ import annotations

import pytest

from router import browser_assets
from tests.browser.test_browser_viewer import APP, EMBED_DOC, ROUTER, FakeCluster, page_doc, poll
from tests.support.browser import bundle_page

S = 1000  # ms

# (name, steps, checks): a step is [t, "conn", state] | [t, "ctl", ctl] | [t, "ev"] | [t, "fail"];
# a check is [t, displayed state, ms until it changes by time alone or None].
LIVE = [0, "conn", "live"]
VISITOR = {"op": "visitor"}
TABLE = [
    ("before the welcome", [], [[0, "connecting", None]]),
    ("welcome, no presence yet", [LIVE], [[0, "waiting", None], [600 * S, "waiting", None]]),
    ("events are no presence", [LIVE, [5 * S, "ev"]], [[90 * S, "waiting", None]]),
    (
        "visitor live, then idle",
        [LIVE, [0, "ctl", {**VISITOR, "msg": "live"}]],
        [[0, "live", 60 * S], [60 * S - 1, "live", 1], [60 * S, "visitor-idle", None]],
    ),
    (
        "an event clears idle",
        [LIVE, [0, "ctl", {**VISITOR, "msg": "live"}], [50 * S, "ev"], [200 * S, "ev"]],
        [[100 * S, "live", 10 * S], [200 * S, "live", 60 * S], [260 * S, "visitor-idle", None]],
    ),
    (
        "away, then gone after 30 s",
        [LIVE, [0, "ctl", {**VISITOR, "msg": "live"}], [S, "ctl", {**VISITOR, "msg": "away"}]],
        [
            [S, "visitor-away", 30 * S],
            [31 * S - 1, "visitor-away", 1],
            [31 * S, "visitor-gone", None],
        ],
    ),
    (
        "away, back live",
        [
            LIVE,
            [S, "ctl", {**VISITOR, "msg": "away"}],
            [10 * S, "ctl", {**VISITOR, "msg": "live"}],
        ],
        [[40 * S, "live", 30 * S]],
    ),
    (
        "away: replayed events do not bring the visitor back",
        [LIVE, [0, "ctl", {**VISITOR, "msg": "away"}], [20 * S, "ev"]],
        [[29 * S, "visitor-away", S], [30 * S, "visitor-gone", None]],
    ),
    (
        "gone, then live",
        [
            LIVE,
            [0, "ctl", {**VISITOR, "msg": "away"}],
            [100 * S, "ctl", {**VISITOR, "msg": "live"}],
        ],
        [[99 * S, "visitor-gone", None], [100 * S, "live", 60 * S]],
    ),
    (
        "left has no timer",
        [LIVE, [0, "ctl", {**VISITOR, "msg": "left"}]],
        [[0, "visitor-left", None], [3600 * S, "visitor-left", None]],
    ),
    (
        "away then left",
        [LIVE, [0, "ctl", {**VISITOR, "msg": "away"}], [S, "ctl", {**VISITOR, "msg": "left"}]],
        [[60 * S, "visitor-left", None]],
    ),
    (
        "the agent's own reconnect starts from waiting",
        [
            LIVE,
            [0, "ctl", {**VISITOR, "msg": "live"}],
            [S, "conn", "reconnecting"],
            [3 * S, "conn", "live"],
        ],
        [[2 * S, "reconnecting", None], [3 * S, "waiting", None]],
    ),
    (
        "live again after the reconnect",
        [
            LIVE,
            [0, "ctl", {**VISITOR, "msg": "left"}],
            [S, "conn", "reconnecting"],
            [3 * S, "conn", "live"],
            [3 * S, "ctl", {**VISITOR, "msg": "live"}],
        ],
        [[4 * S, "live", 59 * S]],
    ),
    (
        "ended wins over presence",
        [LIVE, [0, "ctl", {**VISITOR, "msg": "away"}], [S, "conn", "ended"]],
        [[S, "ended", None], [100 * S, "ended", None]],
    ),
    (
        "an error wins over everything",
        [LIVE, [0, "ctl", {**VISITOR, "msg": "live"}], [S, "fail"]],
        [[S, "error", None]],
    ),
    (
        "other control messages are not presence",
        [
            LIVE,
            [0, "ctl", {**VISITOR, "msg": "live"}],
            [S, "ctl", {"op": "reset", "msg": "left"}],
            [S, "ctl", {**VISITOR, "msg": "gone"}],
            [S, "ctl", {"op": "joined", "msg": "a1"}],
            [S, "ctl", None],
        ],
        [[2 * S, "live", 58 * S]],
    ),
]

RUN_TABLE_JS = """
(table) => table.map(([name, steps, checks]) => {
  const v = new ViewStatus(0);
  const out = [];
  const feed = (upTo) => {
    while (steps.length && steps[0][0] <= upTo) {
      const [t, what, arg] = steps.shift();
      if (what === "conn") v.connection(arg, t);
      else if (what === "ctl") v.control(arg, t);
      else if (what === "ev") v.activity(t);
      else v.fail();
    }
  };
  for (const [t] of checks) {
    feed(t);
    out.push([t, v.state(t), v.nextChange(t)]);
  }
  return out;
})
"""

HOOK = "window.ViewStatus = ViewStatus; window.VIEW_LABELS = VIEW_LABELS;"


@pytest.fixture(scope="module")
def table_results(chromium, pages_server):
    bundle = browser_assets.assemble("embed.js", extra=HOOK)
    with bundle_page(chromium, pages_server, bundle) as page:
        rows = [[name, steps, checks] for name, steps, checks in TABLE]
        yield page.evaluate(RUN_TABLE_JS, rows), page.evaluate("VIEW_LABELS")


@pytest.mark.parametrize(("name", "steps", "checks"), TABLE, ids=[row[0] for row in TABLE])
def test_view_state_table(table_results, name, steps, checks):
    got = table_results[0][[row[0] for row in TABLE].index(name)]
    assert got == checks


def test_view_labels(table_results):
    labels = table_results[1]
    assert labels["waiting"] == "Waiting for the visitor"
    assert labels["visitor-away"] == "Visitor reconnecting…"
    assert labels["visitor-gone"] == "Visitor gone"
    assert labels["visitor-left"] == "Visitor left"
    assert labels["visitor-idle"] == "Visitor idle"
    assert labels["ended"] == "Session ended"


STATUS = "document.getElementById('cb-status')"
MESSAGE = "document.getElementById('cb-message')"


def shown(embed) -> dict:
    return embed.evaluate(
        f"({{state: {STATUS}.dataset.state, text: {STATUS}.textContent, message: {MESSAGE}.hidden ? null : {MESSAGE}.textContent, view: CobrowseViewer.current.view, conn: CobrowseViewer.current.state}})"
    )


def open_embed(context, fake):
    page = context.new_page()
    page.goto(APP + "/host?sid=s1&token=" + fake.token)
    embed = next(f for f in page.frames if f.url.startswith(ROUTER + "/embed"))
    return page, embed


def test_embed_shows_the_visitors_presence(context, pages_server):
    fake = FakeCluster(context, None, presence=None)
    page, embed = open_embed(context, fake)
    poll(embed, f"{STATUS}.dataset.state === 'waiting'")
    # Welcomed, no word from the gateway about the visitor yet, no replica: the frame area
    # says so rather than staying an empty box.
    assert shown(embed) == {
        "state": "waiting",
        "text": "Waiting for the visitor",
        "message": "Waiting for the visitor",
        "view": "waiting",
        "conn": "live",
    }
    fake.control("live")
    poll(embed, f'{MESSAGE}.textContent === "Waiting for the visitor\'s page…"')
    fake.visitor_events(1, [("snapshot", page_doc([{"id": 4, "x": "Hi"}]))])
    poll(embed, f"{MESSAGE}.hidden && {EMBED_DOC}.body.textContent === 'Hi'")
    for msg, state, text in (
        ("away", "visitor-away", "Visitor reconnecting…"),
        ("live", "live", "Live"),
        ("left", "visitor-left", "Visitor left"),
    ):
        fake.control(msg)
        poll(embed, f"{STATUS}.dataset.state === '{state}'")
        assert embed.evaluate(f"{STATUS}.textContent") == text
    assert embed.evaluate(f"{MESSAGE}.hidden")
    events = poll(
        page, "() => msgs.some((m) => m.event === 'visitor-left') && msgs.map((m) => m.event)"
    )
    visitor = [
        e for e in events if e in ("waiting", "visitor-live", "visitor-away", "visitor-left")
    ]
    assert visitor == ["waiting", "visitor-live", "visitor-away", "visitor-live", "visitor-left"]
    assert "live" in events  # the connection's own message, as before


def test_ended_greys_the_replica_and_makes_it_inert(context, pages_server):
    fake = FakeCluster(
        context, page_doc([{"id": 4, "tag": "h1", "a": {}, "c": [{"id": 5, "x": "Hi"}]}])
    )
    page, embed = open_embed(context, fake)
    poll(embed, f"{STATUS}.dataset.state === 'live' && {EMBED_DOC}.body.textContent === 'Hi'")
    embed.evaluate("document.getElementById('cb-highlight').click()")
    assert embed.evaluate("CobrowseViewer.current.replayer.highlightMode()") is True
    # Over the replica, the agent's pointer lands on the viewer's glass (it is live).
    center = "(() => { const r = document.getElementById('cb-frame').getBoundingClientRect(); return document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2); })()"
    assert embed.evaluate(f"{center}.parentElement.style.zIndex") == "1"
    fake.socket.close(code=4004, reason="ended")
    poll(embed, f"{STATUS}.dataset.state === 'ended'")
    got = embed.evaluate(
        """(() => {
      const f = document.getElementById('cb-frame');
      const b = document.getElementById('cb-highlight');
      const rp = CobrowseViewer.current.replayer;
      return {filter: f.style.filter, framePointer: getComputedStyle(f).pointerEvents,
        disabled: b.disabled, pressed: b.getAttribute('aria-pressed'), mode: rp.highlightMode(), inert: rp.inert(),
        tools: ['cb-draw', 'cb-control'].map((id) => document.getElementById(id).disabled),
        text: document.getElementById('cb-status').textContent, message: document.getElementById('cb-message').textContent};
    })()"""
    )
    assert got == {
        "filter": "grayscale(1)",
        "framePointer": "none",
        "disabled": True,
        "pressed": "false",
        "mode": False,
        "inert": True,
        "tools": [True, True],  # Draw and Request control too
        "text": "Session ended",
        "message": "The session has ended.",
    }
    # Nothing under the pointer belongs to the replica or its glass any more.
    assert embed.evaluate(
        f"(() => {{ const e = {center}; return e.id === 'cb-message' || e.id === 'cb-stage'; }})()"
    )
    n = len(fake.agent_events)
    box = page.locator("#embed").bounding_box()
    page.mouse.click(box["x"] + 300, box["y"] + 300)
    assert (
        embed.evaluate(
            "document.getElementById('cb-highlight').click(), CobrowseViewer.current.replayer.highlightMode()"
        )
        is False
    )
    assert len(fake.agent_events) == n
    poll(page, "() => msgs.some((m) => m.event === 'ended')")
