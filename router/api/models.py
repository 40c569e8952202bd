"""The API's request and response bodies (and the session id path parameter), as pydantic
models: FastAPI validates requests against them (bad input is a 422, never a 500) and they are
the schemas of the OpenAPI document. The error body is in `errors.py`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from pydantic import BaseModel, Field

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
    agents: int = Field(
        description="agents in the session: joined, not yet said goodbye, and connected or "
        "still able to resume (0: none is in)"
    )
    code: str | None
    joinable: bool = Field(description="the short code still lets an agent join")
    url: str | None = Field(
        None, description="the visitor's page as of its latest snapshot (the visitor's word)"
    )
    title: str | None = Field(None, description="that page's title (the visitor's word)")


class SessionList(BaseModel):
    sessions: list[SessionSummary] = Field(description="newest first")
    count: int = Field(description="active sessions matching, before `limit`")


class SessionDetail(BaseModel):
    session_id: str
    site: str | None
    created: float
    ended: bool
    epoch: int = Field(description="the visitor's current epoch (0: no visitor yet)")
    agents: dict[str, float] = Field(
        description="agent id -> when it joined (connected, or away and able to resume)"
    )
    away: dict[str, float] = Field(
        description="of those, the agents whose connection dropped without a goodbye: "
        "agent id -> until when it may resume"
    )
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


class ReplayResponse(BaseModel):
    session_id: str
    created: float = Field(description="Unix seconds")
    ended: bool
    agent_token: str = Field(
        description="an agent join token for the proxy's /v1/sign and /v1/rewrite (1 h)"
    )
    proxy: str | None = Field(description="the asset proxy's public URL")
    retained_seconds: float = Field(description="how long the stream keeps events")
