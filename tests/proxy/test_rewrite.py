"""The sans-I/O CSS rewriter: :hover & co. to classes, url() and @import through the proxy."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tinycss2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tinycss2 import ast

from proxy.rewrite import STATE_CLASSES, RewriteResult, rewrite
from tests.support.corpus_dir import corpus_dir

BASE = "https://example.com/css/main.css"
CORPUS = corpus_dir()
GROUPS = {"media", "supports", "layer", "container"}


def sign(url: str) -> str:
    return "/proxy?u=" + url


def rw(css: str, **kw) -> RewriteResult:
    return rewrite(css, BASE, sign, **kw)


def identity(url: str) -> str:
    return url


# -- a tiny independent view of stylesheets --------------------------------------------


def selectors(css: str) -> list[str]:
    """Every selector of every style rule, at top level and inside group rules."""
    out: list[str] = []

    def walk(nodes) -> None:
        for node in nodes:
            if isinstance(node, ast.QualifiedRule):
                out.extend(s.strip() for s in tinycss2.serialize(node.prelude).split(","))
            elif isinstance(node, ast.AtRule) and node.content and node.lower_at_keyword in GROUPS:
                walk(tinycss2.parse_rule_list(node.content))

    walk(tinycss2.parse_stylesheet(css, skip_comments=True, skip_whitespace=True))
    return out


def rules(css: str) -> list[tuple[str, str]]:
    """(selector list, declarations) of each top-level style rule, whitespace squeezed."""
    out = []
    for node in tinycss2.parse_stylesheet(css, skip_comments=True, skip_whitespace=True):
        if isinstance(node, ast.QualifiedRule):
            out.append(
                (
                    " ".join(tinycss2.serialize(node.prelude).split()),
                    " ".join(tinycss2.serialize(node.content).split()),
                )
            )
    return out


# -- hover: the basic copy ------------------------------------------------------------


def test_simple_hover_gets_copy_after_original() -> None:
    r = rw("a:hover { color: red }")
    assert rules(r.css) == [("a:hover", "color: red"), ("a.cb-hover", "color: red")]
    assert r.notes == []


def test_selector_list_copies_only_hover_selectors() -> None:
    r = rw("a, b:hover, c {x: y}")
    assert rules(r.css) == [("a, b:hover, c", "x: y"), ("b.cb-hover", "x: y")]


def test_custom_hover_class_and_case_insensitive() -> None:
    r = rw("A:HOVER {x: y}", hover_class="zz")
    assert rules(r.css)[1] == ("A.zz", "x: y")


def test_hover_before_pseudo_element_is_rewritten() -> None:
    r = rw("div:hover::after {content: 'x'}")
    assert rules(r.css)[1][0] == "div.cb-hover::after"
    assert r.notes == []


def test_no_hover_is_unchanged() -> None:
    css = "a { color: red } /* c */ b > c { x: y !important }"
    assert rw(css).css == css


def test_comments_and_important_preserved() -> None:
    r = rw("/* head */ a:hover { color: red !important; /* inner */ }")
    assert "/* head */" in r.css
    assert r.css.count("/* inner */") == 2
    assert rules(r.css)[1] == ("a.cb-hover", "color: red !important;")


@pytest.mark.parametrize(
    ("wrapper", "kw"),
    [
        ("@media (min-width: 1px) { %s }", "media"),
        ("@supports (display: grid) { %s }", "supports"),
        ("@layer base { %s }", "layer"),
        ("@container (min-width: 10px) { %s }", "container"),
        ("@media print { @supports (x: y) { %s } }", "media"),
    ],
)
def test_hover_inside_group_rules(wrapper: str, kw: str) -> None:
    r = rw(wrapper % "a:hover { x: y }")
    assert r.css.startswith("@" + kw)
    assert selectors(r.css).count("a:hover") == 1
    assert selectors(r.css).count("a.cb-hover") == 1


def test_odd_at_keyword_round_trips() -> None:
    r = rw("@\\{x y; a:hover { b: c }")
    assert tinycss2.serialize(tinycss2.parse_stylesheet(r.css)) == r.css
    assert selectors(r.css) == ["a:hover", "a.cb-hover"]


def test_layer_statement_untouched() -> None:
    assert rw("@layer a, b;").css == "@layer a, b;"


def test_nesting() -> None:
    r = rw(".card { color: red; &:hover { color: blue } .x:hover & { y: z } }")
    assert r.css == (
        ".card { color: red; &:hover { color: blue }\n"
        "&.cb-hover{ color: blue } .x:hover & { y: z }\n"
        ".x.cb-hover &{ y: z } }"
    )


def test_nested_parent_copy_keeps_nested_rules() -> None:
    r = rw("a:hover { b: c; & span:hover { d: e } }")
    top = rules(r.css)
    assert [p for p, _ in top] == ["a:hover", "a.cb-hover"]
    assert all("& span.cb-hover" in body for _, body in top)


def test_nesting_inside_media_inside_rule() -> None:
    r = rw(".a { @media (x) { &:hover { b: c } } }")
    assert "&.cb-hover" in r.css


def test_keyframes_and_font_face_left_alone() -> None:
    css = "@keyframes k { from:hover { a: b } to { a: c } } @font-face { font-family: x }"
    assert rw(css).css == css


def test_is_where_has() -> None:
    r = rw(":is(a:hover, b) :where(c:hover) d:has(e:hover) { x: y }")
    assert rules(r.css)[1][0] == ":is(a.cb-hover, b) :where(c.cb-hover) d:has(e.cb-hover)"


def test_tailwind_escaped_class_survives() -> None:
    r = rw(r".hover\:bg-red:hover { x: y } .hover\:bg-blue { x: z }")
    sels = selectors(r.css)
    assert sels == [r".hover\:bg-red:hover", r".hover\:bg-red.cb-hover", r".hover\:bg-blue"]


def test_attribute_selector_text_untouched() -> None:
    css = '[data-x=":hover"] { a: b } [title=hover] { c: d }'
    assert rw(css).css == css


def test_attribute_with_real_hover() -> None:
    r = rw('[data-x=":hover"]:hover { a: b }')
    assert rules(r.css)[1][0] == '[data-x=":hover"].cb-hover'


@pytest.mark.parametrize(
    "sel", ["a::before:hover", "a::part(x):hover", "a:before:hover", "::-webkit-scrollbar:hover"]
)
def test_hover_after_pseudo_element_left_with_note(sel: str) -> None:
    css = sel + " { x: y }"
    r = rw(css)
    assert r.css == css
    assert len(r.notes) == 1 and "pseudo-element" in r.notes[0]


@pytest.mark.parametrize("pseudo", sorted(STATE_CLASSES))
def test_every_state_pseudo_class_gets_its_class(pseudo: str) -> None:
    """Focus and active are mirrored like hover (issue 14): copy after, negation in place."""
    cls = STATE_CLASSES[pseudo]
    r = rw(f"a:{pseudo} {{ x: y }} p:not(:{pseudo}) {{ x: z }} ::before:{pseudo} {{ x: w }}")
    assert rules(r.css) == [
        (f"a:{pseudo}", "x: y"),
        (f"a.{cls}", "x: y"),
        (f"p:not(.{cls})", "x: z"),
        (f"::before:{pseudo}", "x: w"),
    ]
    assert r.notes == [f":{pseudo} after a pseudo-element left as is: ::before:{pseudo}"]


def test_state_classes_match_the_viewers_table() -> None:
    """format.js STATE_CLASSES is what the viewer sets: the two tables must agree."""
    js = (Path(__file__).parents[2] / "router/static/format.js").read_text()
    body = re.search(r"const STATE_CLASSES = Object\.freeze\(\{(.*?)\}\)", js, re.S)
    assert body is not None
    pairs = dict(re.findall(r'"?([a-z-]+)"?: "([a-z-]+)"', body.group(1)))
    assert pairs == STATE_CLASSES


def test_similar_names_are_not_states() -> None:
    css = "a:focus-ring { x: y } a:hovered { x: z } a:activex { x: w }"
    assert rw(css).css == css


# -- negated hover --------------------------------------------------------------------


def test_not_hover_rewritten_in_place() -> None:
    r = rw("li:not(:hover) { opacity: .5 }")
    assert rules(r.css) == [("li:not(.cb-hover)", "opacity: .5")]


def test_not_hover_in_list_rewritten_in_place_others_copied() -> None:
    r = rw("a, li:not(:hover), b:hover { x: y }")
    assert rules(r.css) == [("a, li:not(.cb-hover), b:hover", "x: y"), ("b.cb-hover", "x: y")]


def test_nested_not_inside_is() -> None:
    r = rw("ul:is(:not(li:hover)) { x: y }")
    assert rules(r.css) == [("ul:is(:not(li.cb-hover))", "x: y")]


# A tiny matcher for compound selectors: tag, .class, :hover, :not(compound), :is(compound).


def _matches(tokens: list, el: dict) -> bool:
    i = 0
    toks = [t for t in tokens if not isinstance(t, ast.WhitespaceToken)]
    while i < len(toks):
        t = toks[i]
        if isinstance(t, ast.IdentToken):
            if t.value != el["tag"]:
                return False
        elif isinstance(t, ast.LiteralToken) and t.value == ".":
            i += 1
            if toks[i].value not in el["classes"]:
                return False
        elif isinstance(t, ast.LiteralToken) and t.value == ":":
            i += 1
            if isinstance(toks[i], ast.FunctionBlock):
                continue  # handled as the functional pseudo-class on the next turn
            assert toks[i].lower_value == "hover"
            if not el["hover"]:
                return False
        elif isinstance(t, ast.FunctionBlock) and t.lower_name == "not":
            if _matches(t.arguments, el):
                return False
        elif isinstance(t, ast.FunctionBlock) and t.lower_name == "is":
            if not _matches(t.arguments, el):
                return False
        else:
            raise AssertionError(t)
        i += 1
    return True


def _viewer_applies(css: str, el: dict) -> bool:
    """Does any style rule of ``css`` apply to ``el`` (all selectors are compound)."""
    for node in tinycss2.parse_stylesheet(css, skip_comments=True, skip_whitespace=True):
        if isinstance(node, ast.QualifiedRule):
            parts = tinycss2.serialize(node.prelude).split(",")
            for part in parts:
                if _matches(tinycss2.parse_component_value_list(part), el):
                    return True
    return False


_atom = st.sampled_from(
    [
        ".k",
        ":hover",
        ":not(:hover)",
        ":not(.k)",
        ":not(:not(:hover))",
        ":is(:hover)",
        ":is(:not(:hover))",
    ]
)
compound = st.builds(
    lambda tag, atoms: tag + "".join(atoms),
    st.sampled_from(["li", "a"]),
    st.lists(_atom, max_size=3),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(compound, min_size=1, max_size=3))
def test_viewer_semantics_equal_class_semantics(sels: list[str]) -> None:
    """In the viewer the real :hover never matches; cb-hover marks the hovered chain.

    The rewritten sheet must apply to an element exactly when the original sheet would if
    :hover meant "has class cb-hover".
    """
    css = ", ".join(sels) + " { x: y }"
    out = rw(css).css
    for tag in ("li", "a"):
        for classes in (set(), {"k"}, {"cb-hover"}, {"k", "cb-hover"}):
            viewer = {"tag": tag, "classes": classes, "hover": False}
            intended = {"tag": tag, "classes": classes, "hover": "cb-hover" in classes}
            assert _viewer_applies(out, viewer) == _viewer_applies(css, intended), (css, out)


@pytest.mark.parametrize(
    ("has_class", "expected"), [(True, False), (False, True)], ids=["class-set", "class-unset"]
)
def test_not_hover_explicit_cases(has_class: bool, expected: bool) -> None:
    out = rw("li:not(:hover) { opacity: .5 }").css
    classes = {"cb-hover"} if has_class else set()
    assert _viewer_applies(out, {"tag": "li", "classes": classes, "hover": False}) is expected


# -- URLs -----------------------------------------------------------------------------


def test_url_token_and_function_resolved_and_signed() -> None:
    r = rw("a { background: url(img/a.png); b: url('../b.png'); c: url(\"/c.png\") }")
    assert "url(/proxy?u=https://example.com/css/img/a.png)" in r.css
    assert 'url("/proxy?u=https://example.com/b.png")' in r.css
    assert 'url("/proxy?u=https://example.com/c.png")' in r.css


def test_absolute_url_and_data_url() -> None:
    r = rw("a { b: url(https://cdn.test/x.png); c: url(data:image/png;base64,AAAA) }")
    assert "url(/proxy?u=https://cdn.test/x.png)" in r.css
    assert "url(data:image/png;base64,AAAA)" in r.css
    assert rw('a { c: url("DATA:x") }').css == 'a { c: url("DATA:x") }'


def test_url_in_hover_copy_and_media_and_font_face() -> None:
    r = rw(
        "@media (x) { a:hover { b: url(h.png) } } "
        "@font-face { font-family: f; src: url(f.woff2) format('woff2') }"
    )
    assert r.css.count("url(/proxy?u=https://example.com/css/h.png)") == 2
    assert "url(/proxy?u=https://example.com/css/f.woff2)" in r.css


def test_fragment_urls_and_namespace_left_alone() -> None:
    css = '@namespace svg url(http://www.w3.org/2000/svg); a { filter: url(#blur); m: url("#m") }'
    assert rw(css).css == css


def test_sign_receives_absolute_urls() -> None:
    seen: list[str] = []

    def record(url: str) -> str:
        seen.append(url)
        return "s"

    rewrite("@import 'i.css'; a { b: url(../x.png), url(//cdn.test/y.png) }", BASE, record)
    assert seen == [
        "https://example.com/css/i.css",
        "https://example.com/x.png",
        "https://cdn.test/y.png",
    ]


def test_import_forms() -> None:
    r = rw('@import "x.css"; @import url(y.css) screen; @import url("z.css") layer(a);')
    assert '@import "/proxy?u=https://example.com/css/x.css";' in r.css
    assert "@import url(/proxy?u=https://example.com/css/y.css) screen;" in r.css
    assert '@import url("/proxy?u=https://example.com/css/z.css") layer(a);' in r.css


def test_signed_url_with_special_characters_is_escaped() -> None:
    r = rewrite("a { b: url(x.png) }", BASE, lambda u: "/p?u=" + u + " )'\"")
    value = tinycss2.parse_component_value_list(r.css)
    blocks = [t for t in value if isinstance(t, ast.CurlyBracketsBlock)]
    urls = [t for t in blocks[0].content if isinstance(t, ast.URLToken)]
    assert urls[0].value == "/p?u=https://example.com/css/x.png )'\""


# -- hostile input --------------------------------------------------------------------


@pytest.mark.parametrize(
    "css",
    ["a{", "}}}{{", "@media {", "a:hover{b:url(", "@import", "/* open", "a:not(:hover{x}", ""],
)
def test_broken_css_passes_through(css: str) -> None:
    r = rw(css)
    tinycss2.parse_stylesheet(r.css)
    assert not any(n.startswith("dropped") for n in r.notes)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_never_raises_on_arbitrary_text(css: str) -> None:
    r = rw(css)
    assert isinstance(r.css, str)
    assert not any(n.startswith("dropped") for n in r.notes), r.notes
    tinycss2.parse_stylesheet(r.css)


def test_a_url_the_signer_refuses_loads_nothing_and_the_rest_is_signed() -> None:
    """Fail closed: a refused URL becomes about:invalid; the sheet is not passed through
    (it was, and then every URL in it reached the agent's browser unsigned)."""

    def picky(url: str) -> str:
        if "bad" in url:
            raise ValueError("no")
        return sign(url)

    r = rewrite("a:hover { b: url(bad.png); c: url(ok.png) } @import 'bad.css';", BASE, picky)
    assert "bad" not in r.css
    assert "url(about:invalid)" in r.css and '@import"about:invalid"' in r.css.replace(" ", "")
    assert "url(/proxy?u=https://example.com/css/ok.png)" in r.css
    assert [n.split(":")[0] for n in r.notes] == ["unsigned", "unsigned"]  # the copy shares a body


def test_the_real_signer_refuses_a_long_url_or_a_lone_surrogate() -> None:
    from proxy import signing

    def real(url: str) -> str:
        return "https://proxy.test" + signing.sign(b"k" * 32, url, "s1234567", 2_000_000_000)

    for bad in ("x" * 9000, "a\ud800.png"):
        r = rewrite(f"a {{ b: url({bad}) }} c {{ d: url(ok.png) }}", BASE, real)
        assert "url(about:invalid)" in r.css and "example.com" not in r.css, r.css[:300]
        assert r.css.count("https://proxy.test/v1/asset?") == 1


def test_an_unexpected_error_drops_the_sheet_rather_than_passing_it_through(monkeypatch) -> None:
    import proxy.rewrite as mod

    def boom(*args, **kw):
        raise RuntimeError("boom")

    monkeypatch.setattr(mod.tinycss2, "parse_stylesheet", boom)
    r = rewrite("a { b: url(http://evil.test/x.png) }", BASE, sign)
    assert r.css == "" and r.notes == ["dropped: RuntimeError: boom"]


def test_an_image_set_with_a_substitution_becomes_none() -> None:
    r = rw('a { --v: "http://evil.test/x"; b: image-set(var(--v) 1x), url(y.png) }')
    assert "b: none, url(/proxy?u=https://example.com/css/y.png)" in r.css
    assert r.notes == ["none: image-set() with var(), env() or attr()"]
    r = rw("a { b: -webkit-image-set(url(x.png) 1x, (env(x)) 2x) }")
    assert "b: none" in r.css


def test_strings_in_image_set_are_urls() -> None:
    r = rw('a { b: image-set("x.png" 1x, url(y.png) 2x); c: -webkit-image-set("z.png" 1x) }')
    assert '"/proxy?u=https://example.com/css/x.png" 1x' in r.css
    assert "url(/proxy?u=https://example.com/css/y.png) 2x" in r.css
    assert '"/proxy?u=https://example.com/css/z.png" 1x' in r.css


def test_hover_class_is_escaped() -> None:
    r = rw("a:hover { x: y }", hover_class="a b")
    assert rules(r.css)[1][0] == r"a.a\ b"


_fragments = st.sampled_from(
    [
        "a", "b", ".c", "#d", ":hover", "::before", ":not(", ":is(", ")", ",", " ", "{",
        "}", ";", "color:red", "x:url(i.png)", "!important", "/*c*/", "@media (x)",
        "@supports (a:b)", "@keyframes k", "&", '"s"', "[t=':hover']", "\\:", "\n",
    ]
)  # fmt: skip
css_like = st.lists(_fragments, max_size=40).map("".join)


@settings(max_examples=300, deadline=None)
@given(css_like)
def test_css_like_input_keeps_every_rule(css: str) -> None:
    r = rewrite(css, "", identity)
    assert not any(n.startswith("dropped") for n in r.notes), r.notes
    out = " ".join(tinycss2.serialize(tinycss2.parse_stylesheet(r.css)).split())
    for node in tinycss2.parse_stylesheet(css):
        if not isinstance(node, ast.QualifiedRule):
            continue
        prelude = tinycss2.serialize(node.prelude)
        if "not(" in prelude.lower() or any(
            isinstance(t, ast.CurlyBracketsBlock) for t in node.content
        ):
            continue  # rewritten in place / nested content is re-serialized
        original = " ".join((prelude + "{" + tinycss2.serialize(node.content) + "}").split())
        assert original in out, (css, r.css)


_HOVER = re.compile(r"(?<!:):hover(?![\w-])", re.I)


@settings(max_examples=300, deadline=None)
@given(css_like)
def test_every_plain_hover_selector_gets_its_copy(css: str) -> None:
    """Each :hover selector outside negations and pseudo-elements gains its class copy."""
    r = rewrite(css, "", identity)
    after = set(selectors(r.css))
    for sel in selectors(css):
        if not _HOVER.search(sel) or re.search(r"not\(|::|:before|[\[\\]", sel, re.I):
            continue
        assert sel in after, (css, r.css)
        assert _HOVER.sub(".cb-hover", sel) in after, (css, r.css)


# -- the rrweb fixtures ---------------------------------------------------------------


def _corpus_sheets() -> list[tuple[str, str]]:
    sheets = [(str(p), p.read_text(errors="replace")) for p in sorted(CORPUS.rglob("*.css"))]
    for p in sorted(CORPUS.rglob("*.html")):
        text = p.read_text(errors="replace")
        for i, m in enumerate(re.finditer(r"<style[^>]*>(.*?)</style>", text, re.S | re.I)):
            sheets.append((f"{p}#{i}", m.group(1)))
    return sheets


CORPUS_SHEETS = _corpus_sheets()


@pytest.mark.skipif(not CORPUS_SHEETS, reason="rrweb fixtures not present")
def test_corpus_every_state_rule_gets_its_copy() -> None:
    names, cls_names = "|".join(STATE_CLASSES), "|".join(STATE_CLASSES.values())
    state = re.compile(rf":({names})(?![\w-])", re.I)
    classes = re.compile(rf"\.({cls_names})(?![\w-])")
    total = 0
    for name, css in CORPUS_SHEETS:
        r = rewrite(css, "https://site.test/a/b.css", sign)
        assert not any(n.startswith("dropped") for n in r.notes), name
        tinycss2.parse_stylesheet(r.css)
        before = selectors(css)
        after = selectors(r.css)
        hovers = [s for s in before if state.search(s)]
        blocked = len(r.notes)
        assert len(after) == len(before) + len(hovers) - blocked, name
        assert sum(bool(classes.search(s)) for s in after) == len(hovers) - blocked, name
        for s in hovers:
            assert s in after, name
        total += len(hovers)
    assert total >= 10  # benchmark.css alone has many


def test_links_always_show_their_unvisited_style() -> None:
    """`:visited` cannot be mirrored (browsers hide it from scripts) and in the replica it
    would follow the agent's own history: in place, never copied, it becomes a class no
    element has, and `:link` becomes `:any-link` (issue 14)."""
    r = rw(
        "a:visited { x: y } a:LINK { x: z } a:not(:visited) { x: w }"
        " a:visited:hover, b:hover { x: v } a::before:visited { x: u } .x\\:visited { x: t }"
    )
    assert rules(r.css) == [
        ("a.cb-visited", "x: y"),
        ("a:any-link", "x: z"),
        ("a:not(.cb-visited)", "x: w"),
        ("a.cb-visited.cb-hover, b:hover", "x: v"),
        ("b.cb-hover", "x: v"),
        ("a::before:visited", "x: u"),
        (".x\\:visited", "x: t"),
    ]
