"""Who may call what. Three credentials reach the API in `Authorization: Bearer ...`: an agent
API key (secret, most `/v1` endpoints), the admin key (the cluster endpoints) and a session's
own join token (ending that session, finding its gateways). The site key, public, travels in
the create body and is checked there.

The decisions are plain functions of the configured keys and the presented string, so they
are tested without HTTP; the FastAPI dependencies below only fetch both and call them.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway import tokens

from .deps import Deps
from .errors import ApiError
from .models import SessionIdPath

CHALLENGE = {"WWW-Authenticate": "Bearer"}
"""On every 401: RFC 6750 asks a resource server to say which scheme it wants."""

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="an agent API key, or the admin key where stated",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


@dataclass(frozen=True)
class Ender:
    """Who ends a session: an agent API key's id, or `visitor-token`/`agent-token`. A token
    vouches that the session existed even when its metadata has expired."""

    who: str
    vouched: bool


def key_id(key: str) -> str:
    """A stable id for a secret key that is safe to keep in memory and logs."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def find_key(keys: Mapping[str, str], presented: str | None) -> str | None:
    """The configured key equal to `presented` (constant-time per key), or None."""
    if not presented:
        return None
    raw = presented.encode()
    found = None
    for key in keys:
        if hmac.compare_digest(key.encode(), raw):
            found = key
    return found


def is_admin(admin_key: str | None, presented: str) -> bool:
    return bool(admin_key and find_key({admin_key: "admin"}, presented))


def check_agent_key(agent_keys: Mapping[str, str], presented: str) -> str:
    """The id of the agent API key presented, or 401 `bad_api_key`."""
    key = find_key(agent_keys, presented)
    if key is None:
        raise ApiError(
            401,
            "bad_api_key",
            "missing or unknown API key (Authorization: Bearer <agent API key>)",
            CHALLENGE,
        )
    return key_id(key)


def check_agent_or_admin(
    agent_keys: Mapping[str, str], admin_key: str | None, presented: str
) -> str:
    """`admin` for the admin key, else the agent key's id, else 401."""
    if is_admin(admin_key, presented):
        return "admin"
    return check_agent_key(agent_keys, presented)


def check_admin(agent_keys: Mapping[str, str], admin_key: str | None, presented: str) -> str:
    """`admin` for the admin key; 403 `admin_only` for an agent key (it is known, just not
    enough), 401 for anything else."""
    if is_admin(admin_key, presented):
        return "admin"
    if find_key(agent_keys, presented):
        raise ApiError(403, "admin_only", "this endpoint needs the admin key")
    raise ApiError(401, "bad_api_key", "missing or unknown admin key", CHALLENGE)


def token_role(keyring: tokens.Keyring, presented: str, sid: str, now: float) -> str | None:
    """The role of a join token of session `sid` (expired ones count: a session outlives
    the join token it started with), or None."""
    for candidate in ("agent", "visitor"):
        try:
            tokens.verify(keyring, presented, sid=sid, role=candidate, now=now, allow_expired=True)
        except tokens.TokenError:
            continue
        return candidate
    return None


def check_ender(
    keyring: tokens.Keyring, agent_keys: Mapping[str, str], presented: str, sid: str, now: float
) -> Ender:
    """An agent API key, or a join token (visitor or agent) of this very session: who may
    end it. Anything shaped like a token is judged as one (401 `bad_token`), the rest as a
    key (401 `bad_api_key`)."""
    if tokens.peek_sid(presented) is None:
        return Ender(check_agent_key(agent_keys, presented), vouched=False)
    role = token_role(keyring, presented, sid, now)
    if role is None:
        raise ApiError(401, "bad_token", "the token is not a join token of this session", CHALLENGE)
    return Ender(f"{role}-token", vouched=True)


def presented(creds: HTTPAuthorizationCredentials | None) -> str:
    """The bearer credential, or "" when the header is missing or not `Bearer`."""
    return creds.credentials if creds else ""


# ---- the FastAPI dependencies -----------------------------------------------------------


def agent_key(deps: Deps, creds: Credentials) -> str:
    return check_agent_key(deps.cfg.agent_keys, presented(creds))


def agent_or_admin(deps: Deps, creds: Credentials) -> str:
    return check_agent_or_admin(deps.cfg.agent_keys, deps.cfg.admin_key, presented(creds))


def admin_only(deps: Deps, creds: Credentials) -> str:
    return check_admin(deps.cfg.agent_keys, deps.cfg.admin_key, presented(creds))


def key_or_session_token(session_id: SessionIdPath, deps: Deps, creds: Credentials) -> Ender:
    return check_ender(
        deps.cfg.keyring, deps.cfg.agent_keys, presented(creds), session_id, deps.clock()
    )
