"""`/v1/sessions`: create a session (the visitor's snippet, site key), join one by short code
(an agent, API key), find a session's gateways (a join token), list, inspect and end sessions.
The session logic itself is in `router.sessions`; these handlers check, call and shape."""

from __future__ import annotations

import time
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Path, Query, Request

from gateway import agent_roster, membership, session_store, streams, tokens
from gateway.forwarded import forwarded_client
from gateway.session_store import SessionMeta

from .. import listing, metrics, sessions, shortcodes
from .auth import (
    CHALLENGE,
    AgentKey,
    Credentials,
    Ender,
    agent,
    key_or_session_token,
    presented,
    token_role,
)
from .deps import ApiDeps, Deps
from .errors import (
    BAD_API_KEY,
    INVALID,
    TOO_LARGE,
    UNAVAILABLE,
    UNREADABLE,
    ApiError,
    doc,
)
from .models import (
    ConnectResponse,
    CreateSessionRequest,
    CreateSessionResponse,
    EndedResponse,
    LookupRequest,
    LookupResponse,
    SessionDetail,
    SessionIdPath,
    SessionList,
    SessionSummary,
)

log = structlog.get_logger("router.api")

routes = APIRouter()


def client_address(deps: ApiDeps, request: Request) -> str:
    """The client's address for the per-address limits, behind `COBROWSE_FORWARDED_HOPS`
    trusted proxies."""
    peer = request.client.host if request.client else "unknown"
    return forwarded_client(
        request.headers.getlist("x-forwarded-for"), peer, deps.cfg.forwarded_hops
    )


async def gateway_urls(deps: ApiDeps, sid: str) -> list[str]:
    """The active gateways' URLs in the session's order, or 503 `no_gateways`."""
    gws = await deps.directory.gateways()
    urls = membership.urls_for(sid, gws)
    if not urls:
        raise ApiError(503, "no_gateways", "no active gateway in the cluster", {"Retry-After": "2"})
    return urls


async def load_session(deps: ApiDeps, sid: str, *, say_ended: bool = False) -> SessionMeta:
    """The session's metadata, or 404. With `say_ended`, a session whose metadata expired
    (after the stream's max age) but that was ended answers 410: its ended record lives as
    long as any of its tokens, and "no such session" would read as "never ended"."""
    valid = sessions.valid_session_id(sid)
    meta = await deps.bridge.call(session_store.load, deps.kv_sessions, sid) if valid else None
    if meta is None:
        if say_ended and valid:
            ended = await deps.ended.get()
            if await deps.bridge.call(session_store.load_ended, ended, sid):
                raise ApiError(410, "session_ended", "this session has ended (details expired)")
        raise ApiError(404, "unknown_session", "no such session")
    return meta


# What the two routes that start a session's side (create, lookup by code) may answer
# besides their own 401 and 404: both read a JSON body and hand out gateways.
JOIN_ERRORS = (
    (429, "rate_limited"),
    (503, "no_gateways"),
    UNAVAILABLE,
    INVALID,
    UNREADABLE,
    TOO_LARGE,
)


def _session_links() -> dict[str, dict]:
    """OpenAPI links: what a created session's id and code open (clients and API testers
    such as schemathesis follow them)."""
    by_id = {
        "InspectSession": "inspect_v1_sessions__session_id__get",
        "EndSession": "end_session_v1_sessions__session_id__delete",
        "OpenReplay": "open_replay_v1_sessions__session_id__replay_post",
        "ReadHistory": "read_history_v1_sessions__session_id__history_get",
        "Connect": "connect_v1_sessions__session_id__connect_post",
    }
    links = {
        name: {"operationId": op, "parameters": {"session_id": "$response.body#/session_id"}}
        for name, op in by_id.items()
    }
    links["LookupByCode"] = {
        "operationId": "lookup_v1_sessions_lookup_post",
        "requestBody": {"code": "$response.body#/short_code"},
    }
    return links


