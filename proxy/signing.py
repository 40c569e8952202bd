"""HMAC-SHA256 signed asset URLs, so the proxy is not an open proxy (guarantee G4).

Sans-I/O: the caller passes `now`. The viewer asks for a stylesheet or asset with

    /v1/asset?u=<base64url target URL>&s=<session id>&e=<expiry, unix seconds>&sig=<mac>

where the MAC covers a version tag, the target URL, the session id and the expiry,
length-prefixed so no field can bleed into another. Verification accepts a bare secret or a
`gateway.tokens.Keyring` (current + previous secrets), trying each secret in constant time,
so URLs minted before a secret rotation keep working until they expire.

A signed URL authorizes fetching its own target and nothing else: the service never takes
one as a credential for signing other URLs (only an agent join token does, issue 12).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from urllib.parse import quote, urlencode

from gateway.tokens import Keyring

ASSET_PATH = "/v1/asset"
MAX_URL_LENGTH = 8192
MAX_SESSION_ID_LENGTH = 256
_DOMAIN = b"cobrowse-asset-url-v1"
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_DIGITS = re.compile(r"[0-9]{1,12}")
_MAC_LEN = 43  # base64url of 32 bytes, unpadded


class SignatureError(Exception):
    """Why a signed URL was refused; `code` is one of missing_param, bad_param,
    bad_signature, expired, wrong_session."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _unb64(s: str) -> bytes:
    if not _B64URL.fullmatch(s) or len(s) % 4 == 1:
        raise ValueError("not base64url")
    raw = base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    if _b64(raw) != s:  # refuse non-canonical encodings (stray trailing bits)
        raise ValueError("non-canonical base64url")
    return raw


def _secrets(key: bytes | Keyring) -> list[bytes]:
    if isinstance(key, Keyring):
        return [secret for _, secret in key.keys]
    if isinstance(key, bytes | bytearray) and len(key) >= 16:
        return [bytes(key)]
    raise ValueError("a signing secret must be bytes of at least 16 bytes, or a Keyring")


def _signing_secret(key: bytes | Keyring) -> bytes:
    return key.current[1] if isinstance(key, Keyring) else _secrets(key)[0]


def _mac(secret: bytes, target_url: str, session_id: str, expires: int) -> bytes:
    msg = bytearray(_DOMAIN)
    for field in (target_url.encode(), session_id.encode(), str(expires).encode()):
        msg += len(field).to_bytes(4, "big") + field
    return hmac.new(secret, bytes(msg), hashlib.sha256).digest()


def _check_fields(target_url: str, session_id: str, expires: int) -> None:
    if not isinstance(target_url, str) or not target_url or len(target_url) > MAX_URL_LENGTH:
        raise ValueError(f"target URL must be a non-empty string of <= {MAX_URL_LENGTH} chars")
    if not isinstance(session_id, str) or not session_id or len(session_id) > MAX_SESSION_ID_LENGTH:
        raise ValueError(f"session id must be a non-empty string of <= {MAX_SESSION_ID_LENGTH}")
    if isinstance(expires, bool) or not isinstance(expires, int) or not 0 <= expires < 10**12:
        raise ValueError("expires must be a non-negative integer (unix seconds)")


def sign_params(key: bytes | Keyring, target_url: str, session_id: str, expires: int) -> dict:
    """The query parameters {u, s, e, sig} of a signed asset URL."""
    _check_fields(target_url, session_id, expires)
    mac = _mac(_signing_secret(key), target_url, session_id, expires)
    return {
        "u": _b64(target_url.encode()),
        "s": session_id,
        "e": str(expires),
        "sig": _b64(mac),
    }


def sign(key: bytes | Keyring, target_url: str, session_id: str, expires: int) -> str:
    """A path with query, `/v1/asset?u=..&s=..&e=..&sig=..`, for the viewer to request."""
    params = sign_params(key, target_url, session_id, expires)
    return f"{ASSET_PATH}?{urlencode(params, quote_via=quote, safe='')}"


def _one(query: Mapping[str, str | Sequence[str]], name: str) -> str:
    if name not in query:
        raise SignatureError("missing_param", f"signed URL lacks the {name!r} parameter")
    value = query[name]
    if not isinstance(value, str):
        values = list(value)
        if len(values) != 1:
            raise SignatureError("bad_param", f"parameter {name!r} must appear exactly once")
        value = values[0]
    if not isinstance(value, str):
        raise SignatureError("bad_param", f"parameter {name!r} is not a string")
    return value


def verify(
    key: bytes | Keyring,
    query: Mapping[str, str | Sequence[str]],
    now: float,
    *,
    session_id: str | None = None,
) -> tuple[str, str]:
    """Return (target_url, session_id) from a signed URL's query, or raise SignatureError.

    `query` maps names to a value or a list of values (as from `parse_qs`). When
    `session_id` is given, the URL must have been signed for that session."""
    u, s, e, sig = (_one(query, name) for name in ("u", "s", "e", "sig"))
    try:
        target_url = _unb64(u).decode("utf-8")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise SignatureError("bad_param", "parameter 'u' is not base64url UTF-8") from None
    if not _DIGITS.fullmatch(e):
        raise SignatureError("bad_param", "parameter 'e' is not a unix time in seconds")
    expires = int(e)
    if len(sig) != _MAC_LEN:
        raise SignatureError("bad_signature", "signature has the wrong length")
    try:
        got = _unb64(sig)
    except (ValueError, binascii.Error):
        raise SignatureError("bad_signature", "signature is not base64url") from None
    try:
        _check_fields(target_url, s, expires)
    except ValueError as err:
        raise SignatureError("bad_param", str(err)) from None
    ok = False
    for secret in _secrets(key):
        # No early exit: every secret is tried, each comparison constant-time.
        ok |= hmac.compare_digest(got, _mac(secret, target_url, s, expires))
    if not ok:
        raise SignatureError("bad_signature", "signature does not verify")
    if expires <= now:
        raise SignatureError("expired", "signed URL has expired")
    if session_id is not None and not hmac.compare_digest(s.encode(), session_id.encode()):
        raise SignatureError("wrong_session", "signed URL is for another session")
    return target_url, s
