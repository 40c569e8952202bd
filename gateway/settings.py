"""Every COBROWSE_* environment variable, declared once, and the one reader of them.

A variable is a `Var`: its name, a parser (text to value, raising ValueError that says what
is wrong), its default, a one-line meaning and its constraints. A component's settings are a
frozen dataclass whose fields name the variables it reads (`setting(VAR)`); a variable that
several components share (the NATS URL, the stream, the token and admin keys, logging) is
declared once here and listed by each. `read(GatewaySettings, environ)` parses every field,
checks every constraint and cross-field rule, and raises one `SettingsError` listing every bad
value with its variable's name: it never stops at the first.

Sans-I/O: the reader takes a mapping and never looks at os.environ; `from_environ` is the thin
convenience for the processes' entry points. A command-line flag overrides the variable beside
it by passing its text as an override, so a bad flag is checked by the same rules and named by
its flag. Blank values mean "not set". A secret's value is never repeated in a message.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Generic, TypeVar
from urllib.parse import urlsplit

import limits

from .budget import BudgetSettings
from .codec import MAX_EVENTS_PER_BATCH, MAX_FRAME_BYTES
from .streams import StreamSettings
from .tokens import Keyring

T = TypeVar("T")
S = TypeVar("S")

MIB = 1024 * 1024
MIN_SECRET_LEN = 16  # agent API keys and the admin key
SITE_KEY_RE = re.compile(r"[A-Za-z0-9_-]{8,128}")
GATEWAY_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")  # a NATS subject token and a KV key
DUPLICATE_WINDOW = StreamSettings.duplicate_window  # JetStream refuses a max age below it


class SettingsError(ValueError):
    """The settings cannot be used; `problems` names every bad variable and what is wrong."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))

    def report(self, prog: str) -> str:
        """The message a command prints before it exits with status 2."""
        lines = "".join(f"  {p}\n" for p in self.problems)
        return f"{prog}: error: bad configuration:\n{lines}"


# ---- declarations ------------------------------------------------------------------------


@dataclass(frozen=True)
class Var(Generic[T]):
    """One environment variable. `parse` turns its text into a value or raises ValueError
    with what is wrong ("is not an integer"); each check returns a complaint or None."""

    name: str
    default: T | None
    parse: Callable[[Any], T]
    meaning: str
    checks: tuple[Callable[[T], str | None], ...] = ()
    secret: bool = False
    form: str | None = None  # the expected format, said when a required one is missing
    shown_default: str | None = None  # how the docs show a computed default

    def doc_default(self) -> str:
        if self.shown_default is not None:
            return self.shown_default
        if self.default is None:
            return "none"
        if isinstance(self.default, tuple):
            return f"`{','.join(self.default)}`" if self.default else "empty"
        if isinstance(self.default, str):
            return f"`{self.default}`" if self.default else "empty"
        return f"`{_num(self.default)}`"


def setting(var: Var[Any], *, required: bool = False) -> Any:
    """A settings field read from `var` (a required one has no default)."""
    meta = {"var": var, "required": required}
    if required:
        return field(metadata=meta)
    return field(default=var.default, metadata=meta)


def group(kind: type) -> Any:
    """A settings field holding a group of variables that several components share."""
    return field(default_factory=kind, metadata={"group": kind})


@dataclass(frozen=True)
class Rule:
    """A cross-field rule: `broken(*values of needs)` returns a complaint about the variable
    of field `about`, or None. It runs only when every field it needs parsed."""

    about: str
    needs: tuple[str, ...]
    broken: Callable[..., str | None]


# ---- parsers and checks ------------------------------------------------------------------


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _text(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError("is not a string")
    return raw


def integer(raw: Any) -> int:
    try:
        return int(_text(raw), 10)
    except ValueError:
        raise ValueError("is not an integer") from None


def number(raw: Any) -> float:
    try:
        value = float(_text(raw))
    except ValueError:
        raise ValueError("is not a number") from None
    if not math.isfinite(value):
        raise ValueError("is not a finite number")
    return value


def text(raw: Any) -> str:
    return _text(raw)


def at_least(low: float, why: str = "") -> Callable[[float], str | None]:
    note = f" ({why})" if why else ""
    return lambda v: None if v >= low else f"must be at least {_num(low)}{note}"


def above(low: float) -> Callable[[float], str | None]:
    return lambda v: None if v > low else f"must be greater than {_num(low)}"


def between(low: int, high: int) -> Callable[[float], str | None]:
    return lambda v: None if low <= v <= high else f"must be from {low} to {high}"


def one_of(*choices: str, fold: Callable[[str], str] = str) -> Callable[[Any], str]:
    said = " or ".join(f"'{c}'" for c in choices) if len(choices) == 2 else ", ".join(choices)

    def parse(raw: Any) -> str:
        value = fold(_text(raw))
        if value not in choices:
            raise ValueError(f"must be {said}" if len(choices) == 2 else f"must be one of {said}")
        return value

    return parse


def port(raw: Any) -> int:
    value = integer(raw)
    if not 0 <= value <= 65535:
        raise ValueError("is not a TCP port (0 to 65535)")
    return value


def optional_port(raw: Any) -> int | None:
    """A port, where 0 means none."""
    return port(raw) or None


def keyring(raw: Any) -> Keyring:
    try:
        return Keyring.parse(_text(raw))
    except ValueError as exc:
        raise ValueError(
            f"is not 'kid:secret[,kid:secret]' with secrets of at least 16 bytes ({exc})"
        ) from None


def secret_key(raw: Any) -> str:
    value = _text(raw)
    if len(value) < MIN_SECRET_LEN or any(c.isspace() for c in value):
        raise ValueError(f"must be at least {MIN_SECRET_LEN} characters without spaces")
    return value


def rate_limit(raw: Any) -> str:
    value = _text(raw)
    try:
        limits.parse(value)
    except ValueError:
        raise ValueError("is not a rate like '10/minute'") from None
    return value


def comma_list(raw: Any) -> tuple[str, ...]:
    return tuple(p.strip() for p in _text(raw).split(",") if p.strip())


def _url(raw: Any, schemes: tuple[str, ...]) -> str:
    value = _text(raw)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"is not a {'/'.join(schemes)} URL with a host")
    if parts.query or parts.fragment or any(c.isspace() for c in value):
        raise ValueError("must not carry a query, a fragment or spaces")
    return value