@routes.post(
    "/v1/sessions",
    status_code=201,
    response_model=CreateSessionResponse,
    tags=["sessions"],
    summary="Create a session (visitor side, site key)",
    responses={
        201: {
            "description": "the session, its visitor token and where to connect",
            "links": _session_links(),
        },
        **doc((401, "bad_site_key"), *JOIN_ERRORS),
    },
)
async def create_session(
    body: CreateSessionRequest, request: Request, deps: Deps
) -> CreateSessionResponse:
    cfg = deps.cfg
    site = cfg.site_keys.get(body.site_key)
    if site is None:
        raise ApiError(401, "bad_site_key", "unknown site key")
    deps.limiter.enforce(
        (deps.rules.create_per_address, "create-addr", client_address(deps, request))
    )
    sid = sessions.new_session_id()
    urls = await gateway_urls(deps, sid)
    now = deps.clock()
    try:
        made = await deps.bridge.call(
            sessions.create,
            deps.kv_sessions,
            deps.kv_codes,
            sid,
            site=site,
            now=now,
            code_ttl=cfg.code_ttl,
            rng=deps.codes_rng,
        )
    except sessions.CodeSpaceExhausted as exc:
        raise ApiError(503, "unavailable", str(exc), {"Retry-After": "5"}) from None
    deps.listing.clear()
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


@routes.post(
    "/v1/sessions/lookup",
    response_model=LookupResponse,
    tags=["sessions"],
    summary="Join a session by short code (agent API key)",
    responses=doc(BAD_API_KEY, (404, "unknown_code"), *JOIN_ERRORS),
)
async def lookup(
    body: LookupRequest, request: Request, key: Annotated[AgentKey, Depends(agent)], deps: Deps
) -> LookupResponse:
    cfg = deps.cfg
    deps.limiter.enforce(
        (deps.rules.lookup_per_key, "lookup-key", key.id),
        (deps.rules.lookup_per_address, "lookup-addr", client_address(deps, request)),
    )
    code = shortcodes.normalize_code(body.code)
    now = deps.clock()
    found = None
    if shortcodes.is_code(code):
        found = await deps.bridge.call(
            sessions.resolve_code,
            deps.kv_sessions,
            deps.kv_codes,
            code,
            now,
            cfg.code_ttl,
            await deps.directory.live(),
        )
    visible = found is not None and key.may_see(found[1].site)  # another site's: as if unknown
    metrics.CODE_LOOKUPS.labels(
        result="found" if visible else "unknown" if shortcodes.is_code(code) else "malformed"
    ).inc()
    if found is None or not visible:
        raise ApiError(404, "unknown_code", "no session has this code (or it has expired)")
    sid, _ = found
    urls = await gateway_urls(deps, sid)
    token = tokens.mint(cfg.keyring, sid=sid, role="agent", now=now, ttl=cfg.token_ttl)
    log.info("code_resolved", sid=sid, key=key.id)
    return LookupResponse(
        session_id=sid,
        agent_token=token,
        token_expires_at=int(now + cfg.token_ttl),
        gateways=urls,
        proxy=cfg.proxy_url,
    )


@routes.post(
    "/v1/sessions/{session_id}/connect",
    response_model=ConnectResponse,
    tags=["sessions"],
    summary="Where to connect, for a holder of a join token (browser clients)",
    responses=doc((401, "bad_token"), (404, "unknown_session"), (503, "no_gateways"), UNAVAILABLE),
)
async def connect(
    session_id: Annotated[str, Path(max_length=64)], creds: Credentials, deps: Deps
) -> ConnectResponse:
    # A page that reloads, or an embed opened with a token, needs the session's current
    # gateway order; the join token itself is the credential (expired ones still count:
    # the session resumes on its resume token).
    role = token_role(deps.cfg.keyring, presented(creds), session_id, deps.clock())
    if role is None:
        raise ApiError(
            401,
            "bad_token",
            "missing or invalid join token for this session",
            CHALLENGE,
        )
    meta = await load_session(deps, session_id)
    if meta.ended:
        raise ApiError(404, "unknown_session", "the session has ended")
    return ConnectResponse(
        session_id=session_id,
        role=role,
        gateways=await gateway_urls(deps, session_id),
        proxy=deps.cfg.proxy_url,
    )


