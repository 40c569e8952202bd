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
class AgentKey:
    """An agent API key that was presented: its id (for logs and rate limits) and the sites
    whose sessions it may see (`COBROWSE_AGENT_SITES`; None: every site)."""

    id: str
    sites: frozenset[str] | None = None

    def may_see(self, site: str | None) -> bool:
        """A scoped key sees only its sites' sessions (never one without a site)."""
        return self.sites is None or site in self.sites


@dataclass(frozen=True)
class Ender:
    """Who ends a session: an agent API key's id, or `visitor-token`/`agent-token`. A token
    vouches that the session existed even when its metadata has expired. `sites`: a scoped
    key's sites (None: any session)."""

    who: str
    vouched: bool
    sites: frozenset[str] | None = None


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


BAD_API_KEY_MESSAGE = "missing or unknown API key (Authorization: Bearer <agent API key>)"


def check_agent_key(agent_keys: Mapping[str, str], presented: str) -> str:
    """The id of the agent API key presented, or 401 `bad_api_key`."""
    key = find_key(agent_keys, presented)
    if key is None:
        raise ApiError(401, "bad_api_key", BAD_API_KEY_MESSAGE, CHALLENGE)
    return key_id(key)


def check_agent(
    agent_keys: Mapping[str, str], agent_sites: Mapping[str, frozenset[str]], presented: str
) -> AgentKey:
    """The agent API key presented, with its scope, or 401 `bad_api_key`."""
    key = find_key(agent_keys, presented)
    if key is None:
        raise ApiError(401, "bad_api_key", BAD_API_KEY_MESSAGE, CHALLENGE)
    return AgentKey(key_id(key), agent_sites.get(agent_keys[key]))


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


@dataclass(frozen=True)
class Keys:
    """The configured keys an ender is judged against."""

    keyring: tokens.Keyring
    agent_keys: Mapping[str, str]
    agent_sites: Mapping[str, frozenset[str]]


def check_ender(keys: Keys, presented: str, sid: str, now: float) -> Ender:
    """An agent API key, or a join token (visitor or agent) of this very session: who may
    end it. Anything shaped like a token is judged as one (401 `bad_token`), the rest as a
    key (401 `bad_api_key`)."""
    keyring = keys.keyring
    if tokens.peek_sid(presented) is None:
        key = check_agent(keys.agent_keys, keys.agent_sites, presented)
        return Ender(key.id, vouched=False, sites=key.sites)
    role = token_role(keyring, presented, sid, now)
    if role is None:
        raise ApiError(401, "bad_token", "the token is not a join token of this session", CHALLENGE)
    return Ender(f"{role}-token", vouched=True)


def presented(creds: HTTPAuthorizationCredentials | None) -> str:
    """The bearer credential, or "" when the header is missing or not `Bearer`."""
    return creds.credentials if creds else ""


# ---- the FastAPI dependencies -----------------------------------------------------------
# `async def` although they never wait: FastAPI runs a plain `def` dependency in a worker
# thread, a hop that cost the router more than the check itself (a thread per request
# showed as a quarter of the router's time in a 300-session ramp).


async def agent(deps: Deps, creds: Credentials) -> AgentKey:
    return check_agent(deps.cfg.agent_keys, deps.cfg.agent_sites, presented(creds))


async def agent_or_admin(deps: Deps, creds: Credentials) -> str:
    return check_agent_or_admin(deps.cfg.agent_keys, deps.cfg.admin_key, presented(creds))


async def admin_only(deps: Deps, creds: Credentials) -> str:
    return check_admin(deps.cfg.agent_keys, deps.cfg.admin_key, presented(creds))


async def key_or_session_token(session_id: SessionIdPath, deps: Deps, creds: Credentials) -> Ender:
    keys = Keys(deps.cfg.keyring, deps.cfg.agent_keys, deps.cfg.agent_sites)
    return check_ender(keys, presented(creds), session_id, deps.clock())