def nats_urls(raw: Any) -> tuple[str, ...]:
    urls = comma_list(raw)
    if not urls:
        raise ValueError("names no server")
    for url in urls:
        try:
            _url(url, ("nats", "tls", "ws", "wss"))
        except ValueError:
            what = "is not" if len(urls) == 1 else f"has {url!r}, not"
            raise ValueError(f"{what} a nats://, tls://, ws:// or wss:// URL with a host") from None
    return urls


def nats_user(raw: Any) -> str:
    value = _text(raw)
    if any(c.isspace() or not c.isprintable() for c in value) or len(value) > 256:
        raise ValueError("must be at most 256 printable characters without spaces")
    return value


def file_path(raw: Any) -> str:
    """An absolute path (a mounted Secret's file): a relative one would depend on where the
    process happened to start."""
    value = _text(raw)
    if not value.startswith("/") or any(not c.isprintable() for c in value):
        raise ValueError("is not an absolute file path")
    return value


def ws_url(raw: Any) -> str:
    return _url(raw, ("ws", "wss"))


def http_base_url(raw: Any) -> str:
    """An http(s) base URL that paths are appended to; a trailing slash is dropped."""
    return _url(raw, ("http", "https")).rstrip("/")


def origins(raw: Any) -> tuple[str, ...]:
    """`*` or origins like https://desk.example.com[:port], separated by commas."""
    found = comma_list(raw)
    if not found:
        raise ValueError("names no origin")
    for origin in found:
        if origin == "*":
            continue
        parts = urlsplit(origin)
        if (
            parts.scheme not in ("http", "https")
            or not parts.netloc
            or parts.path
            or parts.query
            or parts.fragment
        ):
            what = "is not" if len(found) == 1 else f"has {origin!r}, not"
            raise ValueError(f"{what} '*' or an origin like https://host[:port]")
    return found


def csp_sources(raw: Any) -> str:
    """A CSP source list: printable, without the ';' and ',' that would end the directive."""
    value = " ".join(_text(raw).split())
    if any(c in value for c in ";,") or not value.isprintable():
        raise ValueError("is not a CSP source list (sources separated by spaces, no ';' or ',')")
    return value


def gateway_id(raw: Any) -> str:
    value = _text(raw)
    if not GATEWAY_ID_RE.fullmatch(value):
        raise ValueError("must be 1 to 64 letters, digits, '-' or '_'")
    return value


def site_key(raw: Any) -> str:
    value = _text(raw)
    if not SITE_KEY_RE.fullmatch(value):
        raise ValueError("must be 8-128 characters of [A-Za-z0-9_-]")
    return value


def workers(raw: Any) -> int | None:
    """A process count, where 0 means the CPU count (None)."""
    value = integer(raw)
    if not 0 <= value <= 1024:
        raise ValueError("must be from 0 (the CPU count) to 1024")
    return value or None


def pairs(raw: Any) -> dict[str, str]:
    """'key:name[,key:name...]' (or, from a JSON file, an object) -> {key: name}. Complaints
    name the names (labels), never a key: agent keys are secret."""
    if isinstance(raw, Mapping):
        items = [(str(k).strip(), str(v).strip()) for k, v in raw.items()]
    else:
        items = []
        for part in _text(raw).split(","):
            part = part.strip()
            if not part:
                continue
            key, sep, name = part.partition(":")
            if not sep or not key.strip() or not name.strip():
                raise ValueError("must look like 'key:name[,key:name...]'")
            items.append((key.strip(), name.strip()))
    out: dict[str, str] = {}
    for key, name in items:
        if key in out:
            raise ValueError(f"has a key listed twice ({name!r} and {out[key]!r})")
        out[key] = name
    if not out:
        raise ValueError("is empty")
    return out


def site_scopes(raw: Any) -> dict[str, frozenset[str]]:
    """'label:site[+site...][,...]' (or a JSON object of the same) -> {label: sites}."""
    out: dict[str, frozenset[str]] = {}
    for label, sites in pairs(raw).items():
        names = frozenset(x.strip() for x in sites.split("+") if x.strip())
        if not names:
            raise ValueError(f"gives {label!r} no site")
        out[label] = names
    return out


def each_site_key(keys: dict[str, str]) -> str | None:
    for key, site in keys.items():
        if not SITE_KEY_RE.fullmatch(key):
            return f"has a key for site {site!r} that is not 8-128 characters of [A-Za-z0-9_-]"
    return None


def each_agent_key(keys: dict[str, str]) -> str | None:
    for key, label in keys.items():
        if len(key) < MIN_SECRET_LEN or any(c.isspace() for c in key):
            return (
                f"has the key labelled {label!r} shorter than {MIN_SECRET_LEN} characters "
                "or with spaces (each key must be at least 16 characters without spaces)"
            )
    return None


# ---- the variables -----------------------------------------------------------------------
# Shared: read by more than one component.

