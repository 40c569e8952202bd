"""Router settings: environment variables, optionally a JSON file, never keys in code.

The variables, their defaults and their rules are declared once in gateway/settings.py
(`RouterSettings`); this module adds the JSON file and builds `RouterConfig`.
`COBROWSE_CONFIG` may name a JSON file holding a flat object whose keys are the same names in
lower case without the prefix (`{"site_keys": "...", "api_port": 8080}`); a variable that is
set wins over the file. Keys (token, site, agent) have no defaults: a missing one stops the
router at start with a message saying which and in what format, together with every other
bad value.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway import settings as s
from gateway.nats_security import NatsSecurity, NatsSecurityError, from_settings
from gateway.settings import SettingsError
from gateway.streams import StreamSettings
from gateway.tokens import Keyring

ConfigError = SettingsError  # the router cannot start with these settings; it says why
PREFIX = "COBROWSE_"
FLAG_OF = {s.API_HOST.name: "--host", s.API_PORT.name: "--port"}  # python -m router serve


@dataclass(frozen=True)
class RouterConfig:
    keyring: Keyring
    site_keys: dict[str, str]  # public site key -> site name
    agent_keys: dict[str, str]  # secret API key -> label (logs, and AGENT_SITES)
    agent_sites: dict[str, frozenset[str]] = field(default_factory=dict)  # label -> its sites
    admin_key: str | None = None
    nats_servers: list[str] = field(default_factory=lambda: list(s.NATS_URL.default))
    nats: NatsSecurity = field(default_factory=NatsSecurity)  # credentials and TLS
    host: str = s.API_HOST.default
    port: int = s.API_PORT.default
    code_ttl: float = s.CODE_TTL.default  # a short code works this long unless an agent joined
    token_ttl: float = s.TOKEN_TTL.default  # visitor and agent join tokens
    lookup_limit_per_key: str = s.LOOKUP_LIMIT_PER_KEY.default
    lookup_limit_per_address: str = s.LOOKUP_LIMIT_PER_ADDRESS.default
    create_limit_per_address: str = s.CREATE_LIMIT_PER_ADDRESS.default
    forwarded_hops: int = s.API_FORWARDED_HOPS.default  # trusted X-Forwarded-For hops
    metrics_port: int | None = None  # /metrics on a listener of its own (None: the API port)
    cors_origins: tuple[str, ...] = s.API_CORS_ORIGINS.default
    max_body_bytes: int = 16 * 1024
    stream: StreamSettings = field(default_factory=StreamSettings)
    codes_bucket: str = "cobrowse_codes"
    proxy_url: str | None = None  # the asset proxy's public base URL, told to viewers
    embed_frame_ancestors: str = s.EMBED_FRAME_ANCESTORS.default  # who may embed /embed
    demo_site_key: str | None = None  # serve /demo with this site key (development only)
    http: s.HttpTimeouts = field(default_factory=s.HttpTimeouts)  # slow clients' bounds
    log: s.LogSettings = field(default_factory=s.LogSettings)

    @property
    def codes_ttl(self) -> float:
        """TTL of the short-code bucket: a code stays resolvable for as long as it may be
        used (the code TTL, or the token TTL once an agent has joined)."""
        return max(self.code_ttl, self.token_ttl)


class WithFile(Mapping[str, Any]):
    """The environment over the JSON file's settings: a variable that is set (not blank)
    wins; the file's key for COBROWSE_X is `x`."""

    def __init__(self, env: Mapping[str, Any], file: Mapping[str, Any]) -> None:
        self.env = env
        self.file = file

    def __getitem__(self, name: str) -> Any:
        value = self.env.get(name)
        if isinstance(value, str) and value.strip():
            return value
        key = name.removeprefix(PREFIX).lower()
        if name.startswith(PREFIX) and key in self.file:
            return self.file[key]
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter({*self.env, *(PREFIX + k.upper() for k in self.file)})

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _file_value(value: Any) -> Any:
    """A JSON value as the reader takes it: objects as they are (key lists), numbers and
    strings as text."""
    if isinstance(value, Mapping) or isinstance(value, str):
        return value
    return json.dumps(value)


def _file_settings(reader: s.Reader, path: str) -> dict[str, Any]:
    try:
        raw = json.loads(Path(path).read_text())
    except OSError as exc:
        reader.complain(s.CONFIG, f"names a file the router cannot read ({exc.strerror})")
        return {}
    except ValueError as exc:
        reader.complain(s.CONFIG, f"is not JSON: {exc}")
        return {}
    if not isinstance(raw, dict):
        reader.complain(s.CONFIG, "must hold a JSON object")
        return {}
    names = {v.name.removeprefix(PREFIX).lower() for v, _ in s.variables(s.RouterSettings)}
    names.discard("config")
    unknown = sorted(str(k) for k in raw if str(k).lower() not in names)
    if unknown:
        reader.complain(s.CONFIG, f"has settings the router does not know: {', '.join(unknown)}")
    return {str(k).lower(): _file_value(v) for k, v in raw.items() if str(k).lower() in names}


def load(
    environ: Mapping[str, str] | None = None,
    *,
    host: str | None = None,
    port: int | str | None = None,
) -> RouterConfig:
    """Build the configuration; raise ConfigError naming every setting that is wrong.
    `host` and `port` are the command line's `--host` and `--port`."""
    env = os.environ if environ is None else environ
    overrides = {s.API_HOST.name: host, s.API_PORT.name: None if port is None else str(port)}
    first = s.Reader(env)
    path = first.value(s.CONFIG)
    file = _file_settings(first, path) if path else {}
    reader = s.Reader(WithFile(env, file), overrides=overrides, labels=FLAG_OF)
    reader.problems[:0] = first.problems
    got = reader.read(s.RouterSettings)
    reader.check()
    assert got is not None
    try:
        nats = from_settings(got.nats_auth)  # reads the password file once, at start
    except NatsSecurityError as exc:
        raise ConfigError([str(exc)]) from None
    return RouterConfig(
        keyring=got.token_keys,
        site_keys=got.site_keys,
        agent_keys=got.agent_keys,
        agent_sites=got.agent_sites or {},
        admin_key=got.admin_key,
        nats_servers=list(got.nats_servers),
        nats=nats,
        host=got.host,
        port=got.port,
        code_ttl=got.code_ttl,
        token_ttl=got.token_ttl,
        lookup_limit_per_key=got.lookup_limit_per_key,
        lookup_limit_per_address=got.lookup_limit_per_address,
        create_limit_per_address=got.create_limit_per_address,
        forwarded_hops=got.forwarded_hops,
        metrics_port=got.metrics_port,
        cors_origins=got.cors_origins,
        stream=got.stream.settings,
        proxy_url=got.proxy_url,
        embed_frame_ancestors=got.embed_frame_ancestors,
        demo_site_key=got.demo_site_key,
        http=got.http,
        log=got.log,
    )
