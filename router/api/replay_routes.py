"""`/v1/sessions/{id}/replay` and `/history`: what the replay page (`/replay`) reads.

A session's visitor events stay in JetStream for the stream's max age, so a replay needs no
recording pipeline of its own: `replay` hands an agent-key holder what the viewer needs
besides the events (an agent token for the proxy's signing and rewriting, the proxy's
address), and `history` pages through the stored events (router/history.py)."""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Query, Response

from gateway import tokens

from .. import history
from .auth import agent_key
from .deps import Deps
from .errors import BAD_API_KEY, INVALID, UNAVAILABLE, doc
from .models import ReplayResponse, SessionIdPath
from .session_routes import load_session

log = structlog.get_logger("router.api")

routes = APIRouter()

REPLAY_TOKEN_TTL = 3600.0
"""The replay's agent token serves only the proxy (signing, rewriting the recorded page's
CSS) while an agent watches: an hour, renewed by opening the replay again."""


@routes.post(
    "/v1/sessions/{session_id}/replay",
    response_model=ReplayResponse,
    tags=["replay"],
    summary="Open a session's replay (agent API key): its facts and a token for the proxy",
    responses=doc(BAD_API_KEY, (404, "unknown_session"), (410, "session_ended"), UNAVAILABLE),
)
async def open_replay(
    session_id: SessionIdPath, key: Annotated[str, Depends(agent_key)], deps: Deps
) -> ReplayResponse:
    meta = await load_session(deps, session_id, say_ended=True)
    now = deps.clock()
    token = tokens.mint(
        deps.cfg.keyring, sid=session_id, role="agent", now=now, ttl=REPLAY_TOKEN_TTL
    )
    log.info("replay_opened", sid=session_id, key=key)
    return ReplayResponse(
        session_id=session_id,
        created=meta.created,
        ended=meta.ended,
        agent_token=token,
        proxy=deps.cfg.proxy_url,
        retained_seconds=deps.cfg.stream.max_age,
    )


@routes.get(
    "/v1/sessions/{session_id}/history",
    tags=["replay"],
    summary="A page of a session's stored visitor events (agent API key), as msgpack",
    response_class=Response,
    responses={
        200: {
            "description": "msgpack map: `events` [[stream position, epoch, seq, kind, ts, "
            "payload], ...] in stream order, `next` (the `from` of the next page, or nil at "
            "the stored end), `messages` (stored messages read)",
            "content": {"application/msgpack": {}},
        },
        **doc(BAD_API_KEY, (404, "unknown_session"), (410, "session_ended"), UNAVAILABLE, INVALID),
    },
)
async def read_history(
    session_id: SessionIdPath,
    key: Annotated[str, Depends(agent_key)],
    deps: Deps,
    start: Annotated[
        int, Query(alias="from", ge=1, le=2**63, description="stream position to read from")
    ] = 1,
    limit: Annotated[
        int, Query(ge=1, le=history.MAX_PAGE_MESSAGES, description="stored messages")
    ] = history.MAX_PAGE_MESSAGES,
) -> Response:
    await load_session(deps, session_id, say_ended=True)
    page = await deps.bridge.call(
        history.read_page, deps.bridge.nc, deps.cfg.stream.stream, session_id, start, limit
    )
    return Response(
        content=page.encode(),
        media_type="application/msgpack",
        headers={"Cache-Control": "no-store"},
    )