TOKEN_KEYS = Var(
    "COBROWSE_TOKEN_KEYS",
    None,
    keyring,
    "`kid:secret[,kid:secret…]`, the join and resume token keys, the same in every "
    "component: the first key signs, all verify; secrets of at least 16 bytes",
    secret=True,
    form="'kid:secret[,kid:secret]'",
)
ADMIN_KEY = Var(
    "COBROWSE_ADMIN_KEY",
    None,
    secret_key,
    "bearer key for drains (the gateway's `POST /admin/drain`, the API's drain endpoint), "
    "at least 16 characters without spaces; unset: drains over HTTP are refused",
    secret=True,
)
NATS_URL = Var(
    "COBROWSE_NATS_URL",
    ("nats://127.0.0.1:4222",),
    nats_urls,
    "NATS server URLs (`nats://`, `tls://`, `ws://`, `wss://`), separated by commas",
)
NATS_USER = Var(
    "COBROWSE_NATS_USER",
    None,
    nats_user,
    "user name this component gives NATS (with `COBROWSE_NATS_PASSWORD_FILE`); unset: no "
    "authentication",
)
NATS_PASSWORD_FILE = Var(
    "COBROWSE_NATS_PASSWORD_FILE",
    None,
    file_path,
    "path of a file holding the NATS user's password (a mounted Secret): a password never "
    "goes on a command line",
)
NATS_TLS_CA = Var(
    "COBROWSE_NATS_TLS_CA",
    None,
    file_path,
    "PEM file of the CA that signs the NATS servers' certificates; set: every NATS "
    "connection uses TLS and checks the server's certificate and name",
)
NATS_TLS_CERT = Var(
    "COBROWSE_NATS_TLS_CERT",
    None,
    file_path,
    "PEM client certificate for NATS servers that verify clients (mutual TLS), with "
    "`COBROWSE_NATS_TLS_KEY`",
)
NATS_TLS_KEY = Var(
    "COBROWSE_NATS_TLS_KEY",
    None,
    file_path,
    "PEM private key of `COBROWSE_NATS_TLS_CERT`",
)
STREAM_STORAGE = Var(
    "COBROWSE_STREAM_STORAGE",
    StreamSettings.storage,
    one_of("memory", "file"),
    "`memory` or `file`; it cannot change for an existing stream",
)
STREAM_REPLICAS = Var(
    "COBROWSE_STREAM_REPLICAS",
    StreamSettings.replicas,
    integer,
    "stream and KV replicas, 1 to 5 (`3` on a 3-node cluster); a KV bucket takes it only "
    "when it is created",
    checks=(between(1, 5),),
)
STREAM_MAX_AGE = Var(
    "COBROWSE_STREAM_MAX_AGE",
    StreamSettings.max_age,
    number,
    f"seconds events are kept, at least the stream's duplicate window "
    f"({_num(DUPLICATE_WINDOW)}); the session KV bucket's TTL when it is created",
    checks=(at_least(DUPLICATE_WINDOW, "the stream's duplicate window"),),
    shown_default=f"`{_num(StreamSettings.max_age)}` (6 h)",
)
STREAM_MAX_MSGS_PER_SESSION = Var(
    "COBROWSE_STREAM_MAX_MSGS_PER_SESSION",
    StreamSettings.max_msgs_per_subject,
    integer,
    "messages kept per subject, that is per session and direction (each agent separately), "
    "at least 1",
    checks=(at_least(1),),
)
STREAM_MAX_BYTES = Var(
    "COBROWSE_STREAM_MAX_BYTES",
    StreamSettings.max_bytes,
    integer,
    "bytes the stream keeps for all sessions together, at least 16 MiB; when full, the "
    "oldest messages go (discard old). It must fit the NATS server's JetStream store for "
    "the chosen storage (`max_memory_store` / `max_file_store`)",
    checks=(at_least(16 * MIB),),
    shown_default=f"`{StreamSettings.max_bytes}` (128 MiB)",
)
LOG_LEVEL = Var(
    "COBROWSE_LOG_LEVEL",
    "INFO",
    one_of("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", fold=str.upper),
    "`DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL`, in any case",
)
LOG_FORMAT = Var(
    "COBROWSE_LOG_FORMAT",
    "kv",
    one_of("kv", "json"),
    "`kv` (key=value) or `json`: one line per event, on stderr",
)
HTTP_HEADER_TIMEOUT = Var(
    "COBROWSE_HTTP_HEADER_TIMEOUT",
    5.0,
    number,
    "seconds an HTTP client has to send a request's headers, counted from connecting or from "
    "the previous response (so also how long an idle keep-alive connection stays open); "
    "slower: the connection is closed. Greater than 0",
    checks=(above(0),),
)
HTTP_BODY_TIMEOUT = Var(
    "COBROWSE_HTTP_BODY_TIMEOUT",
    30.0,
    number,
    "seconds an HTTP client has to send a request's whole body once its headers are in; "
    "slower: `408` and the connection is closed. Greater than 0",
    checks=(above(0),),
)
PROXY_PUBLIC_URL = Var(
    "COBROWSE_PROXY_PUBLIC_URL",
    None,
    http_base_url,
    "the asset proxy's public http(s) base URL, without query or fragment: the proxy "
    "prefixes its signed `/v1/asset?…` URLs with it (unset: `http://127.0.0.1:8090`); the "
    "router gives it to viewers and allows it in the embed page's CSP (unset: no proxy)",
)

# The gateway (python -m gateway).

