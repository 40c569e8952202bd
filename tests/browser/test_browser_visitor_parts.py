"""The visitor snippet's pure parts (router/static/visitor/) as tables, run in one Chromium page.

The snippet's own tests (test_browser_visitor.py) drive whole recordings; these look at the
small functions underneath on their own: the masks (privacy.js), id allocation (ids.js), the
per-event size check and the mutation splitter (mutations.js), the canvas frame hash and
sniffing (canvas.js). The bundle is assembled with `extra` code that hands them to the test.
"""

from __future__ import annotations

import base64

import pytest

from router import browser_assets
from tests.browser.test_browser_visitor import INJECT

EXPOSE = """window.__parts = {mask, maskText, maskAttr, maskTextNode, selfPrivate, isPrivate,
  idFor, idOf, nodeOf, tooBig, splitMutation, hashBytes, sniffMime, dataBytes, MAX_EVENT, MASK};"""

# [function name, arguments] -> what it returns, all evaluated in one call.
CALLS = """(cases) => cases.map(([fn, args]) => {
  const r = window.__parts[fn](...args);
  return r === undefined ? "undefined" : r;
})"""

MAX_EVENT = 120 * 1024  # format.js: 128 KiB less 8 KiB of room
MASK = "********"


@pytest.fixture(scope="module")
def page(chromium):
    ctx = chromium.new_context()
    pg = ctx.new_page()
    pg.set_content("<!DOCTYPE html><html><head></head><body></body></html>")
    src = browser_assets.assemble("cobrowse.js", extra=EXPOSE)
    assert pg.evaluate(INJECT, [src, {"data-mask-selector": ".secret"}]) == "object"
    assert pg.evaluate("() => typeof window.__parts") == "object"
    yield pg
    ctx.close()


def calls(page, table):
    got = page.evaluate(CALLS, [[fn, args] for fn, args, _ in table])
    return [
        (fn, args, want, g) for (fn, args, want), g in zip(table, got, strict=True) if g != want
    ]


def test_value_and_text_masks(page):
    """One mask for any non-empty value (its length says nothing); text keeps its whitespace;
    attributes that shape an element are kept, URLs emptied, anything else masked."""
    table = [
        ("mask", ["hunter2"], MASK),
        ("mask", ["4111111111111111"], MASK),
        ("mask", ["x" * 1000], MASK),
        ("mask", [""], ""),
        ("mask", [0], MASK),
        ("maskText", ["ab cd\n e"], "** **\n *"),
        ("maskText", ["héllo wörld"], "***** *****"),
        ("maskText", [""], ""),
        ("maskText", ["x" * 5000], "*" * 4096),
        ("maskText", ["\t \n"], "\t \n"),
        ("maskAttr", ["value", "secret"], MASK),
        ("maskAttr", ["title", "Jane Doe"], MASK),
        ("maskAttr", ["data-card", "4111"], MASK),
        ("maskAttr", ["placeholder", ""], ""),
        ("maskAttr", ["href", "https://bank.example/acct/42"], ""),
        ("maskAttr", ["src", "/avatar/jane.png"], ""),
        ("maskAttr", ["srcset", "a.png 1x, b.png 2x"], ""),
        ("maskAttr", ["xlink:href", "#icon"], ""),
        ("maskAttr", ["cite", "https://bank.example/statement"], ""),  # a URL to the viewer too
        ("maskAttr", ["imagesrcset", "a.png 1x"], ""),
        ("maskAttr", ["class", "field wide"], "field wide"),
        ("maskAttr", ["type", "password"], "password"),
        ("maskAttr", ["style", "width: 10em"], "width: 10em"),
        ("maskAttr", ["data-cobrowse-private", ""], ""),
    ]
    assert calls(page, table) == []


# Markup with one element marked #t -> is #t private by itself (selfPrivate)?
SELF_PRIVATE = [
    ('<input id="t" type="password">', True),
    ('<input id="t" type="PassWord">', True),
    ('<input id="t" autocomplete="cc-number">', True),
    ('<input id="t" autocomplete="section-a shipping cc-exp">', True),
    ('<input id="t" autocomplete="CURRENT-PASSWORD">', True),
    ('<input id="t" autocomplete="new-password">', True),
    ('<input id="t" autocomplete="one-time-code">', True),
    ('<input id="t" autocomplete="acc-number">', False),
    ('<input id="t" autocomplete="email">', False),
    ('<input id="t" type="text">', False),
    ('<div id="t" data-cobrowse-private></div>', True),
    ('<p id="t" class="secret"></p>', True),  # the page's data-mask-selector
    ('<p id="t" class="public"></p>', False),
    ('<svg id="t" class="secret"></svg>', True),
]


def test_what_is_private(page):
    got = page.evaluate(
        """(cases) => cases.map((html) => {
          const box = document.createElement("div");
          box.innerHTML = html;
          document.body.appendChild(box);
          const r = window.__parts.selfPrivate(box.querySelector("#t"));
          box.remove();
          return r;
        })""",
        [html for html, _ in SELF_PRIVATE],
    )
    assert [(h, g) for (h, want), g in zip(SELF_PRIVATE, got, strict=True) if g != want] == []


