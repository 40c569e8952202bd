"""HMAC-signed tokens: who may join which session in which role, until when.

Sans-I/O: the caller passes `now`. A token is `v1.<kid>.<payload>.<mac>`, base64url, where the
payload is compact JSON {"sid", "role", "exp", ...}. The key id selects the secret, so a
verifier configured with the current and the previous secret accepts tokens minted with
either while secrets rotate.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from typing import Any

ROLES = ("visitor", "agent", "resume")


class TokenError(Exception):
    """Why a token was refused; `code` is the protocol error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


@dataclass(frozen=True)
class Keyring:
    """Secrets by key id; the first is current (used to sign), the others only verify."""

    keys: tuple[tuple[str, bytes], ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("a keyring needs at least one key")
        for kid, secret in self.keys:
            if not kid or "." in kid or len(secret) < 16:
                raise ValueError(
                    f"key {kid!r}: id must be non-empty without '.', secret >= 16 bytes"
                )

    @classmethod
    def parse(cls, spec: str) -> Keyring:
        """'kid:secret,kid2:secret2' (current first), as in COBROWSE_TOKEN_KEYS."""
        keys = []
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            kid, sep, secret = part.partition(":")
            if not sep:
                raise ValueError("token keys must look like 'kid:secret[,kid:secret]'")
            keys.append((kid.strip(), secret.strip().encode()))
        return cls(tuple(keys))

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Keyring:
        env = os.environ if environ is None else environ
        spec = env.get("COBROWSE_TOKEN_KEYS")
        if not spec:
            raise ValueError("COBROWSE_TOKEN_KEYS is not set (format 'kid:secret[,kid:secret]')")
        return cls.parse(spec)

    @property
    def current(self) -> tuple[str, bytes]:
        return self.keys[0]

    def secret(self, kid: str) -> bytes | None:
        for k, s in self.keys:
            if k == kid:
                return s
        return None


def _mac(secret: bytes, kid: str, body: str) -> str:
    return _b64(hmac.new(secret, f"v1.{kid}.{body}".encode(), hashlib.sha256).digest())


def mint(keyring: Keyring, *, sid: str, role: str, now: float, ttl: float, **extra: Any) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    kid, secret = keyring.current
    claims = {"sid": sid, "role": role, "exp": int(now + ttl), **extra}
    body = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    return f"v1.{kid}.{body}.{_mac(secret, kid, body)}"


def peek_sid(token: Any) -> str | None:
    """The session a token claims, UNVERIFIED: only to choose what `verify` checks it for."""
    if not isinstance(token, str) or len(token) > 2048 or token.count(".") != 3:
        return None
    try:
        claims = json.loads(_unb64(token.split(".")[2]))
    except (ValueError, UnicodeDecodeError):
        return None
    sid = claims.get("sid") if isinstance(claims, dict) else None
    return sid if isinstance(sid, str) else None


def verify(
    keyring: Keyring, token: str, *, sid: str, role: str, now: float, allow_expired: bool = False
) -> dict[str, Any]:
    """Return the claims, or raise TokenError (bad_token, token_expired, wrong_session).

    `allow_expired` accepts an expired but otherwise valid token: a session under way
    resumes on its resume token even after the join token it started with has expired."""
    if not isinstance(token, str) or len(token) > 2048:
        raise TokenError("bad_token", "token is not a string of at most 2048 characters")
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != "v1":
        raise TokenError("bad_token", "token is not of the form v1.<kid>.<payload>.<mac>")
    _, kid, body, mac = parts
    secret = keyring.secret(kid)
    if secret is None:
        raise TokenError("bad_token", "token signed with an unknown key id")
    if not hmac.compare_digest(mac, _mac(secret, kid, body)):
        raise TokenError("bad_token", "token signature does not verify")
    try:
        claims = json.loads(_unb64(body))
    except (ValueError, UnicodeDecodeError):
        raise TokenError("bad_token", "token payload is not JSON") from None
    if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int):
        raise TokenError("bad_token", "token payload lacks an expiry")
    if claims["exp"] <= now and not allow_expired:
        raise TokenError("token_expired", "token has expired")
    if claims.get("sid") != sid:
        raise TokenError("wrong_session", "token is for another session")
    if claims.get("role") != role:
        raise TokenError("wrong_role", f"token is not a {role} token")
    return claims
