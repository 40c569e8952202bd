"""Who may call what (router/api/auth.py), decided without HTTP: agent keys, the admin key,
and a session's own join tokens. tests/router/test_api.py covers the same rules over real HTTP."""

from __future__ import annotations

import secrets

import pytest
from fastapi.security import HTTPAuthorizationCredentials
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import tokens
from router.api.auth import (
    AgentKey,
    Ender,
    Keys,
    check_admin,
    check_agent,
    check_agent_key,
    check_agent_or_admin,
    check_ender,
    find_key,
    key_id,
    presented,
    token_role,
)
from router.api.errors import ApiError

KEYRING = tokens.Keyring.parse("k1:" + secrets.token_urlsafe(32))
OTHER_KEYRING = tokens.Keyring.parse("k1:" + secrets.token_urlsafe(32))
AGENT = "ak_desk_" + secrets.token_urlsafe(24)
ADMIN = "adm_" + secrets.token_urlsafe(24)
SCOPED = "ak_shop_" + secrets.token_urlsafe(24)
AGENTS = {AGENT: "desk", SCOPED: "shopdesk"}
SCOPES = {"shopdesk": frozenset({"shop", "outlet"})}
ENDER_KEYS = Keys(KEYRING, AGENTS, SCOPES)
SID = "s" * 16
NOW = 1_000_000.0


def mint(role: str, sid: str = SID, ttl: float = 60, keyring: tokens.Keyring = KEYRING) -> str:
    return tokens.mint(keyring, sid=sid, role=role, now=NOW, ttl=ttl)


def refusal(call, *args) -> tuple[int, str, dict[str, str] | None]:
    with pytest.raises(ApiError) as err:
        call(*args)
    return err.value.status, err.value.code, err.value.headers


def test_the_bearer_credential_or_nothing():
    assert presented(None) == ""
    creds = HTTPAuthorizationCredentials(scheme="Bearer", credentials="abc")
    assert presented(creds) == "abc"


def test_an_agent_key_is_known_by_its_id_never_itself():
    assert check_agent_key(AGENTS, AGENT) == key_id(AGENT)
    assert AGENT not in key_id(AGENT) and len(key_id(AGENT)) == 16
    for wrong in ("", AGENT[:-1], AGENT + "x", ADMIN):
        assert refusal(check_agent_key, AGENTS, wrong) == (
            401,
            "bad_api_key",
            {"WWW-Authenticate": "Bearer"},
        )


@settings(max_examples=50)
@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=4))
def test_only_the_exact_key_is_found(key, more):
    keys = {key: "label", "ak_other_" + key: "other"}
    assert find_key(keys, key) == key
    assert find_key(keys, key + more) is None or (key + more) in keys
    assert find_key(keys, key[:-1]) is None


def test_the_cluster_list_takes_either_key():
    assert check_agent_or_admin(AGENTS, ADMIN, ADMIN) == "admin"
    assert check_agent_or_admin(AGENTS, ADMIN, AGENT) == key_id(AGENT)
    assert refusal(check_agent_or_admin, AGENTS, ADMIN, "nope")[:2] == (401, "bad_api_key")
    # no admin key configured: nothing, not even "", is the admin key
    assert refusal(check_agent_or_admin, AGENTS, None, "")[:2] == (401, "bad_api_key")


def test_a_drain_needs_the_admin_key_and_says_when_an_agent_key_is_not_enough():
    assert check_admin(AGENTS, ADMIN, ADMIN) == "admin"
    assert refusal(check_admin, AGENTS, ADMIN, AGENT) == (403, "admin_only", None)
    assert refusal(check_admin, AGENTS, ADMIN, "nope") == (
        401,
        "bad_api_key",
        {"WWW-Authenticate": "Bearer"},
    )
    assert refusal(check_admin, AGENTS, None, ADMIN)[:2] == (401, "bad_api_key")


def test_a_join_tokens_role_counts_even_expired_but_only_for_its_own_session():
    assert token_role(KEYRING, mint("visitor"), SID, NOW) == "visitor"
    assert token_role(KEYRING, mint("agent"), SID, NOW) == "agent"
    assert token_role(KEYRING, mint("agent", ttl=1), SID, NOW + 3600) == "agent"
    assert token_role(KEYRING, mint("agent", sid="t" * 16), SID, NOW) is None
    assert token_role(KEYRING, mint("resume"), SID, NOW) is None  # not a join token
    assert token_role(KEYRING, mint("agent", keyring=OTHER_KEYRING), SID, NOW) is None
    assert token_role(KEYRING, "", SID, NOW) is None


def test_who_may_end_a_session():
    assert check_ender(ENDER_KEYS, AGENT, SID, NOW) == Ender(key_id(AGENT), vouched=False)
    assert check_ender(ENDER_KEYS, mint("visitor"), SID, NOW) == Ender(
        "visitor-token", vouched=True
    )
    assert check_ender(ENDER_KEYS, mint("agent"), SID, NOW) == Ender("agent-token", vouched=True)
    # a token of another session is judged as a token, not as an unknown key
    other = mint("visitor", sid="t" * 16)
    assert refusal(check_ender, ENDER_KEYS, other, SID, NOW)[:2] == (401, "bad_token")
    assert refusal(check_ender, ENDER_KEYS, "nope", SID, NOW)[:2] == (401, "bad_api_key")
    assert check_ender(ENDER_KEYS, SCOPED, SID, NOW).sites == SCOPES["shopdesk"]


def test_a_scoped_key_sees_only_its_sites():
    """COBROWSE_AGENT_SITES: a listed label sees its sites only, never a session without a
    site; an unlisted key sees every site."""
    scoped = check_agent(AGENTS, SCOPES, SCOPED)
    assert scoped == AgentKey(key_id(SCOPED), frozenset({"shop", "outlet"}))
    assert scoped.may_see("shop") and scoped.may_see("outlet")
    assert not scoped.may_see("blog") and not scoped.may_see(None)
    anyone = check_agent(AGENTS, SCOPES, AGENT)
    assert anyone.sites is None and anyone.may_see("blog") and anyone.may_see(None)
    for bad in ("", "nope", ADMIN, SCOPED + "x"):
        assert refusal(check_agent, AGENTS, SCOPES, bad)[:2] == (401, "bad_api_key")
