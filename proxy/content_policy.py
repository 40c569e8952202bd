"""Which content types the proxy serves, and the headers that make each one safe.

Sans-I/O: `served_headers(content_type)` maps an origin's media type to the response's
`Content-Type` and the security headers that go with it.

SVG (`image/svg+xml`) is served on `/v1/asset` only, the signed-URL kind the viewer uses for
images (`<img src>`, `srcset`, CSS `url()` backgrounds, SVG `<image href>`); `/v1/stylesheet`
accepts `text/css` alone. SVG is an XML document that may hold `<script>`, `on*` handlers,
`<foreignObject>` HTML and `javascript:` links, yet it needs no sanitising here, because the
headers, not the bytes, decide what a browser does with it:

* loaded as an image (`<img>`, CSS `url()`, SVG `<image>`), an SVG never runs script and
  never loads anything external, in every engine (the "secure animated mode" of SVG
  Integration); that is how the viewer loads it;
* `X-Content-Type-Options: nosniff` with `image/svg+xml` keeps a browser from taking it as a
  stylesheet or a script;
* opened as a document (an agent opening the URL in a tab, or a replica's `<iframe>`,
  `<object>` or `<embed>`), `SVG_CSP` applies: `sandbox` (no script, no forms, no popups,
  an opaque origin), `default-src 'none'` (nothing external: only inline styles and `data:`
  images and fonts) and `frame-ancestors 'none'` (never framed at all).
"""

from __future__ import annotations

CSS_TYPE = "text/css"
SVG_TYPE = "image/svg+xml"
IMAGE_TYPES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/avif",
        "image/bmp",
        "image/x-icon",
        "image/vnd.microsoft.icon",
        SVG_TYPE,
    }
)
FONT_TYPES = frozenset(
    {
        "font/woff",
        "font/woff2",
        "font/ttf",
        "font/otf",
        "font/sfnt",
        "font/collection",
        "application/font-woff",
        "application/font-woff2",
        "application/x-font-woff",
        "application/x-font-ttf",
        "application/x-font-otf",
        "application/x-font-opentype",
        "application/x-font-truetype",
        "application/vnd.ms-fontobject",
    }
)
STYLESHEET_TYPES = frozenset({CSS_TYPE})  # GET /v1/stylesheet
ASSET_TYPES = STYLESHEET_TYPES | IMAGE_TYPES | FONT_TYPES  # GET /v1/asset

# For an SVG opened as a document: no script, nothing fetched, not framed, nowhere to post.
SVG_CSP = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
    "frame-ancestors 'none'; form-action 'none'; base-uri 'none'"
)


def served_headers(content_type: str | None) -> dict[str, str]:
    """The `Content-Type` and safety headers for a body the origin served as `content_type`
    (a media type without parameters, as the fetcher reports it)."""
    media = content_type or "application/octet-stream"
    headers = {"Content-Type": media, "X-Content-Type-Options": "nosniff"}
    if media == CSS_TYPE:
        headers["Content-Type"] = "text/css; charset=utf-8"  # the rewriter wrote UTF-8
    elif media == SVG_TYPE:
        headers["Content-Security-Policy"] = SVG_CSP
        headers["Content-Disposition"] = "inline"
    return headers
