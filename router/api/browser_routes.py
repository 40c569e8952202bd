"""The router's browser-facing routes: the snippet, the embed page, the agents' console and the
demo page.

The scripts are assembled once per process (router/browser_assets.py) and served with an
ETag, so a site's pages revalidate cheaply. The embed page gets a strict
Content-Security-Policy: the visitor's page is untrusted input (G4), and even if the
viewer missed something, no script but our own may run and nothing but the router, the
proxy and the gateways may be contacted. The console is stricter still: our own script and
stylesheet, requests to the router only, frames of the router's own pages (the embed), and no
one may frame it (it holds the agent's API key).
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response

from .. import browser_assets
from ..config import RouterConfig


def _serve(asset: browser_assets.Asset, request: Request, headers: dict[str, str]) -> Response:
    base = {"ETag": asset.etag, "X-Content-Type-Options": "nosniff", **headers}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=base)
    return Response(content=asset.body, media_type=asset.content_type, headers=base)


def served(media: str, what: str, revalidates: bool = True) -> dict:
    """A browser route's OpenAPI: what it serves, as its media type (FastAPI would say JSON),
    and the 304 that answers a matching `If-None-Match`."""
    responses: dict[int | str, dict] = {
        200: {"description": what, "content": {media: {"schema": {"type": "string"}}}}
    }
    if revalidates:
        responses[304] = {"description": "not modified: `If-None-Match` named the current ETag"}
    return {"response_class": Response, "responses": responses}


HTML = "text/html"
JS = "text/javascript"


def embed_csp(cfg: RouterConfig) -> str:
    proxy = cfg.proxy_url or ""
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            # The rebuilt page's own styles and images come through the proxy only.
            f"style-src 'self' 'unsafe-inline' {proxy}".strip(),
            f"img-src 'self' data: blob: {proxy}".strip(),
            f"font-src {proxy} data:".strip(),
            f"media-src {proxy}".strip() if proxy else "media-src 'none'",
            # The gateways' addresses change as they scale; ws/wss only, no plain fetches.
            f"connect-src 'self' ws: wss: {proxy}".strip(),
            # The replica is about:blank and never navigates: a link in it that something
            # still follows (a script's non-cancelable click) is refused, never fetched.
            "frame-src about:",
            "child-src 'self' about:",
            "form-action 'none'",
            "base-uri 'none'",
            "object-src 'none'",
            f"frame-ancestors {embed_ancestors(cfg)}",
        ]
    )


def embed_ancestors(cfg: RouterConfig) -> str:
    """Who may frame /embed: the configured sources, and always the router itself, whose
    console opens sessions in it (`*` already covers it)."""
    sources = cfg.embed_frame_ancestors.split()
    if {"*", "'self'", "'none'"} & set(sources):  # 'none': the operator wants no framing
        return cfg.embed_frame_ancestors
    return " ".join(["'self'", *sources])


CONSOLE_CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "frame-src 'self'",
        "form-action 'none'",
        "base-uri 'none'",
        "object-src 'none'",
        "frame-ancestors 'none'",
    ]
)
"""The console's Content-Security-Policy: it needs nothing but the router itself."""


def static_file(app: FastAPI, name: str) -> None:
    """Serve router/static/`name` at `/name`, revalidated on every use (no-cache + ETag)."""

    @app.get(f"/{name}", include_in_schema=False)
    async def serve(request: Request) -> Response:
        return _serve(browser_assets.page(name), request, {"Cache-Control": "no-cache"})


def add(app: FastAPI, cfg: RouterConfig) -> None:
    snippet_headers = {
        "Cache-Control": "public, max-age=300",
        "Access-Control-Allow-Origin": "*",  # sites load it with crossorigin or from workers
    }
    page_headers = {
        "Cache-Control": "no-cache",
        "Content-Security-Policy": embed_csp(cfg),
        "Referrer-Policy": "no-referrer",
    }

    @app.get(
        "/cobrowse.js",
        tags=["browser"],
        summary="The visitor's snippet (one script tag)",
        **served(JS, "the snippet"),
    )
    async def snippet(request: Request) -> Response:
        return _serve(browser_assets.bundle("cobrowse.js"), request, snippet_headers)

    @app.get(
        "/replay.js",
        tags=["browser"],
        summary="The replay page's script",
        **served(JS, "the script"),
    )
    async def replay_script(request: Request) -> Response:
        return _serve(browser_assets.bundle("replay.js"), request, {"Cache-Control": "no-cache"})

    @app.get(
        "/replay",
        tags=["browser"],
        summary="A session's replay: /replay#sid=<id> (the agent API key from /console's sign-in)",
        **served(HTML, "the page"),
    )
    async def replay(request: Request) -> Response:
        return _serve(browser_assets.page("replay.html"), request, page_headers)

    @app.get(
        "/embed.js",
        tags=["browser"],
        summary="The agent viewer's script",
        **served(JS, "the script"),
    )
    async def embed_script(request: Request) -> Response:
        return _serve(browser_assets.bundle("embed.js"), request, {"Cache-Control": "no-cache"})

    console_headers = {
        "Cache-Control": "no-cache",
        "Content-Security-Policy": CONSOLE_CSP,
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
    }

    @app.get(
        "/console",
        tags=["browser"],
        summary="The agents' console (sign in with an API key)",
        **served(HTML, "the page"),
    )
    async def console(request: Request) -> Response:
        return _serve(browser_assets.page("console.html"), request, console_headers)

    static_file(app, "console.js")
    static_file(app, "console.css")

    @app.get(
        "/embed",
        tags=["browser"],
        summary="The agent's viewer: /embed#sid=<id>&token=<agent token> or #code=<code>&key=<API key>",
        **served(HTML, "the page"),
    )
    async def embed(request: Request) -> Response:
        return _serve(browser_assets.page("embed.html"), request, page_headers)

    if cfg.demo_site_key:

        @app.get(
            "/demo",
            tags=["browser"],
            summary="A demo page with the snippet (development)",
            **served(HTML, "the page", revalidates=False),
        )
        async def demo(request: Request) -> Response:
            html = browser_assets.page("demo.html").body.decode()
            html = html.replace("{{SITE_KEY}}", cfg.demo_site_key or "")
            return Response(
                content=html,
                media_type="text/html; charset=utf-8",
                headers={"Cache-Control": "no-cache"},
            )

        static_file(app, "demo.css")
        static_file(app, "demo.js")
