"""`make fidelity`: the rrweb corpus mirrored in each engine, compared three ways.

For every page of tests/corpus (as tests/browser/test_corpus.py mirrors it: the snippet's
`_capture` in the visitor's page, `CobrowseViewer.replayer` in a viewer page whose iframe
has the visitor's viewport size, no proxy: URLs and CSS pass through unchanged), with the
visitor and the viewer both in the engine measured:

- **DOM**: the normalised trees (tests/support/dom_compare.py) are equal;
- **styles**: the computed style (`STYLE_PROPS`) and the box of every visible element,
  in tree order, are equal;
- **pixels**: the visitor's viewport and the viewer's iframe, screenshotted at the same
  size, differ in under 1 % of pixels (a pixel differs when a channel differs by more than
  `PIXEL_TOLERANCE`: anti-aliasing and font hinting differ by less).

    .venv/bin/python -m tests.support.fidelity [--engines chromium,firefox,webkit] [--json F]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from loadtest.chromium import CHROMIUM_ARGS, chromium_path
from router.browser_assets import bundle
from tests.browser.test_corpus import (
    BEFORE_COMPARE,
    COMPARE,
    COMPARE_EXTRA,
    CORPUS,
    HELPERS_JS,
    PAGES,
    REPLAY_JS,
    SETTLE_MS,
    START_JS,
    STOP_JS,
    WORKLOAD_JS,
    WORKLOADS,
    first_difference,
)
from tests.support import dom_compare, engines
from tests.support.browser import StaticServer

WIDTH, HEIGHT = 1280, 800
PIXEL_TOLERANCE = 32
"""Of 255 per channel: text anti-aliasing differs by up to ~20 between two renderings of
the same glyph run in one engine here; a different colour or a moved box by far more."""
PIXEL_LIMIT = 0.01
"""The issue's threshold: a page matches when under 1 % of its pixels differ."""

STYLE_PROPS = (
    "display position float visibility opacity z-index color background-color "
    "background-image font-family font-size font-weight font-style line-height "
    "text-align text-decoration-line text-transform white-space overflow-x overflow-y "
    "border-top-width border-right-width border-bottom-width border-left-width "
    "border-top-style border-top-color margin-top margin-right margin-bottom margin-left "
    "padding-top padding-right padding-bottom padding-left"
).split()

# Every visible element in tree order: its tag (the viewer's placeholder counts as the tag it
# stands for), its box in the viewport and STYLE_PROPS. url(...) values compare by presence;
# a canvas's display `inline` and `inline-block` count as one (see the comment in the JS).
STYLES_JS = """([doc, props, ignore]) => {
  const out = [];
  const walk = (root) => {
    for (const el of root.querySelectorAll('*')) {
      if (el.closest(ignore)) continue;
      const r = el.getBoundingClientRect();
      if (!(r.width > 0 && r.height > 0)) continue;
      const cs = doc.defaultView.getComputedStyle(el);
      const tag = el.localName === 'cb-blocked' ? String(el.dataset.tag || '').toLowerCase() : el.localName;
      const row = [tag, [r.left, r.top, r.width, r.height].map(Math.round).join(','),
        ...props.map((p) => cs.getPropertyValue(p).replace(/url\\([^)]*\\)/g, 'url()'))];
      // A canvas is a replaced inline box for the visitor; the replica (no scripting) must
      // make it inline-block to give it a size. The box is compared, the keyword not.
      if (tag === 'canvas' && /^inline(-block)?$/.test(row[2])) row[2] = 'inline|inline-block';
      out.push(row);
    }
  };
  walk(doc);
  return JSON.stringify(out);
}"""

INJECT_JS = """(src) => { const s = document.createElement('script'); s.textContent = src;
  (document.head || document.documentElement).appendChild(s); s.remove(); return true; }"""

VIEWER_HTML = (
    "<!DOCTYPE html><html><head><title>viewer</title></head><body style='margin:0'>"
    f'<iframe id="f" sandbox="allow-same-origin" style="width:{WIDTH}px;height:{HEIGHT}px;'
    'border:0;display:block"></iframe></body></html>'
)

IMAGES_DONE = "(doc => [...doc.images].every(i => i.complete))({doc})"


