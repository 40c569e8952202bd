"""HMAC tokens: verification, expiry, scope, and rotation with the previous secret."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.tokens import Keyring, TokenError, mint, verify

OLD = Keyring.parse("k1:" + "a" * 32)
ROTATED = Keyring.parse("k2:" + "b" * 32 + ",k1:" + "a" * 32)
NEW_ONLY = Keyring.parse("k2:" + "b" * 32)


def test_round_trip_and_claims():
    t = mint(OLD, sid="session-1", role="agent", now=100, ttl=60, aid="abc")
    claims = verify(OLD, t, sid="session-1", role="agent", now=159)
    assert claims["sid"] == "session-1" and claims["aid"] == "abc" and claims["exp"] == 160


def test_rotation_accepts_previous_secret_until_it_is_dropped():
    old_token = mint(OLD, sid="session-1", role="visitor", now=0, ttl=100)
    new_token = mint(ROTATED, sid="session-1", role="visitor", now=0, ttl=100)
    assert new_token.split(".")[1] == "k2"
    verify(ROTATED, old_token, sid="session-1", role="visitor", now=1)
    verify(ROTATED, new_token, sid="session-1", role="visitor", now=1)
    with pytest.raises(TokenError) as e:
        verify(NEW_ONLY, old_token, sid="session-1", role="visitor", now=1)
    assert e.value.code == "bad_token"


@pytest.mark.parametrize(
    "mutate, code",
    [
        (lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"), "bad_token"),
        (lambda t: "v2" + t[2:], "bad_token"),
        (lambda t: t.replace(".", "", 1), "bad_token"),
        (lambda t: "", "bad_token"),
    ],
)
def test_tampered_tokens_are_refused(mutate, code):
    t = mint(OLD, sid="session-1", role="agent", now=0, ttl=100)
    with pytest.raises(TokenError) as e:
        verify(OLD, mutate(t), sid="session-1", role="agent", now=1)
    assert e.value.code == code


def test_payload_swap_breaks_the_mac():
    a = mint(OLD, sid="session-1", role="agent", now=0, ttl=100).split(".")
    b = mint(OLD, sid="session-2", role="agent", now=0, ttl=100).split(".")
    forged = ".".join([a[0], a[1], b[2], a[3]])
    with pytest.raises(TokenError):
        verify(OLD, forged, sid="session-2", role="agent", now=1)


def test_expiry_session_and_role_scope():
    t = mint(OLD, sid="session-1", role="agent", now=0, ttl=10)
    for kwargs, code in [
        ({"sid": "session-1", "role": "agent", "now": 10}, "token_expired"),
        ({"sid": "session-2", "role": "agent", "now": 1}, "wrong_session"),
        ({"sid": "session-1", "role": "visitor", "now": 1}, "wrong_role"),
    ]:
        with pytest.raises(TokenError) as e:
            verify(OLD, t, **kwargs)
        assert e.value.code == code


@given(st.text(max_size=300))
def test_arbitrary_strings_never_crash(s):
    with pytest.raises(TokenError):
        verify(OLD, s, sid="session-1", role="agent", now=0)


def test_keyring_parsing_errors():
    for bad in ["", "nokey", "k1:short", ":" + "a" * 20, "k.1:" + "a" * 20]:
        with pytest.raises(ValueError):
            Keyring.parse(bad)
