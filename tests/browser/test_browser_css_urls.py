"""Every URL a browser loads from a rewritten stylesheet is a signed proxy URL (G4).

The proxy's rewriter (proxy/rewrite.py) is what keeps a visitor's stylesheet from making
the agent's browser load anything directly: the replica's <style> text goes through it, and
so do the sheets the proxy fetches. tinycss2 is the rewriter's own view of CSS, so it cannot
be its judge; Chromium's CSS engine is. Each hostile sheet below (url() in every spelling and
place a browser loads one from: escapes, image-set strings, @import forms, fonts, masks,
borders, lists, pseudo-elements, variables, nesting and group rules; then random mixtures of
them) is rewritten with a signer that points at `PROXY`, put in a page whose elements use
every rule, and every request the page makes is recorded: each must go to `PROXY`.

It found (fixed in proxy/rewrite.py): strings inside image-set() load as URLs and were left
alone; and a URL the signer refused (over 8,192 characters) made the rewriter pass the whole
sheet through unchanged, every other URL in it unsigned.
"""

from __future__ import annotations

import random
import re
from urllib.parse import urlsplit

import pytest

from proxy import signing
from proxy.rewrite import UNSIGNED, rewrite

PROXY = "http://proxy.test/v1/asset?"
EVIL = "http://evil.test/"
BASE = "http://site.test/css/main.css"


def sign(url: str) -> str:
    """The proxy's own signer, with its limits (8,192 characters, UTF-8)."""
    return "http://proxy.test" + signing.sign(b"k" * 32, url, "s1234567", 2_000_000_000)


SURROGATE = "al\ud800.png"  # JSON can carry it; UTF-8 cannot encode it


def u(name: str) -> str:
    return EVIL + name


# name -> CSS; every rule styles `.t` (a div), `.l` (a list), `.f` (text) or `.v` (a video-ish
# box), so a browser that honours the rule loads its URL.
CASES = {
    "url token": f".t {{ background: url({u('a.png')}) }}",
    "url string": f".t {{ background-image: url(\"{u('b.png')}\") }}",
    "URL upper": f".t {{ background-image: URL({u('c.png')}) }}",
    "escaped function name": f".t {{ background-image: u\\72l({u('d.png')}) }}",
    "escaped first letter": f".t {{ background-image: \\75rl({u('e.png')}) }}",
    "escaped url body": ".t { background-image: url(http\\:\\/\\/evil.test\\/f.png) }",
    "relative to the sheet": ".t { background-image: url(../g.png) }",
    "protocol relative": ".t { background-image: url(//evil.test/h.png) }",
    "image-set string": f".t {{ background-image: image-set(\"{u('i.png')}\" 1x) }}",
    "webkit image-set string": f".t {{ background-image: -webkit-image-set(\"{u('j.png')}\" 1x) }}",
    "image-set var": f":root {{ --v: \"{u('is-var.png')}\" }} .t {{ background-image: image-set(var(--v) 1x) }}",
    "webkit image-set var in var": f".t {{ --a: \"{u('is-var2.png')}\"; --b: -webkit-image-set(var(--a) 1x); background-image: var(--b) }}",
    "image-set url": f".t {{ background-image: image-set(url({u('k.png')}) 1x, \"{u('k2.png')}\" 2x) }}",
    "several layers": f".t {{ background: url({u('l1.png')}), url('{u('l2.png')}') }}",
    "import url": f"@import url({u('m.css')});",
    "import string": f"@import \"{u('n.css')}\";",
    "import with layer and media": f"@import url('{u('o.css')}') layer(x) screen;",
    "font face": f"@font-face {{ font-family: evil; src: url({u('p.woff2')}) format('woff2'), url({u('p2.woff')}); }} .f {{ font-family: evil }}",
    "list style": f".l {{ list-style-image: url({u('q.png')}) }}",
    "border image": f".t {{ border: 10px solid; border-image: url({u('r.png')}) 30 }}",
    "mask": f".t {{ -webkit-mask-image: url({u('s.png')}); mask-image: url({u('s2.png')}) }}",
    "before content": f".t::before {{ content: url({u('t.png')}) }}",
    "after content with text": f".t::after {{ content: 'x' url({u('t2.png')}) }}",
    "shape outside": f".t {{ float: left; shape-outside: url({u('v.png')}) }}",
    "filter": f".t {{ filter: url({u('w.svg')}#f) }}",
    "clip path": f".t {{ clip-path: url({u('x.svg')}#c) }}",
    "variable": f":root {{ --img: url({u('y.png')}) }} .t {{ background-image: var(--img) }}",
    "nested rule": f".t {{ & .u {{ background-image: url({u('z.png')}) }} }}",
    "media and supports": f"@media screen {{ @supports (display: block) {{ .t {{ background-image: url({u('aa.png')}) }} }} }}",
    "layer": f"@layer a {{ .t {{ background-image: url({u('ab.png')}) }} }}",
    "container": f".t {{ container-type: inline-size }} @container (min-width: 0px) {{ .u {{ background-image: url({u('ac.png')}) }} }}",
    "scope": f"@scope (.t) {{ :scope {{ background-image: url({u('ad.png')}) }} }}",
    "hover copy": f".t:hover, .t {{ background-image: url({u('ae.png')}) }}",
    "cross fade": f".t {{ background-image: -webkit-cross-fade(url({u('af.png')}), url({u('ag.png')}), 50%) }}",
    "cursor": f".t {{ cursor: url({u('ah.cur')}), auto }}",
    "important": f".t {{ background-image: url({u('ai.png')}) !important }}",
    "comment in url is no comment": ".t { background-image: url(/*x*/http://evil.test/aj.png) }",
    "a refused URL beside others": (
        f".t {{ background-image: url({u('x' * 9000)}) }} .l {{ list-style-image: url({u('ak.png')}) }}"
    ),
    "a lone surrogate beside others": (
        f".t {{ background-image: url({u(SURROGATE)}) }} .l {{ list-style-image: url({u('am.png')}) }}"
    ),
}  # fmt: skip