GATEWAY_HOST = Var("COBROWSE_GATEWAY_HOST", "127.0.0.1", text, "listen address")
GATEWAY_PORT = Var(
    "COBROWSE_GATEWAY_PORT", 8765, port, "WebSocket port, 0 to 65535 (0: any free port)"
)
GATEWAY_ID = Var(
    "COBROWSE_GATEWAY_ID",
    None,
    gateway_id,
    "gateway id, 1 to 64 letters, digits, `-` or `_`: sent in `welcome.gw`, written in logs, "
    "its membership key",
    shown_default="`gw-<random>`",
)
GATEWAY_PUBLIC_URL = Var(
    "COBROWSE_GATEWAY_PUBLIC_URL",
    None,
    ws_url,
    "the `ws://` or `wss://` URL clients reach this gateway at (membership, start-up line)",
    shown_default="`ws://<host>:<port>/`",
)
GATEWAY_HEALTH_PORT = Var(
    "COBROWSE_GATEWAY_HEALTH_PORT",
    None,
    optional_port,
    "admin port (`/healthz`, `/readyz`, `/metrics`, `POST /admin/drain`), not the WebSocket "
    "port; `0`: not served. With several workers the supervisor serves it and worker i "
    "serves port + 1 + i",
)
GATEWAY_WORKERS = Var(
    "COBROWSE_GATEWAY_WORKERS",
    None,
    workers,
    "worker processes sharing the WebSocket port (SO_REUSEPORT), each registered as "
    "`<id>.w<i>`; `0`: the CPU count",
    shown_default="the CPU count",
)
GATEWAY_WORKER_STUCK_AFTER = Var(
    "COBROWSE_GATEWAY_WORKER_STUCK_AFTER",
    15.0,
    number,
    "seconds a worker may leave the supervisor's probes of its `/readyz` unanswered before "
    "the supervisor's `/healthz` fails (and the kubelet restarts the pod), at least 1",
    checks=(at_least(1),),
)
GATEWAY_READ_HUB = Var(
    "COBROWSE_GATEWAY_READ_HUB",
    "on",
    one_of("on", "off"),
    "`on`: one task reads every client socket, over its own epoll (gateway/read_hub.py; "
    "where the platform has no epoll, `off` regardless); `off`: each connection's task "
    "reads its own socket, a task wake per frame (the switch for a suspected hub problem)",
)
GATEWAY_FORWARDED_HOPS = Var(
    "COBROWSE_GATEWAY_FORWARDED_HOPS",
    0,
    integer,
    "trusted reverse proxies in front that append to `X-Forwarded-For`; the per-address "
    "limit's client is that many entries from the right (0: the TCP peer)",
    checks=(at_least(0),),
)
DRAIN_WINDOW = Var(
    "COBROWSE_DRAIN_WINDOW",
    30.0,
    number,
    "seconds over which a drain spreads its reconnect notices, greater than 0",
    checks=(above(0),),
)
HELLO_TIMEOUT = Var(
    "COBROWSE_HELLO_TIMEOUT",
    10.0,
    number,
    "seconds a new connection has to send `hello`, greater than 0",
    checks=(above(0),),
)
ADMIT_NEW_RATE = Var(
    "COBROWSE_ADMIT_NEW_RATE",
    50.0,
    number,
    "new sessions admitted per second by each gateway process (each worker has its own "
    "buckets): the token-bucket rate, at least 0",
    checks=(at_least(0),),
)
ADMIT_NEW_BURST = Var(
    "COBROWSE_ADMIT_NEW_BURST",
    100.0,
    number,
    "the new-session bucket's size, at least 1",
    checks=(at_least(1),),
)
ADMIT_RESUME_RATE = Var(
    "COBROWSE_ADMIT_RESUME_RATE",
    500.0,
    number,
    "resumes admitted per second by each gateway process, the drain lane (at least 0)",
    checks=(at_least(0),),
)
ADMIT_RESUME_BURST = Var(
    "COBROWSE_ADMIT_RESUME_BURST",
    2000.0,
    number,
    "the resume bucket's size, at least 1",
    checks=(at_least(1),),
)
ADMIT_NEW_PER_ADDRESS = Var(
    "COBROWSE_ADMIT_NEW_PER_ADDRESS",
    "120/minute",
    rate_limit,
    "new sessions per client address and gateway (its worker processes share one count), "
    "in the `limits` package's notation",
)
BUDGET_EVENT_RATE = Var(
    "COBROWSE_BUDGET_EVENT_RATE",
    BudgetSettings.event_rate,
    number,
    "events per second one connection may send, sustained (its token bucket's rate), "
    "greater than 0",
    checks=(above(0),),
)
BUDGET_EVENT_BURST = Var(
    "COBROWSE_BUDGET_EVENT_BURST",
    BudgetSettings.event_burst,
    number,
    f"events one connection may send at once (the bucket's size), at least "
    f"{MAX_EVENTS_PER_BATCH} (one full frame)",
    checks=(at_least(MAX_EVENTS_PER_BATCH, "one full frame"),),
)
BUDGET_BYTE_RATE = Var(
    "COBROWSE_BUDGET_BYTE_RATE",
    BudgetSettings.byte_rate,
    number,
    "bytes of frames per second one connection may send, sustained, greater than 0",
    checks=(above(0),),
    shown_default=f"`{_num(BudgetSettings.byte_rate)}` (2 MiB/s)",
)
BUDGET_BYTE_BURST = Var(
    "COBROWSE_BUDGET_BYTE_BURST",
    BudgetSettings.byte_burst,
    number,
    f"bytes one connection may send at once, at least {MAX_FRAME_BYTES} (one full frame)",
    checks=(at_least(MAX_FRAME_BYTES, "one full frame"),),
    shown_default=f"`{_num(BudgetSettings.byte_burst)}` (8 MiB)",
)
BUDGET_GRACE = Var(
    "COBROWSE_BUDGET_GRACE",
    BudgetSettings.grace,
    number,
    "seconds a connection may stay over its budget, slowed, before it is closed with 4010 "
    "`over_budget`, at least 0",
    checks=(at_least(0),),
)
BUDGET_SESSION_BYTES = Var(
    "COBROWSE_BUDGET_SESSION_BYTES",
    BudgetSettings.session_bytes,
    number,
    f"bytes of frames a session's visitor may send over the session's life (across all its "
    f"connections); past it, close 4011 `session_full` and later visitor hellos are refused; "
    f"at least {MAX_FRAME_BYTES} (one full frame)",
    checks=(at_least(MAX_FRAME_BYTES, "one full frame"),),
    shown_default=f"`{_num(BudgetSettings.session_bytes)}` (4 GiB)",
)