@routes.get(
    "/v1/sessions",
    response_model=SessionList,
    tags=["sessions"],
    summary="List active sessions (agent API key)",
    responses=doc(BAD_API_KEY, UNAVAILABLE, INVALID),
)
async def list_sessions(
    key: Annotated[AgentKey, Depends(agent)],
    deps: Deps,
    site: Annotated[str | None, Query(max_length=256, description="only this site")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="at most this many")] = 200,
) -> SessionList:
    now = deps.clock()
    found = deps.listing.get(now)
    if found is None:
        found = await deps.bridge.call(sessions.list_sessions, deps.kv_sessions)
        deps.listing.put(now, found)
    visible = [(sid, m) for sid, m in found if key.may_see(m.site)]
    count, rows = listing.summaries(
        visible,
        site=site,
        limit=limit,
        now=now,
        code_ttl=deps.cfg.code_ttl,
        live=await deps.directory.live(),
    )
    return SessionList(
        count=count,
        sessions=[
            SessionSummary(
                session_id=row.sid,
                site=row.meta.site,
                created=row.meta.created,
                epoch=row.meta.epoch,
                agents=row.agents,
                code=row.meta.code,
                joinable=row.joinable,
                url=row.meta.page.url if row.meta.page else None,
                title=row.meta.page.title if row.meta.page else None,
            )
            for row in rows
        ],
    )


@routes.get(
    "/v1/sessions/{session_id}",
    response_model=SessionDetail,
    tags=["sessions"],
    summary="Inspect a session (agent API key)",
    responses=doc(
        BAD_API_KEY, (404, "unknown_session"), (410, "session_ended"), UNAVAILABLE, INVALID
    ),
)
async def inspect(
    session_id: SessionIdPath, key: Annotated[AgentKey, Depends(agent)], deps: Deps
) -> SessionDetail:
    m = await load_session(deps, session_id, say_ended=True)
    if not key.may_see(m.site):
        raise ApiError(404, "unknown_session", "no such session")
    now = time.time()
    live = await deps.directory.live()
    agents = agent_roster.present(m, now, live)
    expires = None
    if m.code and not agents and not m.ended:
        expires = sessions.code_expires_at(m, deps.cfg.code_ttl)
    return SessionDetail(
        session_id=session_id,
        site=m.site,
        created=m.created,
        ended=m.ended,
        epoch=m.epoch,
        agents=agents,
        away=agent_roster.away(m, now, live),
        durable=m.durable,
        snapshot=m.snap is not None,
        code=m.code,
        code_expires_at=expires,
    )


@routes.delete(
    "/v1/sessions/{session_id}",
    response_model=EndedResponse,
    tags=["sessions"],
    summary="End a session (agent API key, or a join token of the session)",
    responses=doc(BAD_API_KEY, (401, "bad_token"), (404, "unknown_session"), UNAVAILABLE, INVALID),
)
async def end_session(
    session_id: SessionIdPath,
    by: Annotated[Ender, Depends(key_or_session_token)],
    deps: Deps,
    purge: Annotated[
        bool,
        Query(
            description="delete the stored events (default); false keeps them for replay "
            "until the stream's max age"
        ),
    ] = True,
) -> EndedResponse:
    meta = None
    if by.sites is not None:  # a scoped key ends only its sites' sessions
        seen = await load_session(deps, session_id)
        if seen.site not in by.sites:
            raise ApiError(404, "unknown_session", "no such session")
    if sessions.valid_session_id(session_id):
        meta = await deps.bridge.call(
            sessions.mark_ended,
            deps.kv_sessions,
            await deps.ended.get(),
            session_id,
            deps.clock(),
            vouched=by.vouched,
        )
    if meta is None:
        raise ApiError(404, "unknown_session", "no such session")
    deps.listing.clear()
    # Gateways close the session's connections (4004 session_ended) and refuse new ones.
    await deps.bridge.publish_core(streams.subject_ctl(session_id), b'{"op":"end"}')
    if purge:
        await deps.bridge.call(
            deps.bridge.js.purge_stream, deps.cfg.stream.stream, subject=f"cb.{session_id}.>"
        )
    if meta.code:
        await deps.bridge.call(sessions.release_code, deps.kv_codes, meta.code, session_id)
    log.info("session_ended", sid=session_id, by=by.who)
    return EndedResponse(session_id=session_id, ended=True)