@dataclass
class PageResult:
    page: str
    dom: str | None = None  # None: equal; else the first difference
    styles: str | None = None
    pixels: float = 1.0
    error: str | None = None
    boxes: tuple[list, list] = ([], [])  # (tag, box) of every visible element: visitor, viewer

    @property
    def pixels_ok(self) -> bool:
        return self.pixels < PIXEL_LIMIT

    @property
    def all_ok(self) -> bool:
        return self.error is None and self.dom is None and self.styles is None and self.pixels_ok


@dataclass
class EngineResult:
    engine: str
    version: str
    pages: list[PageResult] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, what: str) -> int:
        ok = {
            "dom": lambda p: p.error is None and p.dom is None,
            "styles": lambda p: p.error is None and p.styles is None,
            "pixels": lambda p: p.error is None and p.pixels_ok,
            "all": lambda p: p.all_ok,
        }[what]
        return sum(1 for p in self.pages if ok(p))


def pixel_difference(a: bytes, b: bytes) -> float:
    """The share of pixels where some channel differs by more than PIXEL_TOLERANCE."""
    x = np.asarray(Image.open(io.BytesIO(a)).convert("RGB"), dtype=np.int16)
    y = np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), dtype=np.int16)
    h, w = min(x.shape[0], y.shape[0]), min(x.shape[1], y.shape[1])
    if (h, w) != (HEIGHT, WIDTH):
        raise ValueError(f"screenshots {x.shape[:2]} and {y.shape[:2]}, not {HEIGHT}x{WIDTH}")
    diff = np.abs(x[:h, :w] - y[:h, :w]).max(axis=2) > PIXEL_TOLERANCE
    return float(diff.mean())


def styles_difference(a: str, b: str) -> str | None:
    x, y = json.loads(a), json.loads(b)
    for i, (p, q) in enumerate(zip(x, y, strict=False)):
        if p != q:
            keys = ["tag", "box", *STYLE_PROPS]
            diffs = [f"{k}: {u!r} != {v!r}" for k, u, v in zip(keys, p, q, strict=True) if u != v]
            return f"element {i} <{p[0]}>: " + "; ".join(diffs[:3])
    if len(x) != len(y):
        return f"{len(x)} visible elements in the visitor, {len(y)} in the viewer"
    return None


def boxes(styles: str) -> list:
    return [row[:2] for row in json.loads(styles)]


def settle(page: engines.EnginePage, doc: str) -> None:
    deadline = time.monotonic() + 5
    while not page.evaluate(IMAGES_DONE.format(doc=doc)) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # decoded images painted


def mirror_page(visitor, viewer, server_url: str, page: str, assets: dict) -> PageResult:
    result = PageResult(page)
    visitor.goto(f"{server_url}/corpus/{page}")
    for src in (assets["cobrowse"], HELPERS_JS):
        visitor.evaluate(INJECT_JS, src)
    visitor.evaluate(f"({START_JS})()")
    work = WORKLOADS.get(page, WORKLOAD_JS)
    # Typing and clicking workloads (form, form-fields, password) are Playwright calls: the
    # pages are mirrored as loaded, with the default workload.
    visitor.evaluate(f"({work if isinstance(work, str) else WORKLOAD_JS})()")
    time.sleep(SETTLE_MS / 1000)
    if page in BEFORE_COMPARE:
        visitor.evaluate(f"({BEFORE_COMPARE[page]})()")
    options = {**COMPARE, **COMPARE_EXTRA.get(page, {})}
    got = visitor.evaluate(STOP_JS, [dom_compare.NORMALIZE_JS, options])
    ignore = options["ignore"]
    settle(visitor, "document")
    want_styles = visitor.evaluate(f"(a => ({STYLES_JS})([document, ...a]))", [STYLE_PROPS, ignore])
    want_png = visitor.screenshot()
    viewer.goto(f"{server_url}/viewer.html")
    for src in (assets["embed"], HELPERS_JS):
        viewer.evaluate(INJECT_JS, src)
    mirrored = viewer.evaluate(REPLAY_JS, [got["events"], dom_compare.NORMALIZE_JS, options])
    frame = "document.getElementById('f').contentDocument"
    settle(viewer, frame)
    got_styles = viewer.evaluate(f"(a => ({STYLES_JS})([{frame}, ...a]))", [STYLE_PROPS, ignore])
    result.boxes = (boxes(want_styles), boxes(got_styles))
    result.dom = first_difference(got["tree"], mirrored["tree"])
    result.styles = styles_difference(want_styles, got_styles)
    # The viewer's own marks over the replica (the visitor's viewport frame and its label,
    # docs/browser.md) are not the page: hidden for the screenshot.
    viewer.evaluate(f"({HIDE_VIEWER_MARKS_JS})()")
    result.pixels = pixel_difference(want_png, viewer.screenshot())
    return result