# The router (python -m router serve).

CONFIG = Var(
    "COBROWSE_CONFIG",
    None,
    text,
    "a JSON file: one flat object with any of these settings, named in lower case without "
    "`COBROWSE_`; a variable that is set wins over the file",
)
SITE_KEYS = Var(
    "COBROWSE_SITE_KEYS",
    None,
    pairs,
    "`sitekey:sitename[,…]`; each site key is 8–128 characters of `[A-Za-z0-9_-]` (public: "
    "it is in your pages)",
    checks=(each_site_key,),
    form="'sitekey:sitename[,sitekey:sitename]'",
)
AGENT_KEYS = Var(
    "COBROWSE_AGENT_KEYS",
    None,
    pairs,
    "`apikey:label[,…]`; each key is secret, at least 16 characters without spaces, and "
    "differs from every site key",
    checks=(each_agent_key,),
    secret=True,
    form="'apikey:label[,apikey:label]'",
)
AGENT_SITES = Var(
    "COBROWSE_AGENT_SITES",
    None,
    site_scopes,
    "`label:site[+site…][,…]`: the agent key with this label in `COBROWSE_AGENT_KEYS` lists, "
    "joins, inspects and ends only these sites' sessions (names from `COBROWSE_SITE_KEYS`); "
    "a key whose label is not listed may see every site",
    form="'label:site[+site][,label:site]'",
)
API_HOST = Var("COBROWSE_API_HOST", "127.0.0.1", text, "listen address")
API_PORT = Var("COBROWSE_API_PORT", 8080, port, "listen port, 0 to 65535")
CODE_TTL = Var(
    "COBROWSE_CODE_TTL",
    1200.0,
    number,
    "seconds a short code works when no agent has joined, greater than 0",
    checks=(above(0),),
)
TOKEN_TTL = Var(
    "COBROWSE_TOKEN_TTL",
    3600.0,
    number,
    "seconds visitor and agent join tokens live, at least 1",
    checks=(at_least(1),),
)
LOOKUP_LIMIT_PER_KEY = Var(
    "COBROWSE_LOOKUP_LIMIT_PER_KEY",
    "10/minute",
    rate_limit,
    "code lookups per agent API key (`limits` notation)",
)
LOOKUP_LIMIT_PER_ADDRESS = Var(
    "COBROWSE_LOOKUP_LIMIT_PER_ADDRESS",
    "10/minute",
    rate_limit,
    "code lookups per client address",
)
CREATE_LIMIT_PER_ADDRESS = Var(
    "COBROWSE_CREATE_LIMIT_PER_ADDRESS",
    "120/minute",
    rate_limit,
    "session creations per client address",
)
API_FORWARDED_HOPS = Var(
    "COBROWSE_API_FORWARDED_HOPS",
    0,
    integer,
    "trusted reverse proxies in front of the router that append to `X-Forwarded-For`",
    checks=(at_least(0),),
)
API_METRICS_PORT = Var(
    "COBROWSE_API_METRICS_PORT",
    None,
    optional_port,
    "port of a listener of its own for `/metrics` (and `/healthz`, `/readyz`), which an "
    "Ingress in front of the API port never reaches; unset or `0`: `/metrics` on the API port, "
    "refused (404) to requests that came through a trusted proxy",
)
API_CORS_ORIGINS = Var(
    "COBROWSE_API_CORS_ORIGINS",
    ("*",),
    origins,
    "browser origins allowed to call the API: `*` or origins like `https://desk.example.com`, "
    "separated by commas",
)
EMBED_FRAME_ANCESTORS = Var(
    "COBROWSE_EMBED_FRAME_ANCESTORS",
    "*",
    csp_sources,
    "CSP `frame-ancestors` of `/embed`, the products allowed to embed the viewer, separated "
    "by spaces (e.g. `https://desk.example.com`)",
)
DEMO_SITE_KEY = Var(
    "COBROWSE_DEMO_SITE_KEY",
    None,
    site_key,
    "serve `/demo` with this site key, one of `COBROWSE_SITE_KEYS` (development; `make run` "
    "sets it)",
)

# The asset proxy (python -m proxy).

