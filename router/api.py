"""The router's HTTP API: sessions, short codes, join tokens, the cluster's gateways.

A FastAPI app served by Hypercorn's trio worker, so everything runs on trio (Starlette runs on
anyio). NATS is reached only through `await bridge.call(...)` (nats-py under trio-asyncio).
Handlers are thin: the session logic is in `router.sessions`, tokens in `gateway.tokens`, the
gateway order in `gateway.membership`. Every error is JSON
`{"error": {"code": "<stable code>", "message": "<text>"}}`; bad input is always a 4xx.

Auth: a public *site key* (in the page's script tag) creates sessions; a secret *agent API
key* (`Authorization: Bearer ...`) looks up codes and manages sessions; the *admin key* also
reads the cluster and drains gateways. See docs/api.md.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures, whose
# dependencies are local to create_app, so annotations must be evaluated where written.

import hashlib
import hmac
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import limits
import nats.errors
import structlog
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from gateway import membership, session_store, streams, tokens
from gateway.forwarded import forwarded_client
from gateway.session_store import SessionMeta

from . import admin, browser_routes, sessions, shortcodes
from .config import RouterConfig

log = structlog.get_logger("router.api")

API_VERSION = "1.0.0"

DESCRIPTION = """\
Control plane of a cobrowse cluster: create co-browsing sessions, join them as an agent by
short code, list, inspect and end sessions, and see the cluster's gateways.