def test_privacy_is_sticky_inherited_and_masks_text_by_parent(page):
    got = page.evaluate(
        """() => {
          const P = window.__parts;
          const box = document.createElement("div");
          box.innerHTML = '<input id="pw" autocomplete="new-password">' +
            '<div data-cobrowse-private><span id="in">Jane Doe</span></div>' +
            '<select data-cobrowse-private><option id="op">Mastercard</option></select>' +
            '<textarea id="ta">long secret</textarea><p id="pub">a b</p>';
          document.body.appendChild(box);
          const pw = box.querySelector("#pw");
          const first = P.selfPrivate(pw);
          pw.removeAttribute("autocomplete");  // a password shown as text stays private
          const inner = box.querySelector("#in");
          const text = (sel) => box.querySelector(sel).firstChild;
          const out = {
            sticky: [first, P.selfPrivate(pw)],
            inherited: [P.selfPrivate(inner), P.isPrivate(inner), P.isPrivate(inner.firstChild)],
            public: P.isPrivate(box.querySelector("#pub")),
            text: [P.maskTextNode(text("#in")), P.maskTextNode(text("#op")),
                   P.maskTextNode(text("#ta")), P.maskTextNode(text("#pub"))],
          };
          box.remove();
          return out;
        }"""
    )
    assert got == {
        "sticky": [True, True],
        "inherited": [False, True, True],
        "public": False,
        # An option's label and a textarea's text are values: one mask, not their word shape.
        "text": ["**** ***", MASK, MASK, "* *"],
    }


def test_ids_are_allocated_once_and_never_reused(page):
    got = page.evaluate(
        """() => {
          const P = window.__parts;
          const a = document.createElement("b"), b = document.createTextNode("x");
          const before = P.idOf(a);
          const ia = P.idFor(a), ib = P.idFor(b);
          return {before: before === undefined, again: P.idFor(a) === ia, idOf: P.idOf(b) === ib,
                  distinct: ia !== ib, next: ib === ia + 1, nodeOf: P.nodeOf(ia) === a,
                  unknown: P.nodeOf(ib + 1000) === undefined};
        }"""
    )
    assert got == dict.fromkeys(
        ("before", "again", "idOf", "distinct", "next", "nodeOf", "unknown"), True
    )


def test_size_check_counts_utf8_bytes(page):
    """tooBig compares the JSON's UTF-8 bytes with MAX_EVENT: `{"s":"..."}` is 8 bytes more
    than the string, and "é" is 2 bytes."""
    assert page.evaluate("() => window.__parts.MAX_EVENT") == MAX_EVENT
    table = [
        ("tooBig", [{}], False),
        ("tooBig", [{"s": "x" * (MAX_EVENT - 8)}], False),
        ("tooBig", [{"s": "x" * (MAX_EVENT - 7)}], True),
        ("tooBig", [{"s": "é" * (MAX_EVENT // 2 - 4)}], False),
        ("tooBig", [{"s": "é" * (MAX_EVENT // 2 - 3)}], True),
        ("tooBig", [{"s": "€" * (MAX_EVENT // 3)}], True),
    ]
    assert calls(page, table) == []


def test_split_mutation_keeps_order_under_the_limit(page):
    big = "x" * 50_000  # three of these do not fit one event, two do
    adds = [{"p": 1, "b": None, "n": {"id": i, "x": big}} for i in (10, 11, 12)]
    m = {"rem": [4, 5], "adds": adds, "text": [{"id": 7, "x": "t"}]}
    small = {"rem": [1], "attr": [{"id": 2, "a": {"k": None}}]}
    huge = {"adds": [{"p": 1, "b": None, "n": {"id": 9, "x": "x" * MAX_EVENT}}]}
    got = page.evaluate(CALLS, [["splitMutation", [x]] for x in (small, m, huge)])
    assert got[0] == [small]
    assert got[1] == [{"rem": [4, 5], "adds": adds[:2]}, {"adds": adds[2:], "text": m["text"]}]
    assert got[2] is None  # one node alone is too big: the recorder sends a snapshot instead


def test_frame_hash_and_sniffing(page):
    """FNV-1a 32 (its published test vectors) plus the length; webp told from png by its
    RIFF....WEBP header."""
    webp = list(b"RIFF\x10\x00\x00\x00WEBPVP8 ")
    png = list(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR")
    data = "data:image/png;base64," + base64.b64encode(b"\x00\x01\xff").decode()
    table = [
        ("hashBytes", [[]], "2166136261:0"),
        ("hashBytes", [list(b"a")], f"{0xE40C292C}:1"),
        ("hashBytes", [list(b"foobar")], f"{0xBF9CF968}:6"),
        ("sniffMime", [webp], "image/webp"),
        ("sniffMime", [png], "image/png"),
        ("dataBytes", [data], [0, 1, 255]),
    ]
    got = page.evaluate(
        """(cases) => cases.map(([fn, args]) => {
          const P = window.__parts;
          const r = P[fn](...args.map((a) => Array.isArray(a) ? new Uint8Array(a) : a));
          return r instanceof Uint8Array ? Array.from(r) : r;
        })""",
        [[fn, args] for fn, args, _ in table],
    )
    assert [(fn, g) for (fn, _, want), g in zip(table, got, strict=True) if g != want] == []
