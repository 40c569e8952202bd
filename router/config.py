"""Router settings: environment variables, optionally a JSON file, never keys in code.

Every setting has an environment variable `COBROWSE_<NAME>`. `COBROWSE_CONFIG` may name a
JSON file holding a flat object whose keys are the same names in lower case without the
prefix (`{"site_keys": "...", "api_port": 8080}`); a variable that is set wins over the file.
Keys (token, site, agent, admin) have no defaults: a missing one stops the router at start
with a message saying which and in what format.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import limits

from gateway.streams import StreamSettings
from gateway.tokens import Keyring

SITE_KEY_RE = re.compile(r"[A-Za-z0-9_-]{8,128}")
MIN_SECRET_LEN = 16  # agent API keys and the admin key


class ConfigError(ValueError):
    """The router cannot start with these settings; the message says what to fix."""


@dataclass(frozen=True)
class RouterConfig:
    keyring: Keyring
    site_keys: dict[str, str]  # public site key -> site name
    agent_keys: dict[str, str]  # secret API key -> label (logs only)
    admin_key: str | None = None
    nats_servers: list[str] = field(default_factory=lambda: ["nats://127.0.0.1:4222"])
    host: str = "127.0.0.1"
    port: int = 8080
    code_ttl: float = 1200.0  # a short code works this long unless an agent has joined
    token_ttl: float = 3600.0  # visitor and agent join tokens
    lookup_limit_per_key: str = "10/minute"
    lookup_limit_per_address: str = "10/minute"
    create_limit_per_address: str = "120/minute"
    forwarded_hops: int = 0  # trusted reverse proxies in front (X-Forwarded-For hops)
    cors_origins: tuple[str, ...] = ("*",)
    max_body_bytes: int = 16 * 1024
    stream: StreamSettings = field(default_factory=StreamSettings)
    codes_bucket: str = "cobrowse_codes"
    proxy_url: str | None = None  # the asset proxy's public base URL, told to viewers
    embed_frame_ancestors: str = "*"  # CSP frame-ancestors of /embed: who may embed it
    demo_site_key: str | None = None  # serve /demo with this site key (development only)

    @property
    def codes_ttl(self) -> float:
        """TTL of the short-code bucket: a code stays resolvable for as long as it may be
        used (the code TTL, or the token TTL once an agent has joined)."""
        return max(self.code_ttl, self.token_ttl)


def parse_pairs(spec: str | Mapping[str, str], what: str) -> dict[str, str]:
    """'key:name,key2:name2' (or a JSON object) -> {key: name}."""
    if isinstance(spec, Mapping):
        items = [(str(k), str(v)) for k, v in spec.items()]
    else:
        items = []
        for part in str(spec).split(","):
            part = part.strip()
            if not part:
                continue
            key, sep, name = part.partition(":")
            if not sep or not key.strip() or not name.strip():
                raise ConfigError(f"{what} must look like 'key:name[,key:name...]', got {part!r}")
            items.append((key.strip(), name.strip()))
    out: dict[str, str] = {}
    for key, name in items:
        if key in out:
            raise ConfigError(f"{what}: key listed twice ({name!r} and {out[key]!r})")
        out[key] = name
    if not out:
        raise ConfigError(f"{what} is empty")
    return out


def parse_site_keys(spec: str | Mapping[str, str]) -> dict[str, str]:
    keys = parse_pairs(spec, "COBROWSE_SITE_KEYS")
    for key, site in keys.items():
        if not SITE_KEY_RE.fullmatch(key):
            raise ConfigError(
                f"COBROWSE_SITE_KEYS: the key of site {site!r} must be 8-128 characters "
                "of [A-Za-z0-9_-]"
            )
    return keys


def parse_agent_keys(spec: str | Mapping[str, str]) -> dict[str, str]:
    keys = parse_pairs(spec, "COBROWSE_AGENT_KEYS")
    for key, label in keys.items():
        if len(key) < MIN_SECRET_LEN or any(c.isspace() for c in key):
            raise ConfigError(
                f"COBROWSE_AGENT_KEYS: the key labelled {label!r} must be at least "
                f"{MIN_SECRET_LEN} characters without spaces"
            )
    return keys


def parse_limit(value: str, name: str) -> str:
    try:
        limits.parse(value)
    except ValueError:
        raise ConfigError(f"{name}: {value!r} is not a rate like '10/minute'") from None
    return value


def _file_settings(path: str) -> dict[str, Any]:
    try:
        raw = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"COBROWSE_CONFIG: cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"COBROWSE_CONFIG: {path} is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"COBROWSE_CONFIG: {path} must hold a JSON object")
    return {str(k).lower(): v for k, v in raw.items()}


def load(
    environ: Mapping[str, str] | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
) -> RouterConfig:
    """Build the configuration; raise ConfigError naming every setting that is wrong."""
    env = os.environ if environ is None else environ
    file = _file_settings(env["COBROWSE_CONFIG"]) if env.get("COBROWSE_CONFIG") else {}
    problems: list[str] = []

    def get(name: str, default: Any = None) -> Any:
        var = "COBROWSE_" + name.upper()
        if env.get(var, "") != "":
            return env[var]
        return file.get(name, default)

    def num(name: str, default: float, kind: type = float, minimum: float = 0) -> Any:
        raw = get(name, default)
        try:
            value = kind(raw)
        except (TypeError, ValueError):
            problems.append(f"COBROWSE_{name.upper()}: {raw!r} is not a number")
            return default
        if value < minimum:
            problems.append(f"COBROWSE_{name.upper()}: must be at least {minimum}")
            return default
        return value

    def required(name: str, fmt: str) -> Any:
        value = get(name)
        if value in (None, "", {}):
            problems.append(f"COBROWSE_{name.upper()} is not set (format {fmt})")
        return value

    keyring = site_keys = agent_keys = None
    spec = required("token_keys", "'kid:secret[,kid:secret]'")
    if spec:
        try:
            keyring = Keyring.parse(str(spec))
        except ValueError as exc:
            problems.append(f"COBROWSE_TOKEN_KEYS: {exc}")
    spec = required("site_keys", "'sitekey:sitename[,sitekey:sitename]'")
    if spec:
        try:
            site_keys = parse_site_keys(spec)
        except ConfigError as exc:
            problems.append(str(exc))
    spec = required("agent_keys", "'apikey:label[,apikey:label]'")
    if spec:
        try:
            agent_keys = parse_agent_keys(spec)
        except ConfigError as exc:
            problems.append(str(exc))
    admin_key = get("admin_key") or None
    if admin_key is not None:
        admin_key = str(admin_key)
        if len(admin_key) < MIN_SECRET_LEN or any(c.isspace() for c in admin_key):
            problems.append(
                f"COBROWSE_ADMIN_KEY: must be at least {MIN_SECRET_LEN} characters without spaces"
            )
    if site_keys and agent_keys and set(site_keys) & set(agent_keys):
        problems.append("a site key (public) is also an agent API key (secret): use other keys")
    if admin_key and (
        (agent_keys and admin_key in agent_keys) or (site_keys and admin_key in site_keys)
    ):
        problems.append("COBROWSE_ADMIN_KEY must differ from every site and agent key")

    limits_ = {}
    for name, default in (
        ("lookup_limit_per_key", "10/minute"),
        ("lookup_limit_per_address", "10/minute"),
        ("create_limit_per_address", "120/minute"),
    ):
        value = str(get(name, default))
        try:
            limits_[name] = parse_limit(value, f"COBROWSE_{name.upper()}")
        except ConfigError as exc:
            problems.append(str(exc))
            limits_[name] = default

    storage = str(get("stream_storage", "memory"))
    if storage not in ("memory", "file"):
        problems.append("COBROWSE_STREAM_STORAGE: must be 'memory' or 'file'")
        storage = "memory"
    stream = StreamSettings(
        storage=storage,
        replicas=num("stream_replicas", 1, int, 1),
        max_age=num("stream_max_age", 21600.0, float, 1),
        max_msgs_per_subject=num("stream_max_msgs_per_session", 200_000, int, 1),
    )
    nats_spec = get("nats_url", "nats://127.0.0.1:4222")
    nats_servers = [s.strip() for s in str(nats_spec).split(",") if s.strip()]
    if not nats_servers:
        problems.append("COBROWSE_NATS_URL: no server URL given")
    cors = tuple(o.strip() for o in str(get("api_cors_origins", "*")).split(",") if o.strip())
    cfg_port = port if port is not None else num("api_port", 8080, int, 0)
    if not 0 <= cfg_port <= 65535:
        problems.append(f"COBROWSE_API_PORT: {cfg_port} is not a TCP port")
    values = dict(
        admin_key=admin_key,
        nats_servers=nats_servers,
        host=host or str(get("api_host", "127.0.0.1")),
        port=cfg_port,
        code_ttl=num("code_ttl", 1200.0, float, 0.001),
        token_ttl=num("token_ttl", 3600.0, float, 1),
        forwarded_hops=num("api_forwarded_hops", 0, int, 0),
        cors_origins=cors,
        stream=stream,
        proxy_url=(str(get("proxy_public_url", "")).rstrip("/") or None),
        embed_frame_ancestors=str(get("embed_frame_ancestors", "*")),
        demo_site_key=(str(get("demo_site_key", "")) or None),
        **limits_,
    )
    if problems:
        raise ConfigError("router configuration:\n  " + "\n  ".join(problems))
    assert keyring is not None and site_keys is not None and agent_keys is not None
    return RouterConfig(keyring=keyring, site_keys=site_keys, agent_keys=agent_keys, **values)
