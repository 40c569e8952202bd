"""The asset proxy's HTTP service (FastAPI, served by Hypercorn's trio worker).

Endpoints:

* ``GET /v1/stylesheet?u=&s=&e=&sig=``: a signed stylesheet, fetched (text/css only) under
  the SSRF policy, rewritten by :func:`proxy.rewrite.rewrite`, served as
  ``text/css; charset=utf-8``.
* ``GET /v1/asset?u=&s=&e=&sig=``: a signed font or image (SVG too, with headers that keep
  it an inert image: see :mod:`proxy.content_policy`), or a stylesheet: a
  ``text/css`` answer goes through the same rewriter. Design choice: the rewriter signs
  *every* sub-resource (``url()`` and ``@import``) towards ``/v1/asset`` for the same
  session, so ``@import``-ed stylesheets arrive rewritten through ``/v1/asset``.
* ``POST /v1/rewrite``: ``Authorization: Bearer <agent join token>`` and JSON
  ``{"css", "base_url"}``; answers ``{"css", "notes"}`` with url()s signed for the token's
  session.
* ``POST /v1/sign``: ``Authorization: Bearer <agent join token>`` and JSON ``{"urls"}``.

Only an agent join token authorizes signing (rewrite, sign); a signed asset URL authorizes
only fetching its own URL (stylesheet, asset), so holding one signs nothing new.
* ``GET /healthz``.

Every refusal is JSON ``{"error": {"code", "message"}}`` with a 4xx/5xx status.

Caching: results (rewritten CSS, or asset bytes) live in a ``ByteLRU`` keyed by
``(url, session)``; identical concurrent requests share one origin fetch (``SingleFlight``).
A fresh entry is served as is; a stale one with an ETag / Last-Modified is revalidated with a
conditional fetch (304 -> reuse). Rewritten CSS embeds signed URLs that expire after
``url_ttl``, so a rewritten entry is reused only while its embedded URLs have at least half
their lifetime left; otherwise it is fetched and rewritten afresh.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect

from gateway import build_info, tokens
from gateway.http_observe import HttpObserver
from gateway.tokens import Keyring

from . import metrics, signing
from .address_policy import Refused, parse_target
from .cache import ByteLRU, Entry, SingleFlight, freshness
from .config import ProxyConfig
from .content_policy import ASSET_TYPES, CSS_TYPE, STYLESHEET_TYPES, served_headers
from .fetch import Resolver, fetch
from .rewrite import rewrite

DEFAULT_MAX_AGE = 60
MAX_SIGN_URLS = 512  # per POST /v1/sign
MAX_SIGN_URL_CHARS = 8192

_STATUS = {
    "timeout": 504,
    "too_large": 502,
    "bad_encoding": 502,
    "upstream_status": 502,
    "upstream_error": 502,
    "dns_error": 502,
    "no_address": 502,
    "bad_content_type": 415,
    "too_many_redirects": 502,
}  # every other Refused code (address_refused, bad_scheme, bad_url, ...) -> 403
_SIG_STATUS = {"missing_param": 401, "bad_param": 401}  # others -> 403


class ProxyError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


log = structlog.get_logger("proxy")


class ProxyService:
    def __init__(self, cfg: ProxyConfig, resolve: Resolver | None = None) -> None:
        self.cfg = cfg
        self.resolve = resolve
        self.key = cfg.keyring or Keyring((("ephemeral", secrets.token_bytes(32)),))
        self.cache = ByteLRU(cfg.cache_bytes)
        self.signed_until: dict[tuple[str, str], float] = {}
        self.flight = SingleFlight()

    def verify(self, query) -> tuple[str, str]:
        try:
            return signing.verify(self.key, query, time.time())
        except signing.SignatureError as err:
            raise ProxyError(_SIG_STATUS.get(err.code, 403), err.code, err.message) from None

    def rewrite_css(self, css: bytes | str, base_url: str, session: str) -> tuple[str, list]:
        expires = int(time.time()) + self.cfg.url_ttl
        text = css if isinstance(css, str) else css.decode("utf-8-sig", errors="replace")

        def sign(url: str) -> str:
            return self.cfg.public_url + signing.sign(self.key, url, session, expires)

        t0 = time.perf_counter()
        result = rewrite(text, base_url, sign)
        metrics.REWRITE_SECONDS.observe(time.perf_counter() - t0)
        for note in result.notes:
            log.info("rewrite_note", base_url=base_url, note=note)
        return result.css, result.notes

    def sign_url(self, url: object, session: str) -> str | None:
        """A signed proxy URL for an absolute http(s) URL, or None for anything else."""
        if not isinstance(url, str) or len(url) > MAX_SIGN_URL_CHARS:
            return None
        try:
            parse_target(url)
        except Refused:
            return None
        expires = int(time.time()) + self.cfg.url_ttl
        return self.cfg.public_url + signing.sign(self.key, url, session, expires)

    async def _fetch(self, url: str, accept, conditional=None):
        metrics.ORIGIN_FETCHES.inc()
        try:
            return await fetch(
                url,
                allow=self.cfg.allow,
                resolve=self.resolve,
                max_bytes=self.cfg.max_css_bytes,
                timeout=self.cfg.timeout,
                max_redirects=self.cfg.max_redirects,
                accept=accept,
                conditional=conditional,
            )
        except Refused as err:
            log.info("fetch_refused", url=url, code=err.code, reason=err.message)
            raise ProxyError(_STATUS.get(err.code, 403), err.code, err.message) from None

    async def get(self, url: str, session: str, accept) -> Entry:
        key = (url, session)
        now = time.time()
        entry = self.cache.get(key)
        usable = entry is not None and entry.content_type in accept
        renew_at = self.signed_until.get(key, float("inf")) - self.cfg.url_ttl / 2
        if usable and now >= renew_at:
            usable = False  # embedded signed URLs are too close to expiry
        if usable and entry.is_fresh(now):
            metrics.CACHE.labels(result="hit").inc()
            return entry
        metrics.CACHE.labels(result="revalidate" if usable else "miss").inc()
        if not usable:
            entry = None
        try:
            return await self.flight.run(
                (key, frozenset(accept)), lambda: self._load(key, entry, accept)
            )
        except RuntimeError as err:  # the shared fetch's leader was cancelled
            raise ProxyError(503, "retry", f"shared fetch was abandoned ({err}); retry") from None

    def _cap(self, fresh: float | None, signed_until: float | None) -> float | None:
        """Rewritten CSS stays fresh at most until its signed URLs reach half their TTL."""
        if fresh is None or signed_until is None:
            return fresh
        return min(fresh, signed_until - self.cfg.url_ttl / 2)

    async def _load(self, key: tuple[str, str], old: Entry | None, accept) -> Entry:
        url, session = key
        conditional = None
        if old is not None and (old.etag or old.last_modified):
            conditional = {"etag": old.etag, "last_modified": old.last_modified}
        result = await self._fetch(url, accept, conditional)
        now = time.time()
        if result.status == 304 and old is not None:
            fresh = self._cap(freshness(result.headers, now), self.signed_until.get(key))
            entry = Entry(old.value, old.content_type, old.etag, old.last_modified, fresh)
            self.cache.put(key, entry)
            return entry
        body = result.body
        signed_until = float("inf")
        if result.content_type == CSS_TYPE:
            css, _notes = self.rewrite_css(body, result.url, session)
            body = css.encode()
            signed_until = now + self.cfg.url_ttl
        entry = Entry(
            body,
            result.content_type,
            result.headers.get("etag"),
            result.headers.get("last-modified"),
            self._cap(freshness(result.headers, now), signed_until),
        )
        self.cache.put(key, entry)
        self.signed_until[key] = signed_until
        if len(self.signed_until) > 4 * max(1, len(self.cache)) + 64:
            live = set(self.cache.keys())
            self.signed_until = {k: v for k, v in self.signed_until.items() if k in live}
        return entry

    def respond(self, entry: Entry, *, asset: bool) -> Response:
        now = time.time()
        max_age = DEFAULT_MAX_AGE
        if entry.expires_at is not None and entry.expires_at > now:
            max_age = int(entry.expires_at - now)
        headers = {
            **served_headers(entry.content_type),
            "Cache-Control": f"private, max-age={max_age}",
            "ETag": '"' + hashlib.sha256(entry.value).hexdigest()[:32] + '"',
        }
        if asset:
            headers["Access-Control-Allow-Origin"] = "*"
        return Response(entry.value, headers=headers)


def create_app(cfg: ProxyConfig, *, resolve: Resolver | None = None) -> FastAPI:
    svc = ProxyService(cfg, resolve)
    app = FastAPI(title="cobrowse asset proxy", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.proxy = svc
    build_info.register("proxy")

    @app.exception_handler(ProxyError)
    async def _proxy_error(request: Request, exc: ProxyError) -> JSONResponse:
        metrics.REFUSED.labels(code=exc.code).inc()
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal_error", path=request.url.path, error=repr(exc))
        return _error(500, "internal", "internal error")

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"ok": True}

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/stylesheet")
    async def stylesheet(request: Request) -> Response:
        url, session = svc.verify(_query(request))
        entry = await svc.get(url, session, STYLESHEET_TYPES)
        return svc.respond(entry, asset=False)

    @app.get("/v1/asset")
    async def asset(request: Request) -> Response:
        url, session = svc.verify(_query(request))
        entry = await svc.get(url, session, ASSET_TYPES)
        return svc.respond(entry, asset=True)

    @app.post("/v1/rewrite")
    async def rewrite_endpoint(request: Request) -> JSONResponse:
        # Only an agent's join token authorizes rewriting: the rewrite signs every url() in
        # the posted CSS, so accepting an asset signature here (as once done) let anyone who
        # saw one signed URL in a proxied stylesheet sign any URL forever (issue 12, item 5).
        session = require_agent(request)
        limit = cfg.max_css_bytes
        body = await read_json_object(
            request, 2 * limit + 65536, f"request body over the CSS limit ({limit} B)"
        )
        css, base_url = body.get("css"), body.get("base_url")
        for name, value in (("css", css), ("base_url", base_url)):
            if not isinstance(value, str):
                raise ProxyError(400, "bad_param", f"{name!r} must be str")
        if len(css.encode("utf-8", errors="replace")) > limit:
            raise ProxyError(413, "too_large", f"css is over the limit of {limit} bytes")
        if not base_url:
            raise ProxyError(400, "bad_param", "'base_url' is empty")
        out, notes = svc.rewrite_css(css, base_url, session)
        return JSONResponse({"css": out, "notes": notes})

    @app.post("/v1/sign")
    async def sign_endpoint(request: Request) -> JSONResponse:
        # The viewer turns the visitor's URLs into signed proxy URLs; only an agent of the
        # session may, so the proxy never signs for anyone who could not see the page.
        session = require_agent(request)
        body = await read_json_object(request, 1024 * 1024, "body over 1 MiB")
        urls = body.get("urls")
        if not isinstance(urls, list) or len(urls) > MAX_SIGN_URLS:
            raise ProxyError(400, "bad_param", f"'urls' must be a list of at most {MAX_SIGN_URLS}")
        return JSONResponse({"urls": [svc.sign_url(u, session) for u in urls]})

    def require_agent(request: Request) -> str:
        """The session of the request's agent join token: the one credential that lets a
        caller have URLs signed. A signed asset URL authorizes fetching that URL only."""
        session = agent_session(request)
        if session is None:
            raise ProxyError(
                401,
                "missing_token",
                "Authorization: Bearer <agent join token> needed; "
                "an asset signature authorizes only fetching its own URL",
            )
        return session

    def agent_session(request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        if not auth:
            return None
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or cfg.token_keys is None:
            raise ProxyError(401, "bad_token", "only Bearer agent join tokens are accepted")
        sid = tokens.peek_sid(token.strip())
        try:
            tokens.verify(
                cfg.token_keys, token.strip(), sid=sid or "", role="agent", now=time.time()
            )
        except tokens.TokenError as err:
            raise ProxyError(401, "bad_token", err.args[-1] if err.args else "bad token") from None
        return sid

    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(cfg.cors_origins),
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type"],
        max_age=600,
    )
    # Outermost: every answer counted, timed and logged by route (CORS preflights too).
    app.add_middleware(HttpObserver, metrics=metrics.HTTP, forwarded_hops=cfg.forwarded_hops)
    return app


async def read_json_object(request: Request, max_bytes: int, too_large: str) -> dict:
    """The request's JSON object, read in chunks and refused (413) as soon as it passes
    `max_bytes`, so no client can make the proxy hold more than that."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise ProxyError(413, "too_large", too_large)
    raw = bytearray()
    try:
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > max_bytes:
                raise ProxyError(413, "too_large", too_large)
    except ClientDisconnect:  # the client left mid-body: nothing to answer, nothing broken
        raise ProxyError(
            400, "client_disconnected", "the client left before its body ended"
        ) from None
    try:
        body = json.loads(bytes(raw))
    except ValueError:
        raise ProxyError(400, "bad_json", "body is not JSON") from None
    if not isinstance(body, dict):
        raise ProxyError(400, "bad_json", "body must be a JSON object")
    return body


def _query(request: Request) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in request.query_params.multi_items():
        out.setdefault(name, []).append(value)
    return out
