"""One small driver for a page in Chromium, Firefox ESR or WebKitGTK (tests only).

The cross-engine tests (tests/browser/test_browser_engines.py) and `make fidelity` open a
page, evaluate JavaScript in it, type, click and hover, take a screenshot and close it, the
same way in every engine:

- **chromium**: Debian's chromium through Playwright (as tests/support/browser.py).
- **firefox**: Debian's firefox-esr over WebDriver BiDi with puppeteer-core (pinned in
  tests/support/firefox/package.json), run by a small Node script (firefox/driver.mjs)
  that takes one JSON command a line on stdin and answers one JSON line on stdout.
- **webkit**: Debian's WebKitWebDriver driving MiniBrowser (libwebkit2gtk) with selenium,
  inside one Xvfb server this module starts (MiniBrowser's headless mode hangs here).

One browser per engine per fixture scope; each page is its own context (Chromium,
Firefox) or window (WebKit), so sessionStorage is separate per page.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any, Protocol

ENGINES = ("chromium", "firefox", "webkit")
FIREFOX = os.environ.get("COBROWSE_FIREFOX", "/usr/bin/firefox-esr")
WEBKIT_DRIVER = os.environ.get("COBROWSE_WEBKIT_DRIVER", "/usr/bin/WebKitWebDriver")
MINIBROWSER = Path("/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser")
NODE_DIR = Path(__file__).resolve().parent / "firefox"
COMMAND_TIMEOUT = 60.0
"""Seconds one driver command may take: a page load on this 2-core machine is ~1 s, so a
minute means the browser is stuck, and the test fails instead of hanging."""

_NOARG = object()


class EngineMissing(RuntimeError):
    """The engine's browser or driver is not installed (`make test` installs them)."""


def _with_arg(expr: str, arg: Any) -> str:
    """Playwright's evaluate(fn, arg) as one expression, for drivers that take a string."""
    return expr if arg is _NOARG else f"({expr})({json.dumps(arg)})"


class EnginePage(Protocol):
    engine: str

    def goto(self, url: str) -> None: ...
    def evaluate(self, expr: str, arg: Any = _NOARG) -> Any: ...
    def type(self, selector: str, text: str) -> None: ...
    def click(self, selector: str) -> None: ...
    def hover(self, selector: str) -> None: ...
    def mouse(self, x: int, y: int) -> None: ...
    def press(self, key: str) -> None: ...  # a key to the focused element: "Tab", "Enter"
    def screenshot(self) -> bytes: ...
    def close(self) -> None: ...


class Engine(Protocol):
    name: str
    version: str

    def open(self, url: str, width: int, height: int) -> EnginePage: ...
    def close(self) -> None: ...


# ---- chromium (Playwright) -----------------------------------------------------------------


class ChromiumPage:
    engine = "chromium"

    def __init__(self, browser, url: str, width: int, height: int) -> None:
        self.ctx = browser.new_context(viewport={"width": width, "height": height})
        self.page = self.ctx.new_page()
        self.page.goto(url)

    def goto(self, url: str) -> None:
        self.page.goto(url)

    def evaluate(self, expr: str, arg: Any = _NOARG) -> Any:
        return self.page.evaluate(expr) if arg is _NOARG else self.page.evaluate(expr, arg)

    def type(self, selector: str, text: str) -> None:
        self.page.fill(selector, "")
        self.page.type(selector, text, delay=5)

    def click(self, selector: str) -> None:
        self.page.click(selector)

    def hover(self, selector: str) -> None:
        self.page.hover(selector)

    def mouse(self, x: int, y: int) -> None:
        self.page.mouse.move(x, y)

    def press(self, key: str) -> None:
        self.page.keyboard.press(key)

    def screenshot(self) -> bytes:
        return self.page.screenshot()

    def close(self) -> None:
        self.ctx.close()


class ChromiumEngine:
    """Wraps the Playwright browser of tests/support/browser.py's `chromium` fixture."""

    name = "chromium"

    def __init__(self, browser) -> None:
        self.browser = browser
        self.version = browser.version

    def open(self, url: str, width: int, height: int) -> ChromiumPage:
        return ChromiumPage(self.browser, url, width, height)

    def close(self) -> None:
        pass  # the fixture owns the browser


# ---- firefox (puppeteer-core over WebDriver BiDi, in Node) -----------------------------------


