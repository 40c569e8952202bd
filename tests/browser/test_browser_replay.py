"""`ReplayTimeline` (router/static/viewer/replay.js), the pure part of /replay: where a seek
starts and how far it applies, on a table run in Chromium (no DOM, no network). The page
itself, against a real cluster, is in test_browser_e2e.py."""

from __future__ import annotations

import pytest

from router import browser_assets
from tests.support.browser import bundle_page


def ev(ts: int, kind: str = "mutation", part: int | None = None) -> dict:
    payload = {"i": part, "n": 2, "d": ""} if part is not None else {}
    return {"kind": kind, "ts": ts, "payload": payload}


# A recording: snapshot (2 parts) at 1000, mutations, a new page's snapshot at 5000; the
# visitor's clock steps back once (4000 after 4500).
EVENTS = [
    ev(900, "nav"),
    ev(1000, "snapshot", 0),
    ev(1000, "snapshot", 1),
    ev(2000),
    ev(3000),
    ev(4500),
    ev(4000),
    ev(5000, "snapshot", 0),
    ev(5000, "snapshot", 1),
    ev(6000),
]

# (applied, t) -> {reset, from, to}
TABLE = [
    ((0, 0), {"reset": False, "from": 0, "to": 0}),  # before anything
    ((0, 1000), {"reset": True, "from": 1, "to": 3}),  # the first snapshot, whole
    ((3, 2500), {"reset": False, "from": 3, "to": 4}),  # forward: only what is new
    ((4, 4200), {"reset": False, "from": 4, "to": 5}),
    ((5, 4500), {"reset": False, "from": 5, "to": 7}),  # the step back is applied in order
    ((4, 5500), {"reset": True, "from": 7, "to": 9}),  # forward past a snapshot: start there
    ((9, 2000), {"reset": True, "from": 1, "to": 4}),  # back: from the snapshot before
    ((9, 950), {"reset": True, "from": 0, "to": 1}),  # back before any snapshot: blank + nav
    ((10, 99999), {"reset": False, "from": 10, "to": 10}),  # at the end
]

RUN = """
([events, rows]) => {
  const tl = new CobrowseReplay.ReplayTimeline(events);
  return {plans: rows.map(([applied, t]) => tl.plan(applied, t)), start: tl.start, end: tl.end,
    snapshots: tl.snapshots, clock: [0, 61000, 3723000].map(CobrowseReplay.formatClock)};
}
"""


@pytest.fixture(scope="module")
def results(chromium, pages_server):
    with bundle_page(chromium, pages_server, browser_assets.assemble("replay.js")) as page:
        yield page.evaluate(RUN, [EVENTS, [list(k) for k, _ in TABLE]])


@pytest.mark.parametrize(("key", "want"), TABLE, ids=[f"{a}@{t}" for (a, t), _ in TABLE])
def test_seek_plan(results, key, want):
    assert results["plans"][[k for k, _ in TABLE].index(key)] == want


def test_timeline_bounds_snapshots_and_clock(results):
    assert (results["start"], results["end"]) == (900, 6000)
    assert results["snapshots"] == [1, 7]  # part 0 only
    assert results["clock"] == ["0:00", "1:01", "1:02:03"]
