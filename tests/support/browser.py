"""Real headless Chromium for the browser tests: Debian's `chromium`, driven by Playwright.

Playwright's own browser download does not work here, so we launch the system binary by
`executable_path`. `make test` installs it (see the Makefile's `chromium` target). A
missing browser fails the tests rather than skipping them, unless COBROWSE_SKIP_BROWSER=1.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import os
import sys
import threading
from pathlib import Path

import pytest

from loadtest.chromium import CHROMIUM_ARGS, chromium_path

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "router" / "static"
PAGES = Path(__file__).resolve().parents[1] / "pages"

__all__ = ["CHROMIUM_ARGS", "chromium_path"]


@pytest.fixture(scope="module")
def chromium():
    """One Chromium per test module; tests open their own contexts.

    Playwright's sync API runs an asyncio loop in a greenlet of the main thread and leaves
    it as the thread's running loop between calls, which breaks trio-asyncio (the NATS
    bridge) in later tests. So Playwright lives only while a browser module runs, and the
    thread's asyncio state is reset after it."""
    path = chromium_path()
    if path is None:
        if os.environ.get("COBROWSE_SKIP_BROWSER") == "1":
            pytest.skip("COBROWSE_SKIP_BROWSER=1 and no chromium")
        pytest.fail("chromium is not installed: run `make test`, which installs it")
    from playwright.sync_api import sync_playwright

    # trio-asyncio installs an event-loop policy whose loops cannot host Playwright's
    # greenlet-driven loop: give Playwright a plain one.
    policy = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    try:
        manager = sync_playwright()
        pw = manager.__enter__()
    finally:
        asyncio.set_event_loop_policy(policy)
    try:
        browser = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        manager.__exit__(None, None, None)
        asyncio.events._set_running_loop(None)
        asyncio.set_event_loop(None)


@pytest.fixture
def context(chromium):
    ctx = chromium.new_context()
    yield ctx
    ctx.close()


@contextlib.contextmanager
def bundle_page(chromium, pages_server, script: str):
    """A page of its own context on tests/pages/viewer_host.html with a browser bundle loaded
    (`browser_assets.assemble(...)`), for tests that evaluate the bundle's pure parts."""
    ctx = chromium.new_context()
    try:
        page = ctx.new_page()
        page.goto(pages_server.url + "/pages/viewer_host.html")
        page.add_script_tag(content=script)
        yield page
    finally:
        ctx.close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


class QuietServer(http.server.ThreadingHTTPServer):
    """A browser that gives up on a request (a page closed, an image a test does not wait
    for) is no error of the test's: no traceback for a peer that went away."""

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class StaticServer:
    """A plain HTTP server on 127.0.0.1 serving one directory, in a thread."""

    def __init__(self, directory: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self.httpd = QuietServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="session")
def pages_server():
    """Serves tests/pages/ (visitor test pages) and, under /static/, router/static/."""
    srv = StaticServer(ROOT / "tests")
    yield srv
    srv.close()