def npm_ci(directory: Path) -> None:
    """Install a pinned package-lock with `npm ci` when node_modules is missing or older."""
    lock, mods = directory / "package-lock.json", directory / "node_modules"
    stamp = mods / ".package-lock.json"
    if stamp.exists() and stamp.stat().st_mtime >= lock.stat().st_mtime:
        return
    npm = shutil.which("npm")
    if npm is None:
        raise EngineMissing("npm is not installed")
    subprocess.run(
        [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--silent"],
        cwd=directory,
        check=True,
        timeout=300,
    )


class FirefoxEngine:
    name = "firefox"

    def __init__(self) -> None:
        node = shutil.which("node")
        if node is None or not Path(FIREFOX).exists():
            raise EngineMissing(f"firefox needs node and {FIREFOX}")
        npm_ci(NODE_DIR)
        self.proc = subprocess.Popen(
            [node, str(NODE_DIR / "driver.mjs"), FIREFOX],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.next_id = 0
        self.version = self._reply(None)["version"]

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _reply(self, want: int | None) -> dict:
        try:
            line = self.lines.get(timeout=COMMAND_TIMEOUT)
        except queue.Empty:
            raise TimeoutError(f"firefox driver: no answer in {COMMAND_TIMEOUT} s") from None
        if line is None:
            raise RuntimeError(f"firefox driver exited ({self.proc.poll()})")
        msg = json.loads(line)
        if want is not None and msg.get("id") != want:
            if msg.get("id", want) < want:  # the late answer to a command that timed out
                return self._reply(want)
            raise RuntimeError(f"firefox driver: answer {msg.get('id')} for command {want}")
        return msg

    def command(self, op: str, **fields) -> Any:
        self.next_id += 1
        self.proc.stdin.write(json.dumps({"id": self.next_id, "op": op, **fields}) + "\n")
        self.proc.stdin.flush()
        msg = self._reply(self.next_id)
        if "error" in msg:
            raise RuntimeError(f"firefox {op}: {msg['error']}")
        return msg["ok"]

    def open(self, url: str, width: int, height: int) -> FirefoxPage:
        return FirefoxPage(self, self.command("open", url=url, width=width, height=height))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()  # the script closes the browser at end of input
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class FirefoxPage:
    engine = "firefox"

    def __init__(self, driver: FirefoxEngine, page: int) -> None:
        self.driver, self.id = driver, page

    def goto(self, url: str) -> None:
        self.driver.command("goto", page=self.id, url=url)

    def evaluate(self, expr: str, arg: Any = _NOARG) -> Any:
        return self.driver.command("evaluate", page=self.id, expr=_with_arg(expr, arg))

    def type(self, selector: str, text: str) -> None:
        self.driver.command("type", page=self.id, selector=selector, text=text)

    def click(self, selector: str) -> None:
        self.driver.command("click", page=self.id, selector=selector)

    def hover(self, selector: str) -> None:
        self.driver.command("hover", page=self.id, selector=selector)

    def mouse(self, x: int, y: int) -> None:
        self.driver.command("mouse", page=self.id, x=x, y=y)

    def press(self, key: str) -> None:
        self.driver.command("press", page=self.id, key=key)

    def screenshot(self) -> bytes:
        return base64.b64decode(self.driver.command("screenshot", page=self.id))

    def close(self) -> None:
        self.driver.command("close", page=self.id)


# ---- webkit (selenium + WebKitWebDriver under Xvfb) ------------------------------------------


class Xvfb:
    """One X server on a free display, for MiniBrowser (its headless mode hangs here)."""

    def __init__(self) -> None:
        exe = shutil.which("Xvfb")
        if exe is None:
            raise EngineMissing("Xvfb is not installed")
        read, write = os.pipe()
        self.proc = subprocess.Popen(
            [exe, "-displayfd", str(write), "-screen", "0", "1600x1200x24", "-nolisten", "tcp"],
            pass_fds=(write,),
            stderr=subprocess.DEVNULL,
        )
        os.close(write)
        with os.fdopen(read) as f:
            number = f.readline().strip()
        if not number:
            self.proc.kill()
            raise RuntimeError("Xvfb did not report a display")
        self.display = f":{number}"

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


ASYNC_EVAL = """const done = arguments[arguments.length - 1];
Promise.resolve().then(() => (%s)).then((v) => done({ok: v === undefined ? null : v}),
  (e) => done({error: String(e && e.stack || e)}));"""


class WebKitEngine:
    name = "webkit"

    def __init__(self) -> None:
        if not (Path(WEBKIT_DRIVER).exists() and MINIBROWSER.exists()):
            raise EngineMissing(f"webkit needs {WEBKIT_DRIVER} and {MINIBROWSER}")
        from selenium import webdriver
        from selenium.webdriver.webkitgtk.options import Options
        from selenium.webdriver.webkitgtk.service import Service

        self.xvfb = Xvfb()
        try:
            options = Options()
            options.binary_location = str(MINIBROWSER)
            options.add_argument("--automation")
            service = Service(
                executable_path=WEBKIT_DRIVER, env={**os.environ, "DISPLAY": self.xvfb.display}
            )
            self.driver = webdriver.WebKitGTK(options=options, service=service)
        except BaseException:
            self.xvfb.close()
            raise
        self.driver.set_script_timeout(COMMAND_TIMEOUT)
        self.driver.set_page_load_timeout(COMMAND_TIMEOUT)
        self.version = "webkitgtk/" + str(self.driver.capabilities.get("browserVersion"))
        self.first_window: str | None = self.driver.current_window_handle

    def open(self, url: str, width: int, height: int) -> WebKitPage:
        if self.first_window is not None:  # the session's own window, used once
            handle, self.first_window = self.first_window, None
        else:
            self.driver.switch_to.new_window("window")
            handle = self.driver.current_window_handle
        return WebKitPage(self, handle, url, width, height)

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            self.xvfb.close()


class WebKitPage:
    engine = "webkit"

    def __init__(self, engine: WebKitEngine, handle: str, url: str, w: int, h: int) -> None:
        self.engine_, self.handle = engine, handle
        d = self._d()
        d.set_window_size(w, h)
        # the window's size includes no chrome in MiniBrowser --automation; check the viewport
        inner = d.execute_script("return [innerWidth, innerHeight]")
        if inner != [w, h]:
            d.set_window_size(w + (w - inner[0]), h + (h - inner[1]))
        d.get(url)

    def _d(self):
        d = self.engine_.driver
        if d.current_window_handle != self.handle:
            d.switch_to.window(self.handle)
        return d

    def goto(self, url: str) -> None:
        self._d().get(url)

    def evaluate(self, expr: str, arg: Any = _NOARG) -> Any:
        msg = self._d().execute_async_script(ASYNC_EVAL % _with_arg(expr, arg))
        if "error" in msg:
            raise RuntimeError(f"webkit evaluate: {msg['error']}")
        return msg["ok"]

    def type(self, selector: str, text: str) -> None:
        el = self._d().find_element("css selector", selector)
        el.clear()
        el.send_keys(text)

    def click(self, selector: str) -> None:
        self._d().find_element("css selector", selector).click()

    def hover(self, selector: str) -> None:
        from selenium.webdriver import ActionChains

        d = self._d()
        ActionChains(d).move_to_element(d.find_element("css selector", selector)).perform()

    def mouse(self, x: int, y: int) -> None:
        from selenium.webdriver.common.actions.action_builder import ActionBuilder

        builder = ActionBuilder(self._d())
        builder.pointer_action.move_to_location(x, y)
        builder.perform()

    def press(self, key: str) -> None:
        from selenium.webdriver import ActionChains
        from selenium.webdriver.common.keys import Keys

        ActionChains(self._d()).send_keys(getattr(Keys, key.upper())).perform()

    def screenshot(self) -> bytes:
        return self._d().get_screenshot_as_png()

    def close(self) -> None:
        d = self._d()
        if len(d.window_handles) > 1:
            d.close()
            d.switch_to.window(d.window_handles[0])
        else:  # keep the session's last window: about:blank ends the page
            d.get("about:blank")
            self.engine_.first_window = self.handle


def start(name: str, chromium_browser=None) -> Engine:
    """Start one engine's browser (Chromium: wrap the Playwright browser given)."""
    if name == "chromium":
        return ChromiumEngine(chromium_browser)
    if name == "firefox":
        return FirefoxEngine()
    if name == "webkit":
        return WebKitEngine()
    raise ValueError(f"unknown engine {name!r}: one of {ENGINES}")
