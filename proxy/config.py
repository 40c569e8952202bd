"""Asset-proxy settings from the environment, never keys in code.

The COBROWSE_PROXY_* variables (and the shared COBROWSE_TOKEN_KEYS and logging) are declared
once in gateway/settings.py (`ProxySettings`), with their defaults and rules; docs/proxy.md
lists them. `ProxyConfig.from_env` reads them and turns the allow-list into an `AllowList`.
Every bad value is reported in one :class:`ConfigError` that names each variable; key secrets
are never echoed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway import settings as s
from gateway.settings import SettingsError
from gateway.tokens import Keyring

from .address_policy import AllowList

# Where signed URLs point when COBROWSE_PROXY_PUBLIC_URL is not set: `python -m proxy
# serve`'s own default address (development).
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8090"

ConfigError = SettingsError  # the proxy settings are unusable; it says which and why


@dataclass(frozen=True)
class ProxyConfig:
    keyring: Keyring | None = None
    public_url: str = DEFAULT_PUBLIC_URL
    allow: AllowList = field(default_factory=AllowList)
    max_css_bytes: int = s.PROXY_MAX_CSS_BYTES.default
    timeout: float = s.PROXY_TIMEOUT.default
    max_redirects: int = s.PROXY_MAX_REDIRECTS.default
    cache_bytes: int = s.PROXY_CACHE_BYTES.default
    url_ttl: int = s.PROXY_URL_TTL.default
    token_keys: Keyring | None = None  # verifies agents' join tokens (POST /v1/sign)
    cors_origins: tuple[str, ...] = s.PROXY_CORS_ORIGINS.default  # may call sign/rewrite
    forwarded_hops: int = s.PROXY_FORWARDED_HOPS.default  # trusted X-Forwarded-For hops
    http: s.HttpTimeouts = field(default_factory=s.HttpTimeouts)  # slow clients' bounds
    log: s.LogSettings = field(default_factory=s.LogSettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ProxyConfig:
        reader = s.Reader(os.environ if environ is None else environ)
        got = reader.read(s.ProxySettings)
        allow = reader.refine(s.PROXY_ALLOW, AllowList.parse)
        reader.check()
        assert got is not None and allow is not None
        return cls(
            keyring=got.keys,
            public_url=got.public_url or DEFAULT_PUBLIC_URL,
            allow=allow,
            max_css_bytes=got.max_css_bytes,
            timeout=got.timeout,
            max_redirects=got.max_redirects,
            cache_bytes=got.cache_bytes,
            url_ttl=got.url_ttl,
            token_keys=got.token_keys,
            cors_origins=got.cors_origins,
            forwarded_hops=got.forwarded_hops,
            http=got.http,
            log=got.log,
        )
