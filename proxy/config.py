"""Asset-proxy settings from the environment, never keys in code.

Variables (all optional except where noted):

* ``COBROWSE_PROXY_KEYS``: signing keys, a ``gateway.tokens.Keyring`` spec
  ``kid:secret[,kid:secret]`` (current first, secrets >= 16 bytes). No default: when unset
  ``keyring`` is None and each caller decides (the CLI uses an ephemeral key).
* ``COBROWSE_PROXY_PUBLIC_URL``: base URL the signed ``/v1/asset?...`` paths are appended
  to (default ``http://127.0.0.1:8090``).
* ``COBROWSE_PROXY_ALLOW``: SSRF allow-list for ``proxy.address_policy.AllowList.parse``
  (default empty: only public addresses).
* ``COBROWSE_PROXY_MAX_CSS_BYTES`` (default 5 MiB), ``COBROWSE_PROXY_TIMEOUT`` (seconds,
  default 10), ``COBROWSE_PROXY_MAX_REDIRECTS`` (default 5), ``COBROWSE_PROXY_CACHE_BYTES``
  (default 64 MiB), ``COBROWSE_PROXY_URL_TTL`` (seconds a signed URL stays valid, default
  3600).

A bad value raises :class:`ConfigError` naming the variable and the expected format.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from gateway.tokens import Keyring

from .address_policy import AllowList

MIB = 1024 * 1024
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8090"


class ConfigError(ValueError):
    """The proxy settings are unusable; the message says which variable and why."""


@dataclass(frozen=True)
class ProxyConfig:
    keyring: Keyring | None = None
    public_url: str = DEFAULT_PUBLIC_URL
    allow: AllowList = field(default_factory=AllowList)
    max_css_bytes: int = 5 * MIB
    timeout: float = 10.0
    max_redirects: int = 5
    cache_bytes: int = 64 * MIB
    url_ttl: int = 3600
    token_keys: Keyring | None = None  # verifies agents' join tokens (POST /v1/sign)
    cors_origins: tuple[str, ...] = ("*",)  # pages that may call /v1/sign and /v1/rewrite

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ProxyConfig:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name)
            return None if value is None or not value.strip() else value.strip()

        keyring = None
        spec = get("COBROWSE_PROXY_KEYS")
        if spec is not None:
            try:
                keyring = Keyring.parse(spec)
            except ValueError as err:
                raise ConfigError(
                    f"COBROWSE_PROXY_KEYS is invalid ({err}); expected 'kid:secret[,kid:secret]' "
                    "with secrets of at least 16 bytes"
                ) from None

        public_url = get("COBROWSE_PROXY_PUBLIC_URL") or DEFAULT_PUBLIC_URL
        parts = urlsplit(public_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"COBROWSE_PROXY_PUBLIC_URL: {public_url!r} is not an http(s) URL with a host"
            )
        if parts.query or parts.fragment:
            raise ConfigError("COBROWSE_PROXY_PUBLIC_URL: must not carry a query or fragment")

        try:
            allow = AllowList.parse(get("COBROWSE_PROXY_ALLOW"))
        except ValueError as err:
            raise ConfigError(
                f"COBROWSE_PROXY_ALLOW: {err} (comma-separated CIDR networks, IPs, host names)"
            ) from None

        token_keys = None
        spec = get("COBROWSE_TOKEN_KEYS")
        if spec is not None:
            try:
                token_keys = Keyring.parse(spec)
            except ValueError as err:
                raise ConfigError(f"COBROWSE_TOKEN_KEYS is invalid ({err})") from None
        cors = tuple(
            o.strip() for o in (get("COBROWSE_PROXY_CORS_ORIGINS") or "*").split(",") if o.strip()
        )

        return cls(
            token_keys=token_keys,
            cors_origins=cors,
            keyring=keyring,
            public_url=public_url.rstrip("/"),
            allow=allow,
            max_css_bytes=_int(get, "COBROWSE_PROXY_MAX_CSS_BYTES", cls.max_css_bytes, 1),
            timeout=_seconds(get, "COBROWSE_PROXY_TIMEOUT", cls.timeout),
            max_redirects=_int(get, "COBROWSE_PROXY_MAX_REDIRECTS", cls.max_redirects, 0),
            cache_bytes=_int(get, "COBROWSE_PROXY_CACHE_BYTES", cls.cache_bytes, 0),
            url_ttl=_int(get, "COBROWSE_PROXY_URL_TTL", cls.url_ttl, 1),
        )


def _int(get, name: str, default: int, minimum: int) -> int:
    raw = get(name)
    if raw is None:
        return default
    try:
        value = int(raw, 10)
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}: {value} is below the minimum {minimum}")
    return value


def _seconds(get, name: str, default: float) -> float:
    raw = get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name}: {raw!r} must be a positive, finite number of seconds")
    return value
