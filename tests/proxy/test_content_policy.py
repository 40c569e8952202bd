"""proxy.content_policy: which types each endpoint takes, and the headers each type gets."""

from __future__ import annotations

from proxy.content_policy import (
    ASSET_TYPES,
    CSS_TYPE,
    STYLESHEET_TYPES,
    SVG_CSP,
    SVG_TYPE,
    served_headers,
)


def test_svg_is_an_asset_never_a_stylesheet() -> None:
    assert SVG_TYPE in ASSET_TYPES and STYLESHEET_TYPES == {CSS_TYPE}
    assert not {"text/html", "application/xhtml+xml", "text/xml", "application/xml"} & ASSET_TYPES


def test_the_svg_policy_allows_no_script_no_load_and_no_framing() -> None:
    directives = dict((d.strip() + " ").split(" ", 1) for d in SVG_CSP.split(";"))
    assert directives["sandbox"].strip() == ""  # no allow-* token at all
    assert directives["default-src"].strip() == "'none'"
    assert directives["frame-ancestors"].strip() == "'none'"
    assert not [k for k in directives if k.startswith("script")]
    assert all(v.strip() in ("", "'none'", "'unsafe-inline'", "data:") for v in directives.values())


def test_every_answer_is_nosniff_and_only_svg_gets_the_sandbox() -> None:
    for media in [*sorted(ASSET_TYPES), None, "text/html", "image/svg", "image/svg+xml2"]:
        h = served_headers(media)
        assert h["X-Content-Type-Options"] == "nosniff"
        assert h["Content-Type"].startswith(media or "application/octet-stream")
        assert ("Content-Security-Policy" in h) == (media == SVG_TYPE), media