* **Site key** (public, in the page's script tag): `POST /v1/sessions` body field `site_key`.
* **Agent API key** (secret): `Authorization: Bearer <key>` on every other `/v1` endpoint.
* **Join token** of a session: `Authorization: Bearer <token>` to end that session (DELETE)
  or find its gateways (connect).
* **Admin key** (secret): `Authorization: Bearer <key>` on `/v1/cluster` and the drain endpoint.

Every error is `{"error": {"code": "...", "message": "..."}}` with a stable `code`.
Times are Unix seconds. See docs/api.md for the rules (short codes, rate limits).
"""


# ---- errors -----------------------------------------------------------------------------


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


class FieldError(BaseModel):
    loc: str = Field(description="where: e.g. `body.code`, `path.session_id`")
    message: str
    type: str


class ErrorDetail(BaseModel):
    code: str = Field(description="stable, machine-readable error code")
    message: str = Field(description="human-readable explanation")
    fields: list[FieldError] | None = Field(
        default=None, description="`invalid_request` only: what is wrong with which field"
    )


class ErrorBody(BaseModel):
    error: ErrorDetail


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message, **extra}
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _doc(*codes: tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for a route's errors: status -> the error codes it may carry."""
    out: dict[int, list[str]] = {}
    for status, code in codes:
        out.setdefault(status, []).append(code)
    return {
        status: {"model": ErrorBody, "description": "error code: " + ", ".join(sorted(names))}
        for status, names in out.items()
    }


INVALID = (422, "invalid_request")
TOO_LARGE = (413, "body_too_large")
UNAVAILABLE = (503, "unavailable")
BAD_API_KEY = (401, "bad_api_key")


def _field_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    out = []
    for err in exc.errors()[:20]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        out.append(
            {"loc": loc, "message": str(err.get("msg", ""))[:200], "type": err.get("type", "")}
        )
    return out


# ---- rate limits ------------------------------------------------------------------------


class RateLimits:
    """Moving-window limits (the `limits` package, in memory: per router process)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._clock = clock

    def check(self, *rules: tuple[limits.RateLimitItem, str, str]) -> float | None:
        """Count one request against every (limit, scope, identity) rule, or none if any is
        exhausted; return None when allowed, else seconds until a retry can succeed."""
        denied = [r for r in rules if not self._limiter.test(*r)]
        if not denied:
            for r in rules:
                self._limiter.hit(*r)
            return None
        wait = 1.0
        for item, *ids in denied:
            reset = self._limiter.get_window_stats(item, *ids).reset_time
            wait = max(wait, reset - self._clock())
        return wait


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


def key_id(key: str) -> str:
    """A stable id for a secret key that is safe to keep in memory and logs."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def find_key(keys: dict[str, str], presented: str | None) -> str | None:
    """The configured key equal to `presented` (constant-time per key), or None."""
    if not presented:
        return None
    raw = presented.encode()
    found = None
    for key in keys:
        if hmac.compare_digest(key.encode(), raw):
            found = key
    return found


def normalize_code(code: str) -> str:
    """What people type: '123 456' and '123-456' mean 123456."""
    return "".join(c for c in code if c not in " -\t")


# ---- models -----------------------------------------------------------------------------

SessionIdPath = Annotated[
    str,
    Path(description="session id (16 characters of `[A-Za-z0-9_-]` for sessions made here)"),
]


class CreateSessionRequest(BaseModel):
    site_key: str = Field(
        min_length=1,
        max_length=256,
        description="the site's public key",
        examples=["pk_shop_1a2b3c4d"],
    )


class CreateSessionResponse(BaseModel):
    session_id: str
    visitor_token: str = Field(description="join token for the visitor's WebSocket `hello`")
    token_expires_at: int = Field(description="Unix seconds")
    gateways: list[str] = Field(description="gateway WebSocket URLs, try in this order")
    short_code: str = Field(description="six digits the visitor reads out to an agent")
    code_expires_at: float


class LookupRequest(BaseModel):
    code: str = Field(
        min_length=1, max_length=32, description="six digits; spaces and dashes are ignored"
    )


class LookupResponse(BaseModel):
    session_id: str
    agent_token: str = Field(description="join token for the agent's WebSocket `hello`")
    token_expires_at: int = Field(description="Unix seconds")
    gateways: list[str]
    proxy: str | None = Field(None, description="the asset proxy's base URL, for the viewer")


class ConnectResponse(BaseModel):
    session_id: str
    role: str = Field(description="the role the join token was issued for")
    gateways: list[str] = Field(description="gateway WebSocket URLs, try in this order")
    proxy: str | None = Field(None, description="the asset proxy's base URL, for the viewer")


class SessionSummary(BaseModel):
    session_id: str
    site: str | None
    created: float
    epoch: int
    agents: int = Field(description="agents that have joined")
    code: str | None


class SessionList(BaseModel):
    sessions: list[SessionSummary] = Field(description="newest first")
    count: int = Field(description="active sessions matching, before `limit`")


class SessionDetail(BaseModel):
    session_id: str
    site: str | None
    created: float
    ended: bool
    epoch: int = Field(description="the visitor's current epoch (0: no visitor yet)")
    agents: dict[str, float] = Field(description="agent id -> when it joined")
    durable: dict[str, int] = Field(
        description="last acked seq per sender when its connection ended"
    )
    snapshot: bool = Field(description="a full snapshot is recorded")
    code: str | None
    code_expires_at: float | None = Field(
        description="until when the code lets agents join (null: no code or agents joined)"
    )


class EndedResponse(BaseModel):
    session_id: str
    ended: bool


@dataclass(frozen=True)
class Ender:
    """Who ends a session: an agent API key's id, or `visitor-token`/`agent-token`. A token
    vouches that the session existed even when its metadata has expired."""

    who: str
    vouched: bool


class GatewayOut(BaseModel):
    id: str
    url: str
    admin_url: str | None
    state: str = Field(description="active | draining")
    connections: int
    load: float
    updated: float


class ClusterResponse(BaseModel):
    gateways: list[GatewayOut]


class WorkerDrain(BaseModel):
    gateway: str = Field(description="the process's id: the gateway's, or a worker's (`gw-1.w0`)")
    state: str
    connections: int = Field(description="its connections when the drain began")


class DrainResponse(BaseModel):
    ok: bool
    gateway: str
    state: str = Field(description="draining (or mixed, when its processes disagree)")
    connections: int = Field(description="the sum over every process that answered")
    workers: list[WorkerDrain] = Field(description="each process's own answer")


class Health(BaseModel):
    status: str
    nats: str


# ---- body size limit --------------------------------------------------------------------


class BodyLimit:
    """Refuse request bodies above `limit` bytes with 413, before any parsing."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def _refuse(self, scope, receive, send) -> None:
        resp = error_response(413, "body_too_large", f"request body larger than {self.limit} bytes")
        await resp(scope, receive, send)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.limit:
                    await self._refuse(scope, receive, send)
                    return
        body = bytearray()
        first = None
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                first = msg
                break
            body += msg.get("body", b"")
            if len(body) > self.limit:
                await self._refuse(scope, receive, send)
                return
            if not msg.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                if first is not None:
                    return first
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


# ---- the app ----------------------------------------------------------------------------


def create_app(
    cfg: RouterConfig,
    bridge,
    kv_sessions,
    kv_codes,
    kv_gateways,
    *,
    clock: Callable[[], float] = time.time,
    rng: random.Random | random.SystemRandom | None = None,
) -> FastAPI:
    app = FastAPI(
        title="cobrowse router API",
        version=API_VERSION,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
    )
    codes_rng = rng or random.SystemRandom()
    limiter = RateLimits(clock)
    lookup_per_key = limits.parse(cfg.lookup_limit_per_key)
    lookup_per_addr = limits.parse(cfg.lookup_limit_per_address)
    create_per_addr = limits.parse(cfg.create_limit_per_address)
    bearer = HTTPBearer(
        auto_error=False,
        scheme_name="ApiKey",
        description="an agent API key, or the admin key where stated",
    )

    # -- error handlers --

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, message = {
            400: ("invalid_request", f"unreadable request body: {exc.detail}"),
            404: ("not_found", f"no endpoint {request.url.path}"),
            405: ("method_not_allowed", f"{request.method} is not allowed on {request.url.path}"),
        }.get(exc.status_code, (f"http_{exc.status_code}", str(exc.detail)))
        return error_response(exc.status_code, code, message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = _field_errors(exc)
        first = f"{fields[0]['loc']}: {fields[0]['message']}" if fields else "invalid request"
        return error_response(422, "invalid_request", first, fields=fields)

    @app.exception_handler(nats.errors.Error)
    async def _nats(request: Request, exc: Exception) -> JSONResponse:
        log.warning("nats_unavailable", path=request.url.path, error=repr(exc))
        return error_response(
            503, "unavailable", "session storage is unavailable, retry", {"Retry-After": "1"}
        )

    @app.exception_handler(TimeoutError)
    async def _timeout(request: Request, exc: Exception) -> JSONResponse:
        return await _nats(request, exc)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal_error", path=request.url.path, error=repr(exc))
        return error_response(500, "internal", "internal error")

    # -- helpers --

    def client_address(request: Request) -> str:
        peer = request.client.host if request.client else "unknown"
        return forwarded_client(
            request.headers.getlist("x-forwarded-for"), peer, cfg.forwarded_hops
        )

    def agent_key(
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> str:
        key = find_key(cfg.agent_keys, creds.credentials if creds else None)
        if key is None:
            raise ApiError(
                401,
                "bad_api_key",
                "missing or unknown API key (Authorization: Bearer <agent API key>)",
                {"WWW-Authenticate": "Bearer"},
            )
        return key_id(key)

    def agent_or_admin(
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> str:
        presented = creds.credentials if creds else None
        if cfg.admin_key and find_key({cfg.admin_key: "admin"}, presented):
            return "admin"
        return agent_key(creds)

    def admin_only(
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> str:
        presented = creds.credentials if creds else None
        if cfg.admin_key and find_key({cfg.admin_key: "admin"}, presented):
            return "admin"
        if find_key(cfg.agent_keys, presented):
            raise ApiError(403, "admin_only", "this endpoint needs the admin key")
        raise ApiError(
            401, "bad_api_key", "missing or unknown admin key", {"WWW-Authenticate": "Bearer"}
        )

    def limited(*rules: tuple[limits.RateLimitItem, str, str]) -> None:
        wait = limiter.check(*rules)
        if wait is not None:
            raise ApiError(
                429,
                "rate_limited",
                f"too many requests; retry in {retry_after(wait)} s",
                {"Retry-After": retry_after(wait)},
            )

    async def gateway_urls(sid: str) -> list[str]:
        gws = await bridge.call(membership.list_gateways, kv_gateways)
        urls = membership.urls_for(sid, gws)
        if not urls:
            raise ApiError(
                503, "no_gateways", "no active gateway in the cluster", {"Retry-After": "2"}
            )
        return urls

    def token_role(presented: str, sid: str) -> str | None:
        """The role of a join token of session `sid` (expired ones count: a session outlives
        the join token it started with), or None."""
        for candidate in ("agent", "visitor"):
            try:
                tokens.verify(
                    cfg.keyring, presented, sid=sid, role=candidate, now=clock(), allow_expired=True
                )
            except tokens.TokenError:
                continue
            return candidate
        return None

    def key_or_session_token(
        session_id: SessionIdPath,
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Ender:
        """An agent API key, or a join token (visitor or agent) of this very session: who
        may end it."""
        presented = creds.credentials if creds else ""
        if tokens.peek_sid(presented) is None:
            return Ender(agent_key(creds), vouched=False)
        role = token_role(presented, session_id)
        if role is None:
            raise ApiError(
                401,
                "bad_token",
                "the token is not a join token of this session",
                {"WWW-Authenticate": "Bearer"},
            )
        return Ender(f"{role}-token", vouched=True)

    kv_ended_handle: list[Any] = []

    async def kv_ended() -> Any:
        """The ended bucket, opened (or made, with a TTL outliving the join tokens minted
        here; gateways raise it for their resume tokens) at the first end."""
        if not kv_ended_handle:
            kv_ended_handle.append(
                await bridge.call(
                    session_store.ensure_ended_bucket,
                    bridge.js,
                    session_store.ended_ttl(cfg.token_ttl),
                    cfg.stream.storage,
                    cfg.stream.replicas,
                )
            )
        return kv_ended_handle[0]

    async def load_session(sid: str, *, say_ended: bool = False) -> SessionMeta:
        """The session's metadata, or 404. With `say_ended`, a session whose metadata expired
        (after the stream's max age) but that was ended answers 410: its ended record lives as
        long as any of its tokens, and "no such session" would read as "never ended"."""
        valid = sessions.valid_session_id(sid)
        meta = await bridge.call(session_store.load, kv_sessions, sid) if valid else None
        if meta is None:
            if say_ended and valid:
                if await bridge.call(session_store.load_ended, await kv_ended(), sid):
                    raise ApiError(410, "session_ended", "this session has ended (details expired)")
            raise ApiError(404, "unknown_session", "no such session")
        return meta

    # -- routes --

    @app.post(
        "/v1/sessions",
        status_code=201,
        response_model=CreateSessionResponse,
        tags=["sessions"],
        summary="Create a session (visitor side, site key)",
        responses=_doc(
            (401, "bad_site_key"),
            (429, "rate_limited"),
            (503, "no_gateways"),
            UNAVAILABLE,
            INVALID,
            TOO_LARGE,
        ),
    )
    async def create_session(body: CreateSessionRequest, request: Request) -> CreateSessionResponse:
        site = cfg.site_keys.get(body.site_key)
        if site is None:
            raise ApiError(401, "bad_site_key", "unknown site key")
        limited((create_per_addr, "create-addr", client_address(request)))
        sid = sessions.new_session_id()
        urls = await gateway_urls(sid)
        now = clock()
        try:
            made = await bridge.call(
                sessions.create,
                kv_sessions,
                kv_codes,
                sid,
                site=site,
                now=now,
                code_ttl=cfg.code_ttl,
                rng=codes_rng,
            )
        except sessions.CodeSpaceExhausted as exc:
            raise ApiError(503, "unavailable", str(exc), {"Retry-After": "5"}) from None
        token = tokens.mint(cfg.keyring, sid=sid, role="visitor", now=now, ttl=cfg.token_ttl)
        log.info("session_created", sid=sid, site=site)
        return CreateSessionResponse(
            session_id=sid,
            visitor_token=token,
            token_expires_at=int(now + cfg.token_ttl),
            gateways=urls,
            short_code=made.code,
            code_expires_at=sessions.code_expires_at(made.meta, cfg.code_ttl),
        )

    @app.post(
        "/v1/sessions/lookup",
        response_model=LookupResponse,
        tags=["sessions"],
        summary="Join a session by short code (agent API key)",
        responses=_doc(
            BAD_API_KEY,
            (404, "unknown_code"),
            (429, "rate_limited"),
            (503, "no_gateways"),
            UNAVAILABLE,
            INVALID,
            TOO_LARGE,
        ),
    )
    async def lookup(
        body: LookupRequest, request: Request, key: Annotated[str, Depends(agent_key)]
    ) -> LookupResponse:
        limited(
            (lookup_per_key, "lookup-key", key),
            (lookup_per_addr, "lookup-addr", client_address(request)),
        )
        code = normalize_code(body.code)
        now = clock()
        found = None
        if shortcodes.is_code(code):
            found = await bridge.call(
                sessions.resolve_code, kv_sessions, kv_codes, code, now, cfg.code_ttl
            )
        if found is None:
            raise ApiError(404, "unknown_code", "no session has this code (or it has expired)")
        sid, _ = found
        urls = await gateway_urls(sid)
        token = tokens.mint(cfg.keyring, sid=sid, role="agent", now=now, ttl=cfg.token_ttl)
        log.info("code_resolved", sid=sid, key=key)
        return LookupResponse(
            session_id=sid,
            agent_token=token,
            token_expires_at=int(now + cfg.token_ttl),
            gateways=urls,
            proxy=cfg.proxy_url,
        )

    @app.post(
        "/v1/sessions/{session_id}/connect",
        response_model=ConnectResponse,
        tags=["sessions"],
        summary="Where to connect, for a holder of a join token (browser clients)",
        responses=_doc(
            (401, "bad_token"), (404, "unknown_session"), (503, "no_gateways"), UNAVAILABLE
        ),
    )
    async def connect(
        session_id: Annotated[str, Path(max_length=64)],
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> ConnectResponse:
        # A page that reloads, or an embed opened with a token, needs the session's current
        # gateway order; the join token itself is the credential (expired ones still count:
        # the session resumes on its resume token).
        role = token_role(creds.credentials if creds else "", session_id)
        if role is None:
            raise ApiError(
                401,
                "bad_token",
                "missing or invalid join token for this session",
                {"WWW-Authenticate": "Bearer"},
            )
        meta = await load_session(session_id)
        if meta.ended:
            raise ApiError(404, "unknown_session", "the session has ended")
        return ConnectResponse(
            session_id=session_id,
            role=role,
            gateways=await gateway_urls(session_id),
            proxy=cfg.proxy_url,
        )

    @app.get(
        "/v1/sessions",
        response_model=SessionList,
        tags=["sessions"],
        summary="List active sessions (agent API key)",
        responses=_doc(BAD_API_KEY, UNAVAILABLE, INVALID),
    )
    async def list_sessions(
        key: Annotated[str, Depends(agent_key)],
        site: Annotated[str | None, Query(max_length=256, description="only this site")] = None,
        limit: Annotated[int, Query(ge=1, le=1000, description="at most this many")] = 200,
    ) -> SessionList:
        found = await bridge.call(sessions.list_sessions, kv_sessions)
        if site is not None:
            found = [(sid, m) for sid, m in found if m.site == site]
        found.sort(key=lambda item: (-item[1].created, item[0]))
        return SessionList(
            count=len(found),
            sessions=[
                SessionSummary(
                    session_id=sid,
                    site=m.site,
                    created=m.created,
                    epoch=m.epoch,
                    agents=len(m.agents),
                    code=m.code,
                )
                for sid, m in found[:limit]
            ],
        )

    @app.get(
        "/v1/sessions/{session_id}",
        response_model=SessionDetail,
        tags=["sessions"],
        summary="Inspect a session (agent API key)",
        responses=_doc(
            BAD_API_KEY, (404, "unknown_session"), (410, "session_ended"), UNAVAILABLE, INVALID
        ),
    )
    async def inspect(
        session_id: SessionIdPath, key: Annotated[str, Depends(agent_key)]
    ) -> SessionDetail:
        m = await load_session(session_id, say_ended=True)
        expires = None
        if m.code and not m.agents and not m.ended:
            expires = sessions.code_expires_at(m, cfg.code_ttl)
        return SessionDetail(
            session_id=session_id,
            site=m.site,
            created=m.created,
            ended=m.ended,
            epoch=m.epoch,
            agents=m.agents,
            durable=m.durable,
            snapshot=m.snap is not None,
            code=m.code,
            code_expires_at=expires,
        )

    @app.delete(
        "/v1/sessions/{session_id}",
        response_model=EndedResponse,
        tags=["sessions"],
        summary="End a session (agent API key, or a join token of the session)",
        responses=_doc(
            BAD_API_KEY, (401, "bad_token"), (404, "unknown_session"), UNAVAILABLE, INVALID
        ),
    )
    async def end_session(
        session_id: SessionIdPath, by: Annotated[Ender, Depends(key_or_session_token)]
    ) -> EndedResponse:
        meta = None
        if sessions.valid_session_id(session_id):
            meta = await bridge.call(
                sessions.mark_ended,
                kv_sessions,
                await kv_ended(),
                session_id,
                clock(),
                vouched=by.vouched,
            )
        if meta is None:
            raise ApiError(404, "unknown_session", "no such session")
        # Gateways close the session's connections (4004 session_ended) and refuse new ones.
        await bridge.publish_core(streams.subject_ctl(session_id), b'{"op":"end"}')
        await bridge.call(bridge.js.purge_stream, cfg.stream.stream, subject=f"cb.{session_id}.>")
        if meta.code:
            await bridge.call(sessions.release_code, kv_codes, meta.code, session_id)
        log.info("session_ended", sid=session_id, by=by.who)
        return EndedResponse(session_id=session_id, ended=True)

    @app.get(
        "/v1/cluster",
        response_model=ClusterResponse,
        tags=["cluster"],
        summary="The cluster's gateways (agent API key or admin key)",
        responses=_doc(BAD_API_KEY, UNAVAILABLE),
    )
    async def cluster(key: Annotated[str, Depends(agent_or_admin)]) -> ClusterResponse:
        gws = await bridge.call(membership.list_gateways, kv_gateways)
        return ClusterResponse(
            gateways=[
                GatewayOut(
                    id=g.id,
                    url=g.url,
                    admin_url=g.admin_url,
                    state=g.state,
                    connections=g.connections,
                    load=g.load,
                    updated=g.updated,
                )
                for g in gws
            ]
        )

    @app.post(
        "/v1/cluster/gateways/{gateway_id}/drain",
        response_model=DrainResponse,
        tags=["cluster"],
        summary="Drain a gateway (admin key)",
        responses=_doc(
            BAD_API_KEY,
            (403, "admin_only"),
            (404, "unknown_gateway"),
            (502, "bad_gateway_reply"),
            UNAVAILABLE,
            INVALID,
        ),
    )
    async def drain(
        gateway_id: Annotated[
            str,
            Path(
                description="a gateway's id (`[A-Za-z0-9_-]{1,64}`): drains all its workers; "
                "or a worker's id as `GET /v1/cluster` lists it (`gw-1.w0`): drains that one"
            ),
        ],
        key: Annotated[str, Depends(admin_only)],
    ) -> DrainResponse:
        if not admin.valid_gateway_id(gateway_id):
            raise ApiError(404, "unknown_gateway", f"no gateway {gateway_id!r}")
        try:
            gws = await bridge.call(membership.list_gateways, kv_gateways)
            expect = len(membership.workers_of(gateway_id, gws)) or None
        except Exception:  # the registry unreachable: gather for a moment instead
            expect = None
        try:
            reply = await bridge.call(admin.request_drain, bridge.nc, gateway_id, 5.0, expect)
        except admin.NoAnswer as exc:
            raise ApiError(404, "unknown_gateway", str(exc)) from None
        except admin.BadReply as exc:
            raise ApiError(502, "bad_gateway_reply", str(exc)) from None
        log.info("gateway_drain_requested", gateway=gateway_id)
        return DrainResponse(**reply)

    @app.get("/healthz", response_model=Health, tags=["health"], summary="Liveness")
    async def healthz() -> Health:
        return Health(status="ok", nats=_nats_state(bridge))

    @app.get(
        "/readyz",
        response_model=Health,
        tags=["health"],
        summary="Readiness: NATS is connected",
        responses=_doc((503, "not_ready")),
    )
    async def readyz() -> Health:
        state = _nats_state(bridge)
        if state != "connected":
            raise ApiError(503, "not_ready", f"NATS is {state}")
        return Health(status="ok", nats=state)

    browser_routes.add(app, cfg)
    app.add_middleware(BodyLimit, limit=cfg.max_body_bytes)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(cfg.cors_origins),
        allow_methods=["GET", "POST", "DELETE"],
        allow_headers=["Authorization", "Content-Type"],
        max_age=600,
    )
    return app


def _nats_state(bridge) -> str:
    nc = bridge.nc
    if nc.is_connected:
        return "connected"
    if nc.is_reconnecting:
        return "reconnecting"
    return "closed"