PROXY_KEYS = Var(
    "COBROWSE_PROXY_KEYS",
    None,
    keyring,
    "`kid:secret[,kid:secret]`, the keys that sign asset URLs, current first, secrets of at "
    "least 16 bytes; unset: a random key per process",
    secret=True,
)
PROXY_ALLOW = Var(
    "COBROWSE_PROXY_ALLOW",
    "",
    text,
    "SSRF allow-list: CIDR networks, IP addresses and host names the proxy may reach although "
    "they are not public, separated by commas",
)
PROXY_FORWARDED_HOPS = Var(
    "COBROWSE_PROXY_FORWARDED_HOPS",
    0,
    integer,
    "trusted reverse proxies in front of the proxy that append to `X-Forwarded-For` (the "
    "access log's client address)",
    checks=(at_least(0),),
)
PROXY_MAX_CSS_BYTES = Var(
    "COBROWSE_PROXY_MAX_CSS_BYTES",
    5 * MIB,
    integer,
    "largest body fetched (stylesheets and assets) and largest `POST /v1/rewrite` input, "
    "at least 1",
    checks=(at_least(1),),
    shown_default="`5242880` (5 MiB)",
)
PROXY_TIMEOUT = Var(
    "COBROWSE_PROXY_TIMEOUT",
    10.0,
    number,
    "seconds per upstream fetch, greater than 0",
    checks=(above(0),),
)
PROXY_MAX_REDIRECTS = Var(
    "COBROWSE_PROXY_MAX_REDIRECTS", 5, integer, "redirects followed, at least 0", (at_least(0),)
)
PROXY_CACHE_BYTES = Var(
    "COBROWSE_PROXY_CACHE_BYTES",
    64 * MIB,
    integer,
    "bytes the response cache holds, at least 0",
    checks=(at_least(0),),
    shown_default="`67108864` (64 MiB)",
)
PROXY_URL_TTL = Var(
    "COBROWSE_PROXY_URL_TTL",
    3600,
    integer,
    "seconds a signed asset URL stays valid, at least 1",
    checks=(at_least(1),),
)
PROXY_CORS_ORIGINS = Var(
    "COBROWSE_PROXY_CORS_ORIGINS",
    ("*",),
    origins,
    "pages allowed to call `POST /v1/sign` and `POST /v1/rewrite`: `*` or origins, "
    "separated by commas",
)


# ---- the settings of each component --------------------------------------------------------


@dataclass(frozen=True)
class LogSettings:
    level: str = setting(LOG_LEVEL)
    format: str = setting(LOG_FORMAT)


@dataclass(frozen=True)
class HttpTimeouts:
    """How long the router's and the proxy's HTTP clients may take to send a request: a
    client that trickles its headers or body would otherwise hold a connection for ever."""

    header: float = setting(HTTP_HEADER_TIMEOUT)
    body: float = setting(HTTP_BODY_TIMEOUT)


def _together(other: Var[Any]) -> Callable[[Any, Any], str | None]:
    def broken(this: Any, that: Any) -> str | None:
        if this is None and that is not None:
            return f"is not set, but {other.name} is (they go together)"
        return None

    return broken


@dataclass(frozen=True)
class NatsAuthVars:
    """How the gateways and the router authenticate to NATS and check its TLS
    (gateway/nats_security.py): files, so that no secret is on a command line."""

    user: str | None = setting(NATS_USER)
    password_file: str | None = setting(NATS_PASSWORD_FILE)
    ca_file: str | None = setting(NATS_TLS_CA)
    cert_file: str | None = setting(NATS_TLS_CERT)
    key_file: str | None = setting(NATS_TLS_KEY)

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule("password_file", ("password_file", "user"), _together(NATS_USER)),
        Rule("user", ("user", "password_file"), _together(NATS_PASSWORD_FILE)),
        Rule("key_file", ("key_file", "cert_file"), _together(NATS_TLS_CERT)),
        Rule("cert_file", ("cert_file", "key_file"), _together(NATS_TLS_KEY)),
    )


@dataclass(frozen=True)
class StreamVars:
    """The stream and KV settings: the gateways and the router apply them at every start,
    so give them the same values."""

    storage: str = setting(STREAM_STORAGE)
    replicas: int = setting(STREAM_REPLICAS)
    max_age: float = setting(STREAM_MAX_AGE)
    max_msgs_per_session: int = setting(STREAM_MAX_MSGS_PER_SESSION)
    max_bytes: int = setting(STREAM_MAX_BYTES)

    @property
    def settings(self) -> StreamSettings:
        return StreamSettings(
            storage=self.storage,
            replicas=self.replicas,
            max_age=self.max_age,
            max_msgs_per_subject=self.max_msgs_per_session,
            max_bytes=self.max_bytes,
        )


@dataclass(frozen=True)
class BudgetVars:
    """Each connection's send budget (gateway/budget.py), field for field."""

    event_rate: float = setting(BUDGET_EVENT_RATE)
    event_burst: float = setting(BUDGET_EVENT_BURST)
    byte_rate: float = setting(BUDGET_BYTE_RATE)
    byte_burst: float = setting(BUDGET_BYTE_BURST)
    grace: float = setting(BUDGET_GRACE)
    session_bytes: float = setting(BUDGET_SESSION_BYTES)

    @property
    def settings(self) -> BudgetSettings:
        return BudgetSettings(**{f.name: getattr(self, f.name) for f in fields(self)})


