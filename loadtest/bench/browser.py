"""The browser section of `make bench`: our snippet vs rrweb, side by side in one Chromium page.

One generated page (a fixed seed, exactly `nodes` DOM nodes: nested divs, spans, text,
attributes, form fields, SVG, comments) is loaded in Debian's Chromium through Playwright.
Into that one page go our `cobrowse.js` (router/static, assembled by router.browser_assets),
`rrweb-snapshot` and `rrweb` (exact versions pinned in loadtest/bench/rrweb/package.json
and package-lock.json, installed there with `npm ci` when node_modules is missing or the lock
changed). Then, alternating the order on every repetition:

- **full snapshot**: ours = `Cobrowse._capture(...).snapshot()` + `JSON.stringify` of the
  snapshot document; rrweb = `rrwebSnapshot.snapshot(document)` + `JSON.stringify`. Median
  time, and the UTF-8 byte length of each JSON (measured outside the timing).
- **mutation batches**: a fixed batch of DOM operations (removes, adds, attribute and text
  changes; deterministic PRNG) is applied K times under each observer in turn: our capture,
  `rrweb.record`, and a bare `MutationObserver` that does nothing (the floor: the browser's
  own cost of queuing and delivering the records). The figure is the time from the end of
  the synchronous DOM operations to the last mutation event the recorder emitted (our
  `emit("mutation", ...)`, rrweb's IncrementalSnapshot/Mutation event), each event
  JSON-stringified in the handler, as a wire encoder would.

Run alone: `python -m loadtest.bench.browser [--nodes N] [--json PATH]`. In `make bench` it
runs in a child process (`--child`, one JSON line on stdout) before any server starts.
Without chromium, Playwright, npm or the snippet, the section says "skipped" and why.

The Chromium flags are loadtest/chromium.py's, shared with the tests, plus `--js-flags=--expose-gc` so every timed step starts after a GC.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from loadtest.chromium import CHROMIUM_ARGS as BASE_ARGS
from loadtest.chromium import chromium_path

HERE = Path(__file__).resolve().parent
NPM_DIR = HERE / "rrweb"
LOCK_MARK = NPM_DIR / "node_modules" / ".cobrowse-lock-sha256"
RRWEB_SNAPSHOT_JS = (
    NPM_DIR / "node_modules" / "rrweb-snapshot" / "dist" / "rrweb-snapshot.umd.min.cjs"
)
RRWEB_JS = NPM_DIR / "node_modules" / "rrweb" / "dist" / "rrweb.umd.min.cjs"
ORIGIN = "http://bench.cobrowse.test"  # served by page.route: no server, no DNS

CHROMIUM_ARGS = [*BASE_ARGS, "--js-flags=--expose-gc"]  # gc() between measured steps

SEED = 20240611
BATCH = {"removes": 300, "adds": 300, "attrs": 300, "texts": 100}  # 1,000 DOM operations
FULL = {"nodes": 10_000, "snapshot_reps": 11, "batches": 15, "rounds": 2}


def log(msg: str) -> None:
    print(f"[bench-browser {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- the generated page ------------------------------------------------------------------

WORDS = (
    "cart checkout order shipping address total price item quantity remove update coupon "
    "account help delivery return Zürich café naïve 東京 größe 😀 ok"
).split()
CSS = (
    "".join(
        f".c{i}{{color:#{(i * 2654435761) & 0xFFFFFF:06x};margin:{i % 7}px;padding:{i % 5}px}}"
        for i in range(60)
    )
    + "div:hover>span{text-decoration:underline}.m{font-weight:bold}"
)


class _Gen:
    """Emits HTML whose parse has exactly `budget` nodes under <body> (no whitespace text,
    no auto-closing or foster-parenting constructs, so the parser keeps the tree as written)."""

    def __init__(self, rng: random.Random, budget: int) -> None:
        self.rng = rng
        self.left = budget
        self.out: list[str] = []
        self.serial = 0

    def words(self, lo: int = 1, hi: int = 6) -> str:
        return html.escape(
            " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(lo, hi)))
        )

    def attrs(self) -> str:
        self.serial += 1
        r = self.rng
        parts = [f'class="c{r.randrange(60)} c{r.randrange(60)}"']
        if r.random() < 0.3:
            parts.append(f'id="n{self.serial}"')
        if r.random() < 0.4:
            parts.append(f'data-key="{self.serial}-{r.randrange(1000)}"')
        if r.random() < 0.1:
            parts.append(f'style="width:{r.randrange(10, 400)}px;opacity:0.9"')
        if r.random() < 0.1:
            parts.append(f'title="{self.words(1, 3)}"')
        return " " + " ".join(parts)

    def leaf(self) -> tuple[int, str]:
        """A small fixed structure: (node count, HTML)."""
        r = self.rng
        k = r.random()
        n = self.serial
        if k < 0.30:
            return 2, f"<span{self.attrs()}>{self.words()}</span>"
        if k < 0.40:
            return 2, f'<a href="/p/{n}"{self.attrs()}>{self.words(1, 3)}</a>'
        if k < 0.48:
            return 2, f"<b>{self.words(1, 2)}</b>"
        if k < 0.56:
            return (
                1,
                f'<img src="img/{n % 50}.png" alt="{self.words(1, 2)}" width="16" height="16">',
            )
        if k < 0.64:
            t = r.choice(["text", "email", "number", "search"])
            return 1, f'<input type="{t}" name="f{n}" value="{self.words(1, 2)}"{self.attrs()}>'
        if k < 0.68:
            return 1, f'<input type="checkbox" name="k{n}"{" checked" if r.random() < 0.5 else ""}>'
        if k < 0.72:
            opts = "".join(f'<option value="{i}">{self.words(1, 2)}</option>' for i in range(3))
            return 7, f'<select name="s{n}">{opts}</select>'
        if k < 0.75:
            return 2, f'<textarea name="t{n}" rows="2">{self.words(2, 8)}</textarea>'
        if k < 0.80:
            return 7, (
                f'<svg viewBox="0 0 20 20" width="20" height="20"><g fill="#{n % 4096:03x}">'
                f'<rect x="1" y="1" width="8" height="8"></rect><circle cx="14" cy="14" r="4">'
                f'</circle><path d="M0 0L{n % 20} 20"></path><text x="2" y="18">{n % 100}</text>'
                "</g></svg>"
            )
        if k < 0.84:
            items = "".join(f"<li>{self.words(1, 3)}</li>" for _ in range(3))
            return 7, f"<ul{self.attrs()}>{items}</ul>"
        if k < 0.88:
            return 2, f"<p{self.attrs()}>{self.words(3, 12)}</p>"
        if k < 0.91:
            return 1, f"<!-- c{n} -->"
        return 1, "<br>"

    def fill(self, depth: int) -> None:
        """Children of one container until the budget or a random stop; no adjacent text."""
        r = self.rng
        last_text = True  # no text as the first child either: keeps the tree easy to count
        while self.left > 0:
            if depth < 12 and self.left > 3 and r.random() < 0.22:
                tag = r.choice(["div", "div", "section", "article", "span"])
                self.out.append(f"<{tag}{self.attrs()}>")
                self.left -= 1
                self.fill(depth + 1)
                self.out.append(f"</{tag}>")
                last_text = False
            elif not last_text and r.random() < 0.25:
                self.out.append(self.words())
                self.left -= 1
                last_text = True
            else:
                n, h = self.leaf()
                if n > self.left:
                    n, h = 1, "<br>"
                self.out.append(h)
                self.left -= n
                last_text = False
            if depth > 0 and r.random() < 0.12:
                return


HEAD_NODES = 8  # html, head, meta, title + text, style + text, body


def generate_page(nodes: int, seed: int = SEED) -> str:
    """A deterministic page with exactly `nodes` nodes in document.documentElement's
    subtree (elements, text and comments; the doctype not counted)."""
    if nodes < HEAD_NODES + 1:
        raise ValueError(f"at least {HEAD_NODES + 1} nodes")
    g = _Gen(random.Random(seed), nodes - HEAD_NODES)
    while g.left > 0:
        g.fill(0)
    body = "".join(g.out)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>bench page</title>'
        f"<style>{CSS}</style></head><body>{body}</body></html>"
    )


# ---- npm: rrweb-snapshot and rrweb -------------------------------------------------------


def _lock_sha() -> str:
    return hashlib.sha256((NPM_DIR / "package-lock.json").read_bytes()).hexdigest()


def ensure_rrweb(timeout: float = 180) -> str | None:
    """Install the pinned packages with `npm ci` when missing or when the lock changed.
    Returns None when ready, else why not."""
    if RRWEB_JS.exists() and RRWEB_SNAPSHOT_JS.exists() and LOCK_MARK.exists():
        if LOCK_MARK.read_text().strip() == _lock_sha():
            return None
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not installed"
    log("npm ci in loadtest/bench/rrweb (rrweb-snapshot, rrweb)")
    try:
        proc = subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
            cwd=NPM_DIR,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return f"npm ci did not finish within {timeout:g} s"
    if proc.returncode != 0:
        return f"npm ci failed ({proc.returncode}): {(proc.stderr or proc.stdout)[-300:].strip()}"
    if not (RRWEB_JS.exists() and RRWEB_SNAPSHOT_JS.exists()):
        return "npm ci ran but the rrweb UMD bundles are missing"
    LOCK_MARK.write_text(_lock_sha() + "\n")
    return None


def _pkg_version(name: str) -> str | None:
    try:
        return json.loads((NPM_DIR / "node_modules" / name / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


# ---- in the page -------------------------------------------------------------------------

HARNESS_JS = r"""
window.__bench = (() => {
  const gc = () => { if (typeof window.gc === "function") window.gc(); };
  const now = () => performance.now();
  const enc = new TextEncoder();
  const utf8 = (s) => enc.encode(s).length;

  function countDom(node) {
    let n = 1;
    if (node.shadowRoot) for (const c of node.shadowRoot.childNodes) n += countDom(c);
    for (const c of node.childNodes) n += countDom(c);
    return n;
  }
  function countOurs(node) {
    let n = 1;
    for (const c of node.c || []) n += countOurs(c);
    if (node.sh) for (const c of node.sh.c || []) n += countOurs(c);
    return n;
  }
  function countRrweb(node) {
    let n = 1;
    for (const c of node.childNodes || []) n += countRrweb(c);
    return n;
  }

  // ---- ours
  let cap = null, snaps = [], muts = [], lastEmit = 0, otherKinds = {};
  function oursEmit(kind, payload) {
    if (kind === "snapshot") { snaps.push(payload); return; }
    if (kind === "mutation") { muts.push(JSON.stringify(payload)); lastEmit = now(); return; }
    otherKinds[kind] = (otherKinds[kind] || 0) + 1;
  }
  function oursStart() {
    snaps = []; muts = [];
    cap = window.Cobrowse._capture(oursEmit);
  }
  function oursStop() { if (cap) cap.stop(); cap = null; }
  async function oursSnapshot() {
    if (!cap) oursStart();
    gc();
    const before = snaps.length;
    const t0 = now();
    let r = cap.snapshot();
    if (r && typeof r.then === "function") r = await r;
    let doc = r && typeof r === "object" && r.root ? r : null;
    if (!doc && snaps.length > before) doc = snaps[snaps.length - 1];
    const json = JSON.stringify(doc);
    const ms = now() - t0;
    snaps.length = 0;
    if (!doc) throw new Error("Cobrowse._capture().snapshot() produced no snapshot document");
    JSON.parse(json);  // valid JSON
    return {ms, bytes: utf8(json), nodes: countOurs(doc.root)};
  }

  // ---- rrweb-snapshot
  function rrwebSnapshot() {
    gc();
    const t0 = now();
    const doc = window.rrwebSnapshot.snapshot(document);
    const json = JSON.stringify(doc);
    const ms = now() - t0;
    return {ms, bytes: utf8(json), nodes: countRrweb(doc)};
  }

  // ---- mutation batches
  function prng(seed) {
    let s = seed >>> 0;
    return () => {
      s = (s + 0x6D2B79F5) >>> 0;
      let t = s;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }
  let mut = null;
  function mutator(seed) {
    const rnd = prng(seed);
    const pick = (a) => a[(rnd() * a.length) | 0];
    const containers = Array.from(document.body.querySelectorAll("div,section,article"));
    const elems = Array.from(document.body.querySelectorAll("div,section,article,span,a,b,p,li,input"));
    const texts = [];
    const w = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let t = w.nextNode(); t; t = w.nextNode()) {
      const p = t.parentNode.nodeName;
      if (p !== "TEXTAREA" && p !== "OPTION" && p !== "text") texts.push(t);
    }
    const added = [];
    let no = 0;
    return (spec) => {
      no++;
      for (const n of added.splice(0, spec.removes)) n.remove();
      for (let i = 0; i < spec.adds; i++) {
        const p = pick(containers);
        const el = document.createElement("span");
        el.className = "m";
        el.setAttribute("data-b", String(no));
        el.textContent = "added " + no + "." + i;
        const kids = p.childNodes;
        p.insertBefore(el, kids.length ? (kids[(rnd() * (kids.length + 1)) | 0] || null) : null);
        added.push(el);
      }
      for (let i = 0; i < spec.attrs; i++) pick(elems).setAttribute("data-m", no + "." + i);
      for (let i = 0; i < spec.texts; i++) pick(texts).data = "changed " + no + "." + i;
    };
  }

  const observers = {
    ours: {
      start() { oursStart(); },
      stop() { oursStop(); },
      take() { const m = muts; muts = []; return m; },
    },
    rrweb: (() => {
      let stop = null, rm = [];
      return {
        start() {
          rm = [];
          stop = window.rrweb.record({
            emit(e) {
              if (e.type === 3 && e.data && e.data.source === 0) {
                rm.push(JSON.stringify(e)); lastEmit = now();
              }
            },
          });
        },
        stop() { if (stop) stop(); stop = null; },
        take() { const m = rm; rm = []; return m; },
      };
    })(),
    raw: (() => {
      let mo = null, got = [];
      return {
        start() {
          got = [];
          mo = new MutationObserver((recs) => { got.push(recs.length); lastEmit = now(); });
          mo.observe(document, {childList: true, subtree: true, attributes: true,
                                attributeOldValue: true, characterData: true,
                                characterDataOldValue: true});
        },
        stop() { if (mo) mo.disconnect(); mo = null; },
        take() { const m = got; got = []; return m; },
      };
    })(),
  };
  const settle = () => new Promise((r) => setTimeout(r, 0));

  async function batches(which, spec, count, seed) {
    if (!mut) mut = mutator(seed);
    const o = observers[which];
    o.start();
    await settle();
    mut(spec);           // warm-up batch, not timed
    await settle();
    o.take();
    const out = [];
    for (let k = 0; k < count; k++) {
      gc();
      await settle();
      lastEmit = 0;
      const t0 = now();
      mut(spec);
      const t1 = now();
      let waited = 0;
      while (lastEmit === 0 && waited < 100) { await settle(); waited++; }
      await settle();
      const events = o.take();
      const bytes = which === "raw" ? 0 : events.reduce((a, s) => a + utf8(s), 0);
      out.push({apply_ms: t1 - t0, observe_ms: lastEmit ? lastEmit - t1 : null,
                events: events.length, bytes});
    }
    o.stop();
    await settle();
    return out;
  }

  return {countDom, oursSnapshot, rrwebSnapshot, batches, otherKinds: () => otherKinds,
          oursStop};
})();
"""


# ---- the run -----------------------------------------------------------------------------


def _median(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 3) if xs else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def run(
    nodes: int = FULL["nodes"],
    snapshot_reps: int = FULL["snapshot_reps"],
    batches: int = FULL["batches"],
    rounds: int = FULL["rounds"],
    with_rrweb: bool = True,
    batch: dict | None = None,
    seed: int = SEED,
    browser: Any = None,
) -> dict:
    """The section's figures, or {"skipped": why}. Never raises for a missing tool.

    `browser`: a Playwright Browser to use (the tests pass theirs); by default Chromium is
    launched here and closed at the end."""
    batch = dict(batch or BATCH)
    path = chromium_path()
    if browser is None and path is None:
        return {"skipped": "chromium is not installed (/usr/bin/chromium, or COBROWSE_CHROMIUM)"}
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return {"skipped": "playwright is not installed (pip install -e '.[test]')"}
    try:
        from router.browser_assets import bundle

        ours_js = bundle("cobrowse.js").body.decode()
    except (OSError, KeyError) as exc:
        return {"skipped": f"our snippet cannot be assembled: {exc}"}
    if "_capture" not in ours_js:
        return {"skipped": "router/static/visitor/ has no Cobrowse._capture test hook"}
    rr_reason = ensure_rrweb() if with_rrweb else "not asked for (ours only)"
    scripts = [ours_js]
    if rr_reason is None:
        scripts += [RRWEB_SNAPSHOT_JS.read_text(), RRWEB_JS.read_text()]
    else:
        log(f"rrweb: {rr_reason}; measuring ours alone")
    page_html = generate_page(nodes, seed)

    out: dict[str, Any] = {
        "nodes_requested": nodes,
        "seed": seed,
        "page_bytes": len(page_html.encode()),
        "rrweb_snapshot_version": _pkg_version("rrweb-snapshot") if rr_reason is None else None,
        "rrweb_version": _pkg_version("rrweb") if rr_reason is None else None,
        "rrweb": "yes" if rr_reason is None else f"skipped: {rr_reason}",
    }
    t_start = time.monotonic()
    args = (out, scripts, page_html, rr_reason is None, snapshot_reps, batches, rounds, batch, seed)
    if browser is not None:
        _measure(browser, *args)
    else:
        with sync_playwright() as pw:
            launched = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
            try:
                _measure(launched, *args)
            finally:
                launched.close()
    out["elapsed_s"] = round(time.monotonic() - t_start, 1)
    return out


def _measure(
    browser: Any,
    out: dict,
    scripts: list[str],
    page_html: str,
    with_rrweb: bool,
    snapshot_reps: int,
    batches: int,
    rounds: int,
    batch: dict,
    seed: int,
) -> None:
    rr_reason = None if with_rrweb else "absent"
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        out["chromium"] = browser.version
        page.set_default_timeout(120_000)

        def serve(route) -> None:
            if route.request.url.rstrip("/") == ORIGIN + "/page.html":
                route.fulfill(status=200, content_type="text/html; charset=utf-8", body=page_html)
            else:
                route.fulfill(status=404, content_type="text/plain", body="")

        page.route(ORIGIN + "/**", serve)
        page.goto(ORIGIN + "/page.html", wait_until="load")
        for js in scripts:
            page.add_script_tag(content=js)
        page.add_script_tag(content=HARNESS_JS)
        # The injected <script> elements ran; take them out so the page is as generated.
        page.evaluate("document.querySelectorAll('script').forEach(s => s.remove())")
        out["nodes"] = page.evaluate("__bench.countDom(document.documentElement)")

        ours: list[dict] = []
        rr: list[dict] = []
        log(f"full snapshot, {out['nodes']:,} nodes, {snapshot_reps} reps each")
        page.evaluate("__bench.oursSnapshot()")  # warm-up (JIT, first ids)
        if rr_reason is None:
            page.evaluate("__bench.rrwebSnapshot()")
        for rep in range(snapshot_reps):
            order = ["ours", "rrweb"] if rep % 2 == 0 else ["rrweb", "ours"]
            for who in order:
                if who == "ours":
                    ours.append(page.evaluate("__bench.oursSnapshot()"))
                elif rr_reason is None:
                    rr.append(page.evaluate("__bench.rrwebSnapshot()"))
        page.evaluate("__bench.oursStop()")
        snap: dict[str, Any] = {
            "reps": snapshot_reps,
            "ours": _snap_summary(ours),
            "timing": "serialize + JSON.stringify; bytes = UTF-8 length of that JSON",
        }
        if rr:
            snap["rrweb"] = _snap_summary(rr)
            snap["rrweb"]["options"] = "snapshot(document), defaults"
            snap["ratio_ms"] = _ratio(snap["ours"]["median_ms"], snap["rrweb"]["median_ms"])
            snap["ratio_bytes"] = _ratio(snap["ours"]["bytes"], snap["rrweb"]["bytes"])
        out["snapshot"] = snap

        who_all = ["ours", "rrweb", "raw"] if rr_reason is None else ["ours", "raw"]
        per: dict[str, list[dict]] = {w: [] for w in who_all}
        log(f"mutation batches: {sum(batch.values())} ops, {batches} x {rounds} per observer")
        for r in range(rounds):
            order = who_all[r % len(who_all) :] + who_all[: r % len(who_all)]
            for who in order:
                per[who] += page.evaluate(
                    "([w, spec, n, seed]) => __bench.batches(w, spec, n, seed)",
                    [who, batch, batches, seed],
                )
        out["other_event_kinds"] = page.evaluate("__bench.otherKinds()")
        ops = sum(batch.values())
        mut: dict[str, Any] = {
            "batch": batch,
            "ops_per_batch": ops,
            "batches_per_observer": batches * rounds,
            "apply_median_ms": _median([b["apply_ms"] for w in per for b in per[w]]),
            "timing": (
                "from the end of the synchronous DOM operations to the recorder's last "
                "mutation event (JSON.stringify'd in the handler); 'raw' is a bare "
                "MutationObserver whose callback only notes the time"
            ),
        }
        for who, rows in per.items():
            mut[who] = _batch_summary(rows, ops)
        mut["ratio_to_rrweb"] = _ratio(
            mut["ours"]["median_ms"], (mut.get("rrweb") or {}).get("median_ms")
        )
        mut["ratio_to_raw"] = _ratio(mut["ours"]["median_ms"], mut["raw"]["median_ms"])
        out["mutation"] = mut
    finally:
        page.close()


def _snap_summary(rows: list[dict]) -> dict:
    ms = [r["ms"] for r in rows]
    return {
        "median_ms": _median(ms),
        "min_ms": round(min(ms), 3) if ms else None,
        "bytes": rows[-1]["bytes"] if rows else None,
        "nodes": rows[-1]["nodes"] if rows else None,
    }


def _batch_summary(rows: list[dict], ops: int) -> dict:
    obs = [r["observe_ms"] for r in rows if r["observe_ms"] is not None]
    med = _median(obs)
    return {
        "median_ms": med,
        "p90_ms": round(sorted(obs)[int(0.9 * (len(obs) - 1))], 3) if obs else None,
        "ops_per_s": round(ops / med * 1000) if med else None,
        "events_per_batch": _median([r["events"] for r in rows]),
        "bytes_per_batch": _median([r["bytes"] for r in rows]),
        "missed": sum(1 for r in rows if r["observe_ms"] is None),
    }


# ---- as a section of `python -m loadtest bench` ------------------------------------------


def section(bench: Any, quick: bool) -> dict:
    """Run in a child process of the bench (stopped by pid like the others); never raises."""
    if quick:
        return {"skipped": "not in --quick (tests/loadtest/test_bench_browser.py covers it)"}
    try:
        c = bench.child("browser", "loadtest.bench.browser", "--child")
        doc = c.read(300)
        bench.finish(c)
        return doc
    except Exception as exc:  # the section must not sink the whole bench
        log(f"browser section failed: {exc!r}")
        return {"skipped": f"failed: {exc}"}


def _kib(b: float | None) -> str:
    return "n/a" if b is None else f"{b / 1024:,.1f} KiB"


def _ms(v: float | None) -> str:
    return "n/a" if v is None else (f"{v:,.1f} ms" if v >= 10 else f"{v:,.2f} ms")


def _x(r: float | None) -> str:
    return "n/a" if r is None else f"{r:.2f}x"


def table_rows(doc: dict | None) -> list[tuple[str, str, str, str, str, str]]:
    """Rows for the bench's table (same six columns as loadtest.bench.results.COLUMNS)."""
    if not doc:
        return []
    if "skipped" in doc:
        return [("browser: snapshot vs rrweb", "skipped", doc["skipped"], "", "", "")]
    rows = []
    s = doc.get("snapshot", {})
    o, r = s.get("ours", {}), s.get("rrweb")
    cmp = (
        f"rrweb-snapshot {_ms(r.get('median_ms'))}, {_kib(r.get('bytes'))}: "
        f"{_x(s.get('ratio_ms'))} time, {_x(s.get('ratio_bytes'))} size"
        if r
        else f"rrweb {doc.get('rrweb')}"
    )
    rows.append(
        (
            f"full snapshot, {doc.get('nodes', 0):,} nodes",
            f"{_ms(o.get('median_ms'))}, {_kib(o.get('bytes'))}",
            cmp,
            "",
            "",
            "",
        )
    )
    m = doc.get("mutation", {})
    mo, mr, mw = m.get("ours", {}), m.get("rrweb"), m.get("raw", {})
    cmp = f"bare MutationObserver {_ms(mw.get('median_ms'))}"
    if mr:
        cmp = f"rrweb.record {_ms(mr.get('median_ms'))}: {_x(m.get('ratio_to_rrweb'))}; " + cmp
    rows.append(
        (
            f"mutation batch, {m.get('ops_per_batch', 0):,} DOM ops",
            f"{_ms(mo.get('median_ms'))} ({mo.get('ops_per_s') or 0:,} ops/s)",
            cmp,
            "",
            "",
            "",
        )
    )
    return rows


def _on_term(signum, frame):
    raise SystemExit(143)  # closes the browser through the context managers


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m loadtest.bench.browser",
        description="Our snapshot and mutation encoder vs rrweb-snapshot/rrweb in one Chromium page.",
    )
    p.add_argument("--nodes", type=int, default=FULL["nodes"])
    p.add_argument("--reps", type=int, default=FULL["snapshot_reps"])
    p.add_argument("--batches", type=int, default=FULL["batches"])
    p.add_argument("--rounds", type=int, default=FULL["rounds"])
    p.add_argument("--no-rrweb", action="store_true", help="ours only (no npm)")
    p.add_argument("--json", metavar="PATH", help="write the section as JSON here")
    p.add_argument("--child", action="store_true", help="one JSON line on stdout (for bench)")
    a = p.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_term)
    doc = run(a.nodes, a.reps, a.batches, a.rounds, with_rrweb=not a.no_rrweb)
    if a.child:
        print(json.dumps(doc), flush=True)
        return 0
    for row in table_rows(doc):
        print(" | ".join(x for x in row if x))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(doc, indent=2) + "\n")
    else:
        print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
