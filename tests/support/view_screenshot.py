"""Regenerates the agent's-view screenshots in docs/screenshots/ (docs/browser.md links them).

A real local cluster (tests/support/e2e_cluster.py), a 1280x800 visitor on the e2e shop page
with a name typed and the pointer on "Buy now", and the agent's /embed page in an 800x600
window: once following the visitor (fit), once not following after the visitor scrolled
(the amber frame below the agent's view says where the visitor is).

    .venv/bin/python -m tests.support.view_screenshot [OUT_DIR]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from loadtest.chromium import CHROMIUM_ARGS, chromium_path
from tests.support import e2e_cluster

ROOT = Path(__file__).resolve().parents[2]
VDOC = "document.getElementById('cb-frame').contentDocument"
FILES = ("agent-view-800x600.png", "agent-view-not-following.png")


def wait(page, expr: str, what: str, timeout: float = 20.0) -> None:
    """Poll `expr` (the embed page's CSP forbids the eval wait_for_function needs)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expr):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


def shoot(browser, cluster, out: Path) -> None:
    visitor = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    visitor.goto(cluster.page("e2e_shop.html"))
    code = visitor.evaluate("Cobrowse.start({consented: true})")["code"]
    agent = browser.new_context(viewport={"width": 800, "height": 600}).new_page()
    agent.goto(cluster.embed_url(code))
    wait(
        agent,
        f"CobrowseViewer.current && CobrowseViewer.current.view === 'live' && !!{VDOC}.getElementById('buy')",
        "the replica",
    )
    visitor.fill("#name", "Ada Lovelace")
    visitor.hover("#buy")
    wait(agent, f"{VDOC}.getElementById('name').value === 'Ada Lovelace'", "the typed name")
    time.sleep(1.0)  # proxied sheets, the pointer and the hover state settle
    agent.screenshot(path=str(out / FILES[0]))
    agent.click("#cb-follow")
    visitor.mouse.wheel(0, 500)
    wait(
        agent,
        "CobrowseViewer.current.replayer.view().where !== 'here' || CobrowseViewer.current.replayer.view().offset[1] > 300",
        "the visitor's scroll",
    )
    agent.mouse.move(400, 250)
    time.sleep(0.5)
    agent.screenshot(path=str(out / FILES[1]))


def main(out: Path) -> None:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cluster = e2e_cluster.start(Path(tmp))
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
                try:
                    shoot(browser, cluster, out)
                finally:
                    browser.close()
        finally:
            cluster.stop()
    for name in FILES:
        print(out / name)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots")
