"""Sans-I/O CSS rewriter: ``:hover``, ``:focus`` & co. to classes, URLs through the proxy.

``rewrite(css, base_url, sign)`` takes stylesheet text and returns a :class:`RewriteResult`
(the new text and notes about what was left alone). No I/O, no clock: ``sign`` turns an
absolute URL into the proxied URL the viewer should load.

Element states
--------------
The replica's own pointer and focus never reach the visitor's elements, so the viewer
mirrors the visitor's user-action pseudo-classes as classes (:data:`STATE_CLASSES`, the
same table as ``STATE_CLASSES`` in router/static/format.js): ``cb-hover`` (``hover_class``)
on the hovered element and its ancestors, as a browser's ``:hover`` applies to ancestors
too; ``cb-active`` likewise for the element pressed with the primary button; ``cb-focus``
on the focused element, ``cb-focus-visible`` on it when the visitor's browser says it
matches ``:focus-visible``, ``cb-focus-within`` on it and its ancestors; ``cb-target`` on
the element the visitor's URL fragment selects (the replica's own URL has no fragment, so
the real ``:target`` never matches there either). Below, ":hover"
stands for any of these pseudo-classes, each replaced by its own class. For each selector of a style
rule (at top level, inside ``@media``, ``@supports``, ``@layer``, ``@container``,
``@scope``, ``@starting-style``, ``@document`` and in CSS nesting) that uses ``:hover``:

* Positive use (``a:hover``, ``:is(a:hover)``, ``:has(b:hover)``): the rule is kept as is
  and a copy holding only those selectors, with ``:hover`` replaced by ``.cb-hover``, is
  emitted right after it. ``:hover`` and a class have the same specificity (0,1,0), so the
  copy wins and loses exactly where the original would.
* Negated use (``:hover`` anywhere inside ``:not(...)``): a copy would be wrong. In the
  viewer the real pointer never hovers the visitor's elements, so the original
  ``li:not(:hover)`` always matches, also on the element that carries ``cb-hover``; the
  union of the original and a copy therefore still styles the "hovered" element as not
  hovered. Such a selector is rewritten *in place* (``li:not(.cb-hover)``): the original
  selector is replaced, at the same position in the cascade, by the class-based one. That
  is exact under the viewer's assumption that the real ``:hover`` never matches.
* ``:visited`` and ``:link`` (:data:`_LINK_HISTORY`) are always rewritten in place, so
  every link shows its unvisited style whatever the agent's own history.
* ``:hover`` after a pseudo-element (``::before:hover``, ``::part(x):hover``, also legacy
  ``:before:hover``) is left untouched with a note: a class cannot follow a pseudo-element.
* Attribute selectors (``[data-x=":hover"]``, a bracket block) and escaped class names
  (``.hover\\:bg-red``, one ident token) are never taken for the pseudo-class.
* ``@keyframes``, ``@font-face``, ``@page`` and other non-grouping at-rules keep their
  content (only ``url()`` is rewritten there).

URLs
----
Every ``url(x)`` token, ``url("x")`` function and the string of ``@import "x"`` is resolved
against ``base_url`` with :func:`urllib.parse.urljoin` and replaced by ``sign(absolute)``.
So is each string inside ``image-set()`` and ``-webkit-image-set()``, which browsers load
as a URL (``image-set("a.png" 1x)``); one that holds a ``var()``, ``env()`` or ``attr()``
becomes ``none`` (the substituted string, a URL too, is known only when computed).
``data:`` URLs, empty URLs, fragment-only URLs (``url(#clip)`` points into the document,
not at a resource) and the name in ``@namespace`` are left alone. A URL that ``sign``
refuses (over the signer's 8,192 characters, or not encodable) becomes :data:`UNSIGNED`
with a note: it loads nothing.

Safety
------
The stylesheet is the visitor's, so hostile: whatever happens, no URL leaves unsigned.
``rewrite`` never raises; on any unexpected error the whole output is empty (a note
starting "dropped") rather than the input passed through, which would hand every URL in it
to the agent's browser. Pieces that tinycss2 reports as parse errors are dropped, as a
browser drops them; everything else is re-serialized from the token tree (so quotes may be
normalized), and the output always re-parses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urljoin

import tinycss2
from tinycss2 import ast
from tinycss2.serializer import serialize_string_value, serialize_url

__all__ = ["STATE_CLASSES", "RewriteResult", "rewrite"]

# Pseudo-class -> the class the viewer sets where the visitor's element matches it.
STATE_CLASSES: dict[str, str] = {
    "hover": "cb-hover",
    "focus": "cb-focus",
    "focus-visible": "cb-focus-visible",
    "focus-within": "cb-focus-within",
    "active": "cb-active",
    "target": "cb-target",
}

# Link history: `:visited` cannot be mirrored (a browser hides it from scripts, so the
# snippet cannot read it), and in the replica it would follow the *agent's* history (seen
# in a Firefox viewer). So every link shows its unvisited style: these are replaced in
# place, never copied, as the originals would match by the agent's history. `:visited`
# becomes a class no element ever has and `:link` becomes `:any-link` (both (0,1,0), like
# the pseudo-classes they replace).
NEVER_VISITED_CLASS = "cb-visited"
_LINK_HISTORY: dict[str, tuple[str, str]] = {
    "visited": (".", NEVER_VISITED_CLASS),
    "link": (":", "any-link"),
}

# At-rules whose block holds style rules (recursed into).
_GROUP_RULES = frozenset(
    {
        "media",
        "supports",
        "layer",
        "container",
        "scope",
        "starting-style",
        "document",
        "-moz-document",
    }
)
# Legacy single-colon pseudo-elements.
_LEGACY_PSEUDO_ELEMENTS = frozenset({"before", "after", "first-line", "first-letter"})


@dataclass
class RewriteResult:
    css: str
    notes: list[str] = field(default_factory=list)


@dataclass
class _Scan:
    state: bool = False  # some state pseudo-class (:hover, :focus...) was replaced
    negated: bool = False  # some replaced one sits inside :not(...)
    history: bool = False  # :visited or :link was replaced (always in place)
    blocked: str = ""  # the name of one that follows a pseudo-element


def _quote(value: str) -> str:
    return '"' + serialize_string_value(value) + '"'


def _is_colon(tok: object) -> bool:
    return isinstance(tok, ast.LiteralToken) and tok.value == ":"


def _replace_states(tokens: list, classes: dict[str, str], scan: _Scan, in_not: bool) -> list:
    """Return ``tokens`` with each state pseudo-class (a key of ``classes``) replaced by
    its class."""
    out: list = []
    after_pseudo_element = False
    i = 0
    n = len(tokens)
    while i < n:
        tok = tokens[i]
        if _is_colon(tok):
            nxt = tokens[i + 1] if i + 1 < n else None
            if _is_colon(nxt):  # "::name" or "::name(...)": a pseudo-element
                after_pseudo_element = True
                out.extend((tok, nxt))
                i += 2
                continue
            if isinstance(nxt, ast.IdentToken):
                name = nxt.lower_value
                cls = classes.get(name)
                if cls is not None:
                    if after_pseudo_element:
                        scan.blocked = name
                        out.extend((tok, nxt))
                    else:
                        scan.state = True
                        scan.negated = scan.negated or in_not
                        out.append(ast.LiteralToken(tok.source_line, tok.source_column, "."))
                        out.append(ast.IdentToken(nxt.source_line, nxt.source_column, cls))
                    i += 2
                    continue
                history = _LINK_HISTORY.get(name)
                if history is not None and not after_pseudo_element:
                    scan.history = True
                    out.append(ast.LiteralToken(tok.source_line, tok.source_column, history[0]))
                    out.append(ast.IdentToken(nxt.source_line, nxt.source_column, history[1]))
                    i += 2
                    continue
                if name in _LEGACY_PSEUDO_ELEMENTS:
                    after_pseudo_element = True
        if isinstance(tok, ast.FunctionBlock):
            neg = in_not or tok.lower_name == "not"
            args = _replace_states(tok.arguments, classes, scan, neg)
            tok = ast.FunctionBlock(tok.source_line, tok.source_column, tok.name, args)
        out.append(tok)
        i += 1
    return out


def _split_selectors(prelude: list) -> list[list]:
    parts: list[list] = [[]]
    for tok in prelude:
        if isinstance(tok, ast.LiteralToken) and tok.value == ",":
            parts.append([])
        else:
            parts[-1].append(tok)
    return parts


UNSIGNED = "about:invalid"
"""What a URL the signer refuses becomes: a URL that loads nothing, in any browser."""

# Functions whose string arguments are URLs (CSS Images 4; Chromium, Firefox and WebKit
# load `image-set("a.png" 1x)` as they load url("a.png")).
_IMAGE_SETS = frozenset({"image-set", "-webkit-image-set"})


_SUBSTITUTIONS = frozenset({"var", "env", "attr"})


def _substitutes(tokens: list | None) -> bool:
    """Whether a var(), env() or attr() is anywhere in `tokens`."""
    for tok in tokens or ():
        if isinstance(tok, ast.FunctionBlock):
            if tok.lower_name in _SUBSTITUTIONS or _substitutes(tok.arguments):
                return True
        elif isinstance(
            tok, ast.ParenthesesBlock | ast.SquareBracketsBlock | ast.CurlyBracketsBlock
        ):
            if _substitutes(tok.content):
                return True
    return False


class _Rewriter:
    def __init__(self, base_url: str, sign: Callable[[str], str], classes: dict[str, str]) -> None:
        self.base_url = base_url
        self.sign = sign
        self.classes = classes
        self.notes: list[str] = []

    # -- URLs ---------------------------------------------------------------------------

    def _url(self, raw: str) -> str | None:
        value = raw.strip()
        if not value or value[:5].lower() == "data:" or value.startswith("#"):
            return None
        try:
            return self.sign(urljoin(self.base_url, value))
        except Exception as exc:  # the signer refused it: it must not load as it is
            self.notes.append(f"unsigned: {type(exc).__name__}: {str(exc)[:200]}")
            return UNSIGNED

    def _strings(self, args: list) -> list:
        """image-set()'s arguments: each string in them is a URL."""
        out = []
        for arg in args:
            if isinstance(arg, ast.StringToken):
                new = self._url(arg.value)
                if new is not None and new != arg.value:
                    arg = ast.StringToken(arg.source_line, arg.source_column, new, _quote(new))
            out.append(arg)
        return self.urls(out)

    def urls(self, tokens: list | None) -> list | None:
        if tokens is None:
            return None
        out = []
        for tok in tokens:
            if isinstance(tok, ast.URLToken):
                new = self._url(tok.value)
                if new is not None and new != tok.value:
                    tok = ast.URLToken(
                        tok.source_line, tok.source_column, new, f"url({serialize_url(new)})"
                    )
            elif isinstance(tok, ast.FunctionBlock):
                if tok.lower_name == "url":
                    args = list(tok.arguments)
                    for j, arg in enumerate(args):
                        if isinstance(arg, ast.StringToken):
                            new = self._url(arg.value)
                            if new is not None and new != arg.value:
                                args[j] = ast.StringToken(
                                    arg.source_line, arg.source_column, new, _quote(new)
                                )
                            break
                elif tok.lower_name in _IMAGE_SETS and _substitutes(tok.arguments):
                    # Its strings are URLs, and a var() in it is known only when computed.
                    self.notes.append(f"none: {tok.name}() with var(), env() or attr()")
                    out.append(ast.IdentToken(tok.source_line, tok.source_column, "none"))
                    continue
                elif tok.lower_name in _IMAGE_SETS:
                    args = self._strings(tok.arguments)
                else:
                    args = self.urls(tok.arguments)
                tok = ast.FunctionBlock(tok.source_line, tok.source_column, tok.name, args)
            elif isinstance(
                tok, ast.ParenthesesBlock | ast.SquareBracketsBlock | ast.CurlyBracketsBlock
            ):
                tok = type(tok)(tok.source_line, tok.source_column, self.urls(tok.content))
            out.append(tok)
        return out

    # -- rules --------------------------------------------------------------------------

    def rule_list(self, nodes: list, nested: bool) -> str:
        """Serialize a list of rules (when ``nested``, a style rule's block contents)."""
        parts: list[str] = []
        for node in nodes:
            if isinstance(node, ast.QualifiedRule):
                parts.append(self.style_rule(node))
            elif isinstance(node, ast.AtRule):
                parts.append(self.at_rule(node, nested))
            elif isinstance(node, ast.Declaration):
                value = tinycss2.serialize(self.urls(node.value))
                imp = " !important" if node.important else ""
                parts.append(f"{tinycss2.serialize_identifier(node.name)}:{value}{imp};")
            elif isinstance(node, ast.ParseError):
                continue
            else:
                parts.append(node.serialize())
        return "".join(parts)

    def content(self, content: list | None) -> str:
        """A style rule's block: declarations, possibly with nested rules."""
        if content is None:
            return ""
        has_nested = any(isinstance(t, ast.CurlyBracketsBlock) for t in content)
        if not has_nested:
            return tinycss2.serialize(self.urls(content))
        nodes = tinycss2.parse_blocks_contents(content, skip_comments=False, skip_whitespace=False)
        return self.rule_list(nodes, nested=True)

    def style_rule(self, rule: ast.QualifiedRule) -> str:
        selectors = _split_selectors(rule.prelude)
        kept: list[str] = []
        copies: list[str] = []
        changed_in_place = False
        for sel in selectors:
            scan = _Scan()
            new = _replace_states(sel, self.classes, scan, in_not=False)
            text = tinycss2.serialize(sel)
            if scan.blocked:
                self.notes.append(
                    f":{scan.blocked} after a pseudo-element left as is: {text.strip()}"
                )
                kept.append(text)
            elif scan.negated or scan.history:
                changed_in_place = True
                kept.append(tinycss2.serialize(new))
            elif scan.state:
                kept.append(text)
                copies.append(tinycss2.serialize(new).strip())
            else:
                kept.append(text)
        prelude = ",".join(kept) if changed_in_place else tinycss2.serialize(rule.prelude)
        body = self.content(rule.content)
        out = f"{prelude}{{{body}}}"
        if copies:
            out += f"\n{', '.join(copies)}{{{body}}}"
        return out

    def at_rule(self, rule: ast.AtRule, nested: bool) -> str:
        kw = rule.lower_at_keyword
        prelude_tokens = rule.prelude
        if kw == "import":
            prelude_tokens = []
            done = False
            for tok in rule.prelude:
                if not done and isinstance(tok, ast.StringToken):
                    new = self._url(tok.value)
                    if new is not None and new != tok.value:
                        tok = ast.StringToken(tok.source_line, tok.source_column, new, _quote(new))
                    done = True
                elif not done and isinstance(tok, ast.URLToken | ast.FunctionBlock):
                    tok = self.urls([tok])[0]
                    done = True
                prelude_tokens.append(tok)
        elif kw != "namespace":  # a namespace URL is a name, not a resource
            prelude_tokens = self.urls(prelude_tokens)
        head = (
            f"@{tinycss2.serialize_identifier(rule.at_keyword)}{tinycss2.serialize(prelude_tokens)}"
        )
        if rule.content is None:
            return head + ";"
        if kw in _GROUP_RULES:
            # Inside a style rule (nesting) a group rule holds declarations and rules;
            # at top level it holds rules only.
            parse = tinycss2.parse_blocks_contents if nested else tinycss2.parse_rule_list
            nodes = parse(rule.content, skip_comments=False, skip_whitespace=False)
            body = self.rule_list(nodes, nested=nested)
        else:
            body = tinycss2.serialize(self.urls(rule.content))
        return f"{head}{{{body}}}"


def rewrite(
    css: str,
    base_url: str,
    sign: Callable[[str], str],
    *,
    hover_class: str = "cb-hover",
) -> RewriteResult:
    """Rewrite ``:hover`` into ``.{hover_class}``, the other state pseudo-classes into
    their :data:`STATE_CLASSES`, and route URLs through ``sign``."""
    rw = _Rewriter(base_url, sign, {**STATE_CLASSES, "hover": hover_class})
    try:
        nodes = tinycss2.parse_stylesheet(css, skip_comments=False, skip_whitespace=False)
        out = rw.rule_list(nodes, nested=False)
    except Exception as exc:  # never raise on hostile input, and never pass it through
        return RewriteResult(css="", notes=[f"dropped: {type(exc).__name__}: {str(exc)[:200]}"])
    return RewriteResult(css=out, notes=rw.notes)