HIDE_VIEWER_MARKS_JS = """() => {
  for (const e of document.querySelectorAll('.cb-viewport-frame, .cb-viewport-label')) e.style.display = 'none';
}"""


def run_engine(
    name: str, server_url: str, assets: dict, pages: list[str], chromium=None
) -> EngineResult:
    engine = engines.start(name, chromium)
    out = EngineResult(name, engine.version)
    t0 = time.monotonic()
    try:
        visitor = engine.open("about:blank", WIDTH, HEIGHT)
        viewer = engine.open("about:blank", WIDTH, HEIGHT)
        for page in pages:
            try:
                r = mirror_page(visitor, viewer, server_url, page, assets)
            except Exception as e:  # one page's failure is a result, not the end of the run
                r = PageResult(page, error=f"{type(e).__name__}: {str(e)[:200]}")
            out.pages.append(r)
            print(f"  {name} {page}: {describe(r)}", file=sys.stderr, flush=True)
    finally:
        out.seconds = time.monotonic() - t0
        engine.close()
    return out


def describe(r: PageResult) -> str:
    if r.error:
        return "error " + r.error
    parts = [
        "DOM ok" if r.dom is None else f"DOM differs ({r.dom[:120]})",
        "styles ok" if r.styles is None else f"styles differ ({r.styles[:160]})",
        f"pixels {r.pixels:.2%}",
    ]
    return ", ".join(parts)


def bundles() -> dict:
    return {
        "cobrowse": bundle("cobrowse.js").body.decode(),
        "embed": bundle("embed.js").body.decode(),
    }


@contextmanager
def corpus_server():
    """The corpus under /corpus/ and the viewer page at /viewer.html, on 127.0.0.1."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "corpus").symlink_to(CORPUS.resolve())
        (Path(tmp) / "viewer.html").write_text(VIEWER_HTML)
        server = StaticServer(Path(tmp))
        try:
            yield server.url
        finally:
            server.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engines", default=",".join(engines.ENGINES))
    ap.add_argument("--json", type=Path, help="write the per-page results here")
    ap.add_argument("--pages", default="", help="only pages whose path contains this")
    args = ap.parse_args(argv)
    pages = [p for p in PAGES if args.pages in p]
    results: list[EngineResult] = []
    with corpus_server() as url:
        for name in args.engines.split(","):
            if name == "chromium":
                results.append(run_chromium(url, bundles(), pages))
            else:
                results.append(run_engine(name, url, bundles(), pages))
    print(f"\nFidelity over {len(pages)} corpus pages (visitor and viewer in one engine):")
    print(f"{'engine':<22}{'DOM':>6}{'styles':>8}{'pixels':>8}{'all':>6}{'seconds':>9}")
    for r in results:
        print(
            f"{r.engine + ' ' + r.version:<22.22}{r.count('dom'):>6}{r.count('styles'):>8}"
            f"{r.count('pixels'):>8}{r.count('all'):>6}{r.seconds:>9.0f}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                [
                    {
                        "engine": r.engine,
                        "version": r.version,
                        "pages": [
                            {k: v for k, v in p.__dict__.items() if k != "boxes"} | {"ok": p.all_ok}
                            for p in r.pages
                        ],
                    }
                    for r in results
                ],
                indent=1,
            )
        )
    return 0


def run_chromium(server_url: str, assets: dict, pages: list[str]) -> EngineResult:
    path = chromium_path()
    if path is None:
        raise engines.EngineMissing("chromium is not installed")
    from playwright.sync_api import sync_playwright

    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            return run_engine("chromium", server_url, assets, pages, browser)
        finally:
            browser.close()


if __name__ == "__main__":
    sys.exit(main())