@dataclass(frozen=True)
class GatewaySettings:
    token_keys: Keyring = setting(TOKEN_KEYS, required=True)
    host: str = setting(GATEWAY_HOST)
    port: int = setting(GATEWAY_PORT)
    gateway_id: str | None = setting(GATEWAY_ID)
    public_url: str | None = setting(GATEWAY_PUBLIC_URL)
    health_port: int | None = setting(GATEWAY_HEALTH_PORT)
    workers: int | None = setting(GATEWAY_WORKERS)
    worker_stuck_after: float = setting(GATEWAY_WORKER_STUCK_AFTER)
    read_hub: str = setting(GATEWAY_READ_HUB)
    admin_key: str | None = setting(ADMIN_KEY)
    nats_servers: tuple[str, ...] = setting(NATS_URL)
    nats_auth: NatsAuthVars = group(NatsAuthVars)
    stream: StreamVars = group(StreamVars)
    drain_window: float = setting(DRAIN_WINDOW)
    new_rate: float = setting(ADMIT_NEW_RATE)
    new_burst: float = setting(ADMIT_NEW_BURST)
    resume_rate: float = setting(ADMIT_RESUME_RATE)
    resume_burst: float = setting(ADMIT_RESUME_BURST)
    new_per_address: str = setting(ADMIT_NEW_PER_ADDRESS)
    forwarded_hops: int = setting(GATEWAY_FORWARDED_HOPS)
    hello_timeout: float = setting(HELLO_TIMEOUT)
    admin_header_timeout: float = setting(HTTP_HEADER_TIMEOUT)  # the admin port's bound
    budget: BudgetVars = group(BudgetVars)
    log: LogSettings = group(LogSettings)

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "health_port",
            ("health_port", "port"),
            lambda health, ws: (
                f"must differ from the WebSocket port ({GATEWAY_PORT.name})"
                if health is not None and health == ws
                else None
            ),
        ),
    )


def _shared_keys(site: dict[str, str], agent: dict[str, str]) -> str | None:
    if set(site) & set(agent):
        return "has a key that is also a site key (site keys are public, agent keys secret)"
    return None


def _admin_is_other(admin: str | None, site: dict[str, str], agent: dict[str, str]) -> str | None:
    if admin is not None and (admin in site or admin in agent):
        return "must differ from every site and agent key"
    return None


def _scopes_are_known(
    scopes: dict[str, frozenset[str]] | None, site: dict[str, str], agent: dict[str, str]
) -> str | None:
    """A scope naming no agent key, or a site no site key has, is a typo that would lock a
    key out of (or fail to limit it to) the sites meant."""
    if not scopes:
        return None
    labels = sorted(set(scopes) - set(agent.values()))
    if labels:
        return f"names labels no key in {AGENT_KEYS.name} has: {', '.join(labels)}"
    sites = sorted(set().union(*scopes.values()) - set(site.values()))
    if sites:
        return f"names sites no key in {SITE_KEYS.name} has: {', '.join(sites)}"
    return None


def _demo_key_is_a_site_key(demo: str | None, site: dict[str, str]) -> str | None:
    if demo is not None and demo not in site:
        return (
            f"is not one of the keys in {SITE_KEYS.name} (the demo page's snippet would be refused)"
        )
    return None


@dataclass(frozen=True)
class RouterSettings:
    token_keys: Keyring = setting(TOKEN_KEYS, required=True)
    site_keys: dict[str, str] = setting(SITE_KEYS, required=True)
    agent_keys: dict[str, str] = setting(AGENT_KEYS, required=True)
    agent_sites: dict[str, frozenset[str]] | None = setting(AGENT_SITES)
    admin_key: str | None = setting(ADMIN_KEY)
    nats_servers: tuple[str, ...] = setting(NATS_URL)
    nats_auth: NatsAuthVars = group(NatsAuthVars)
    host: str = setting(API_HOST)
    port: int = setting(API_PORT)
    http: HttpTimeouts = group(HttpTimeouts)
    code_ttl: float = setting(CODE_TTL)
    token_ttl: float = setting(TOKEN_TTL)
    lookup_limit_per_key: str = setting(LOOKUP_LIMIT_PER_KEY)
    lookup_limit_per_address: str = setting(LOOKUP_LIMIT_PER_ADDRESS)
    create_limit_per_address: str = setting(CREATE_LIMIT_PER_ADDRESS)
    forwarded_hops: int = setting(API_FORWARDED_HOPS)
    metrics_port: int | None = setting(API_METRICS_PORT)
    cors_origins: tuple[str, ...] = setting(API_CORS_ORIGINS)
    proxy_url: str | None = setting(PROXY_PUBLIC_URL)
    embed_frame_ancestors: str = setting(EMBED_FRAME_ANCESTORS)
    demo_site_key: str | None = setting(DEMO_SITE_KEY)
    stream: StreamVars = group(StreamVars)
    log: LogSettings = group(LogSettings)
    config_file: str | None = setting(CONFIG)

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule("agent_keys", ("site_keys", "agent_keys"), _shared_keys),
        Rule("admin_key", ("admin_key", "site_keys", "agent_keys"), _admin_is_other),
        Rule("demo_site_key", ("demo_site_key", "site_keys"), _demo_key_is_a_site_key),
        Rule("agent_sites", ("agent_sites", "site_keys", "agent_keys"), _scopes_are_known),
    )


@dataclass(frozen=True)
class ProxySettings:
    keys: Keyring | None = setting(PROXY_KEYS)
    public_url: str | None = setting(PROXY_PUBLIC_URL)
    allow: str = setting(PROXY_ALLOW)  # proxy.address_policy.AllowList parses it further
    max_css_bytes: int = setting(PROXY_MAX_CSS_BYTES)
    timeout: float = setting(PROXY_TIMEOUT)
    max_redirects: int = setting(PROXY_MAX_REDIRECTS)
    cache_bytes: int = setting(PROXY_CACHE_BYTES)
    url_ttl: int = setting(PROXY_URL_TTL)
    token_keys: Keyring | None = setting(TOKEN_KEYS)
    cors_origins: tuple[str, ...] = setting(PROXY_CORS_ORIGINS)
    forwarded_hops: int = setting(PROXY_FORWARDED_HOPS)
    http: HttpTimeouts = group(HttpTimeouts)
    log: LogSettings = group(LogSettings)


COMPONENTS: dict[str, type] = {
    "gateway": GatewaySettings,
    "router": RouterSettings,
    "proxy": ProxySettings,
}