PAGE = """<!DOCTYPE html><html><head><style id="s"></style></head><body>
<div class="t" style="width: 60px; height: 60px">T<span class="u">U</span></div>
<ul class="l"><li>x</li></ul><p class="f">text</p>
</body></html>"""


def loaded(context, css: str, wait_ms: int = 150) -> list[str]:
    """What a page whose sheet is `css` requests (every request is aborted)."""
    page = context.new_page()
    requests: list[str] = []
    try:
        page.route("**/*", lambda route: route.abort())
        page.on("request", lambda r: requests.append(r.url))
        page.set_content(PAGE)
        page.evaluate("(css) => { document.getElementById('s').textContent = css; }", css)
        page.evaluate("() => document.fonts.load('16px evil').catch(() => null)")
        page.mouse.move(30, 30)  # over .t: cursors and :hover load on hover
        page.wait_for_timeout(wait_ms)
    finally:
        page.close()
    return requests


def signed_only(requests: list[str]) -> list[str]:
    """The requests that are neither signed nor `about:invalid` (what the rewriter puts
    in place of a URL the signer refused: the browser notes it and loads nothing)."""
    return [x for x in requests if not x.startswith(PROXY) and x != UNSIGNED]


# Cases a blank page cannot show loading as written (a relative URL there has no base; the
# comment is part of a relative URL): the rewriter resolves them against the sheet's URL.
ORACLE_BLIND = {"relative to the sheet", "protocol relative", "comment in url is no comment"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_load_of_a_rewritten_sheet_is_signed(context, name):
    if name not in ORACLE_BLIND:  # the case is live: as written, the browser loads from it
        assert signed_only(loaded(context, CASES[name])), name
    r = rewrite(CASES[name], BASE, sign)
    bad = signed_only(loaded(context, r.css))
    assert bad == [], (name, r.css[:600], r.notes)


SEED = 20261203


def test_random_mixtures_load_only_signed_urls(context):
    """Cases glued together, broken at random points and respelled: what the rewriter makes
    of a mangled sheet still loads nothing unsigned."""
    rng = random.Random(SEED)
    pieces = list(CASES.values())
    for i in range(40):
        parts = rng.sample(pieces, rng.randrange(2, 6))
        css = rng.choice(["\n", " ", "", "}", ";", "/*", "{"]).join(parts)
        if rng.random() < 0.5:  # cut somewhere: unterminated blocks, strings, url(
            css = css[: rng.randrange(len(css))]
        if rng.random() < 0.3:
            css = css.replace("url(", rng.choice(["URL(", "Url(", "u\\72l(", "url( "]))
        r = rewrite(css, BASE, sign)
        bad = signed_only(loaded(context, r.css))
        assert bad == [], (f"seed {SEED}/{i}", css[:400], r.css[:400])


# ---- the viewer's own path: style attributes (sanitiser.js, not the proxy's rewriter) -------

STYLE_ONLY = re.compile(r"^\.t \{ ([^{}]*) \}$")


def style_cases() -> dict[str, str]:
    """The cases that are one `.t { declarations }` rule: those declarations, as a style
    attribute (the viewer signs its URLs itself, through the browser's CSS parser)."""
    return {name: m.group(1) for name, css in CASES.items() if (m := STYLE_ONLY.match(css))}


def test_style_attributes_in_the_viewer_load_only_signed_urls(context, pages_server):
    from router import browser_assets
    from tests.browser.test_browser_viewer import open_viewer, page_doc

    cases = style_cases()
    assert len(cases) >= 20, sorted(cases)
    bundle = browser_assets.bundle("embed.js").body.decode()
    v = open_viewer(context, pages_server, bundle, page_name="viewer_pwned.html", frame_id="g")

    def evil() -> list[str]:  # requests to the visitor's hosts, not the (fake) signer's
        return [u for u in v.requests if urlsplit(u).hostname in ("evil.test", "site.test")]

    body = [
        {"id": 10 + i, "tag": "div", "a": {"style": s + "; width: 40px; height: 40px"}, "c": []}
        for i, s in enumerate(cases.values())
    ]
    v.snapshot(page_doc(body, url="http://site.test/page", base="http://site.test/"))
    v.page.mouse.move(20, 20)
    v.page.wait_for_timeout(300)
    assert evil() == [], evil()
    # and mutations of the attribute, one case at a time
    for i, s in enumerate(cases.values()):
        v.apply("mutation", {"attr": [{"id": 10 + i, "a": {"style": s + "; width: 41px"}}]})
    v.page.wait_for_timeout(300)
    assert evil() == [], evil()
