"""The screenshots in docs/, made from a real local cluster so they can be made again.

`python -m tests.support.screenshots [DIR]` (or `make screenshots`) starts the browser e2e
cluster (tests/support/e2e_cluster.py), two visitors on test pages, an agent in one of them,
and writes `console.png` into DIR (default `docs/`): the agents' console listing both; then
`replay.png`: a visitor who changed their page three times, replayed at a seek point between
the second and third change.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from playwright.sync_api import Browser, Page, sync_playwright

from loadtest.chromium import CHROMIUM_ARGS, chromium_path
from tests.support import e2e_cluster

DOCS = Path(__file__).resolve().parents[2] / "docs"
CONSOLE_SIZE = {"width": 1000, "height": 420}
WAIT = 20.0  # seconds for the cluster and the browsers to get where a shot shows them


def wait_for(page: Page, expr: str, what: str) -> None:
    """Poll `expr` in `page` (the console's CSP forbids the eval wait_for_function needs)."""
    deadline = time.monotonic() + WAIT
    while not page.evaluate(expr):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


def visitor(browser: Browser, cluster: e2e_cluster.Cluster, name: str) -> dict:
    """A visitor on test page `name` that started a session: its id and code."""
    page = browser.new_context(viewport={"width": 900, "height": 600}).new_page()
    page.goto(cluster.page(name))
    return page.evaluate("Cobrowse.start({consented: true})")


def console_shot(browser: Browser, cluster: e2e_cluster.Cluster, out: Path) -> Path:
    first = visitor(browser, cluster, "e2e_shop.html")
    agent = browser.new_context().new_page()
    agent.goto(cluster.embed_url(first["code"]))  # an agent is in this one
    wait_for(agent, "CobrowseViewer.current && CobrowseViewer.current.state === 'live'", "agent")
    second = visitor(browser, cluster, "e2e_states.html")
    page = browser.new_context(viewport=CONSOLE_SIZE).new_page()
    page.goto(f"{cluster.router}/console")
    page.fill("#cc-key", e2e_cluster.AGENT_KEY)
    page.keyboard.press("Enter")
    rows = "#cc-sessions tbody tr"
    wait_for(
        page,
        f"document.querySelectorAll('{rows}').length === 2"
        f" && document.querySelector('{rows}[data-sid=\"{first['sessionId']}\"]').innerText.includes('agent is in')"
        f" && document.querySelector('{rows}[data-sid=\"{second['sessionId']}\"] .cc-url')",
        "both sessions listed with their pages",
    )
    page.focus(f'{rows}[data-sid="{second["sessionId"]}"] button')  # show the focus ring
    path = out / "console.png"
    page.screenshot(path=str(path))
    return path


def replay_shot(browser: Browser, cluster: e2e_cluster.Cluster, out: Path) -> Path:
    page = browser.new_context(viewport={"width": 900, "height": 600}).new_page()
    page.goto(cluster.page("e2e_shop.html"))
    sid = page.evaluate("Cobrowse.start({consented: true})")["sessionId"]
    for step in ("Added to cart", "Shipping chosen", "Paid"):  # three changes a second apart
        time.sleep(1.0)
        page.evaluate(
            "(s) => { const p = document.createElement('p'); p.textContent = s;"
            " p.style.cssText = 'font: 600 18px sans-serif; color: #065f46'; document.body.prepend(p); }",
            step,
        )
    time.sleep(1.5)  # stored
    viewer = browser.new_context(viewport={"width": 1000, "height": 700}).new_page()
    key = e2e_cluster.AGENT_KEY
    viewer.add_init_script(f"sessionStorage.setItem('cobrowse.console.key', '{key}')")
    viewer.goto(f"{cluster.router}/replay#sid={sid}")
    wait_for(viewer, "CobrowseReplay.current && CobrowseReplay.current.state === 'paused'", "load")
    # Between the second and the third change: two paragraphs shown, not "Paid".
    viewer.evaluate(
        "(() => { const tl = CobrowseReplay.current.timeline;"
        " const m = tl.events.filter((e) => e.kind === 'mutation').map((e) => e.ts);"
        " CobrowseReplay.current.seek(m[m.length - 1] - tl.start - 300); })()"
    )
    viewer.focus("#rp-seek")  # show the focus ring on the position slider
    time.sleep(0.5)  # the proxied stylesheet and images
    path = out / "replay.png"
    viewer.screenshot(path=str(path))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=DOCS)
    args = parser.parse_args()
    cluster = e2e_cluster.start(Path(tempfile.mkdtemp(prefix="cobrowse-shots-")))
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            try:
                print(console_shot(browser, cluster, args.out))
                print(replay_shot(browser, cluster, args.out))
            finally:
                browser.close()
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