# ---- the reader ------------------------------------------------------------------------------

_BAD = object()  # a value that did not parse or pass its checks (its problem is recorded)


class Reader:
    """Reads variables from a mapping, collecting every problem instead of stopping.

    `overrides` are command-line values by variable name (they win over the mapping) and
    `labels` the flag that named each, so a complaint names the flag the user typed. Each
    variable is parsed once however often it is asked for."""

    def __init__(
        self,
        env: Mapping[str, Any],
        *,
        overrides: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        self.env = env
        self.overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        self.labels = dict(labels or {})
        self.problems: list[str] = []
        self._raw: dict[str, Any] = {}
        self._values: dict[str, Any] = {}

    def label(self, var: Var[Any]) -> str:
        return self.labels.get(var.name, var.name) if var.name in self.overrides else var.name

    def raw(self, var: Var[Any]) -> Any:
        """The value as given (stripped), or None when not set or blank."""
        value = self.env.get(var.name)  # always asked, so a recording mapping sees the name
        if var.name in self.overrides:
            value = self.overrides[var.name]
        if isinstance(value, str):
            value = value.strip() or None
        return value

    def complain(self, var: Var[Any], message: str, *, quote: bool = False) -> None:
        raw = self._raw.get(var.name)
        if raw is None or var.secret:
            self.problems.append(f"{self.label(var)} {message}")
        else:
            shown = repr(raw) if quote or not isinstance(raw, str) else raw
            self.problems.append(f"{self.label(var)}={shown} {message}")

    def value(self, var: Var[T], *, required: bool = False) -> T | None:
        """The parsed value (the default when not set); on a problem, record it and return
        the default so that reading can go on."""
        got = self._get(var, required)
        return var.default if got is _BAD else got

    def _get(self, var: Var[Any], required: bool) -> Any:
        if var.name in self._values:
            return self._values[var.name]
        raw = self._raw[var.name] = self.raw(var)
        result: Any = var.default
        if raw is None:
            if required:
                form = f" (format {var.form})" if var.form else ""
                self.problems.append(f"{var.name} is not set{form}")
                result = _BAD
        else:
            try:
                result = var.parse(raw)
            except ValueError as exc:
                self.complain(var, str(exc), quote=True)
                result = _BAD
            else:
                for check in var.checks:
                    complaint = check(result)
                    if complaint:
                        self.complain(var, complaint)
                        result = _BAD
                        break
        self._values[var.name] = result
        return result

    def read(self, kind: type[S]) -> S | None:
        """The settings of `kind`, or None when any of them had a problem (recorded)."""
        got = self._read(kind)
        return None if got is _BAD else got

    def _read(self, kind: type) -> Any:
        values: dict[str, Any] = {}
        bad: set[str] = set()
        by_name = {}
        for f in fields(kind):
            if "group" in f.metadata:
                got = self._read(f.metadata["group"])
            elif "var" in f.metadata:
                by_name[f.name] = f.metadata["var"]
                got = self._get(f.metadata["var"], f.metadata["required"])
            else:
                continue
            if got is _BAD:
                bad.add(f.name)
            else:
                values[f.name] = got
        for rule in getattr(kind, "RULES", ()):
            if bad.intersection(rule.needs):
                continue
            complaint = rule.broken(*(values[n] for n in rule.needs))
            if complaint:
                self.complain(by_name[rule.about], complaint)
                bad.add(rule.about)
        return _BAD if bad else kind(**values)

    def refine(self, var: Var[Any], convert: Callable[[Any], T]) -> T | None:
        """Convert a variable's value further (a type of a package above this one, such as
        the proxy's allow-list); a ValueError is recorded as the variable's problem."""
        got = self._get(var, False)
        if got is _BAD:
            return None
        try:
            return convert(got)
        except ValueError as exc:
            self.complain(var, f"is not valid: {exc}", quote=True)
            return None

    def check(self) -> None:
        """Raise one SettingsError naming every problem recorded so far."""
        if self.problems:
            raise SettingsError(self.problems)


def read(
    kind: type[S],
    env: Mapping[str, Any],
    *,
    overrides: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
) -> S:
    """The settings of `kind` from `env`; raise SettingsError listing every bad value."""
    reader = Reader(env, overrides=overrides, labels=labels)
    got = reader.read(kind)
    reader.check()
    assert got is not None
    return got


def from_environ(kind: type[S], **kw: Any) -> S:
    """`read` on this process's environment: for the entry points."""
    return read(kind, os.environ, **kw)


# ---- introspection: the docs tables and the tests --------------------------------------------


def variables(kind: type) -> Iterator[tuple[Var[Any], bool]]:
    """(variable, required) for every variable a settings class reads, in field order."""
    for f in fields(kind):
        if "group" in f.metadata:
            yield from variables(f.metadata["group"])
        elif "var" in f.metadata:
            yield f.metadata["var"], f.metadata["required"]


def declared() -> list[Var[Any]]:
    """Every variable declared in this module."""
    return [v for v in globals().values() if isinstance(v, Var)]


def table(kind: type, flags: Mapping[str, str] | None = None) -> str:
    """The Markdown table of a component's variables, as the docs show it. With `flags`
    (variable name -> flag), a flag column."""
    head = ["variable", "flag", "default", "meaning"] if flags is not None else None
    head = head or ["variable", "default", "meaning"]
    rows = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for var, required in variables(kind):
        cells = [f"`{var.name}`"]
        if flags is not None:
            flag = flags.get(var.name)
            cells.append(f"`{flag}`" if flag else "—")
        cells += ["**required**" if required else var.doc_default(), var.meaning]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"
