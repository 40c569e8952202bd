"""gateway/settings.py: every COBROWSE_* variable declared once, read by one reader that
reports every bad value at once; the three components' configurations built on it; the
commands exit 2 with that report, never a traceback; the docs' tables are the declarations."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from gateway import settings as s
from gateway.admission_gate import AdmissionSettings
from gateway.config import FLAG_OF as GATEWAY_FLAGS
from gateway.config import GatewayConfig, parse_args
from gateway.streams import StreamSettings
from proxy.config import ConfigError, ProxyConfig
from router.config import FLAG_OF as ROUTER_FLAGS
from router.config import RouterConfig, load

ROOT = Path(__file__).resolve().parents[2]
KEYS = "k1:" + "x" * 32
SITE = "pk_test_1234"
AGENT = "ak_" + "y" * 32
NEEDED = {  # the required variables of each component, valid
    "gateway": {"COBROWSE_TOKEN_KEYS": KEYS},
    "router": {
        "COBROWSE_TOKEN_KEYS": KEYS,
        "COBROWSE_SITE_KEYS": f"{SITE}:shop",
        "COBROWSE_AGENT_KEYS": f"{AGENT}:desk",
    },
    "proxy": {},
}
MIB = 1024 * 1024

# Every variable's default, as the code sees it (None: not set, or required).
DEFAULTS = {
    "COBROWSE_TOKEN_KEYS": None,
    "COBROWSE_ADMIN_KEY": None,
    "COBROWSE_NATS_URL": ("nats://127.0.0.1:4222",),
    "COBROWSE_NATS_USER": None,
    "COBROWSE_NATS_PASSWORD_FILE": None,
    "COBROWSE_NATS_TLS_CA": None,
    "COBROWSE_NATS_TLS_CERT": None,
    "COBROWSE_NATS_TLS_KEY": None,
    "COBROWSE_STREAM_STORAGE": "memory",
    "COBROWSE_STREAM_REPLICAS": 1,
    "COBROWSE_STREAM_MAX_AGE": 21600.0,
    "COBROWSE_STREAM_MAX_MSGS_PER_SESSION": 200_000,
    "COBROWSE_STREAM_MAX_BYTES": 128 * MIB,
    "COBROWSE_BUDGET_EVENT_RATE": 1000.0,
    "COBROWSE_BUDGET_EVENT_BURST": 10_000.0,
    "COBROWSE_BUDGET_BYTE_RATE": 2.0 * MIB,
    "COBROWSE_BUDGET_BYTE_BURST": 8.0 * MIB,
    "COBROWSE_BUDGET_GRACE": 10.0,
    "COBROWSE_BUDGET_SESSION_BYTES": 4096.0 * MIB,
    "COBROWSE_LOG_LEVEL": "INFO",
    "COBROWSE_LOG_FORMAT": "kv",
    "COBROWSE_PROXY_PUBLIC_URL": None,
    "COBROWSE_HTTP_HEADER_TIMEOUT": 5.0,
    "COBROWSE_HTTP_BODY_TIMEOUT": 30.0,
    "COBROWSE_GATEWAY_HOST": "127.0.0.1",
    "COBROWSE_GATEWAY_PORT": 8765,
    "COBROWSE_GATEWAY_ID": None,
    "COBROWSE_GATEWAY_PUBLIC_URL": None,
    "COBROWSE_GATEWAY_HEALTH_PORT": None,
    "COBROWSE_GATEWAY_WORKERS": None,
    "COBROWSE_GATEWAY_WORKER_STUCK_AFTER": 15.0,
    "COBROWSE_GATEWAY_READ_HUB": "on",
    "COBROWSE_GATEWAY_FORWARDED_HOPS": 0,
    "COBROWSE_DRAIN_WINDOW": 30.0,
    "COBROWSE_HELLO_TIMEOUT": 10.0,
    "COBROWSE_ADMIT_NEW_RATE": 50.0,
    "COBROWSE_ADMIT_NEW_BURST": 100.0,
    "COBROWSE_ADMIT_RESUME_RATE": 500.0,
    "COBROWSE_ADMIT_RESUME_BURST": 2000.0,
    "COBROWSE_ADMIT_NEW_PER_ADDRESS": "120/minute",
    "COBROWSE_CONFIG": None,
    "COBROWSE_SITE_KEYS": None,
    "COBROWSE_AGENT_KEYS": None,
    "COBROWSE_API_HOST": "127.0.0.1",
    "COBROWSE_API_PORT": 8080,
    "COBROWSE_CODE_TTL": 1200.0,
    "COBROWSE_TOKEN_TTL": 3600.0,
    "COBROWSE_LOOKUP_LIMIT_PER_KEY": "10/minute",
    "COBROWSE_LOOKUP_LIMIT_PER_ADDRESS": "10/minute",
    "COBROWSE_CREATE_LIMIT_PER_ADDRESS": "120/minute",
    "COBROWSE_API_FORWARDED_HOPS": 0,
    "COBROWSE_API_METRICS_PORT": None,
    "COBROWSE_API_CORS_ORIGINS": ("*",),
    "COBROWSE_EMBED_FRAME_ANCESTORS": "*",
    "COBROWSE_DEMO_SITE_KEY": None,
    "COBROWSE_AGENT_SITES": None,
    "COBROWSE_PROXY_KEYS": None,
    "COBROWSE_PROXY_ALLOW": "",
    "COBROWSE_PROXY_MAX_CSS_BYTES": 5 * MIB,
    "COBROWSE_PROXY_TIMEOUT": 10.0,
    "COBROWSE_PROXY_MAX_REDIRECTS": 5,
    "COBROWSE_PROXY_CACHE_BYTES": 64 * MIB,
    "COBROWSE_PROXY_URL_TTL": 3600,
    "COBROWSE_PROXY_CORS_ORIGINS": ("*",),
    "COBROWSE_PROXY_FORWARDED_HOPS": 0,
}

# A bad value for every variable that has one (a listen address is any text).
BAD = {
    "COBROWSE_TOKEN_KEYS": "k:short",
    "COBROWSE_ADMIN_KEY": "short",
    "COBROWSE_NATS_URL": "http://nats:4222",
    "COBROWSE_NATS_USER": "gate way",
    "COBROWSE_NATS_PASSWORD_FILE": "run/password",
    "COBROWSE_NATS_TLS_CA": "ca.crt",
    "COBROWSE_NATS_TLS_CERT": "./tls.crt",
    "COBROWSE_NATS_TLS_KEY": "~/tls.key",
    "COBROWSE_STREAM_STORAGE": "disk",
    "COBROWSE_STREAM_REPLICAS": "0",
    "COBROWSE_STREAM_MAX_AGE": "60",
    "COBROWSE_STREAM_MAX_MSGS_PER_SESSION": "0",
    "COBROWSE_STREAM_MAX_BYTES": "1000",
    "COBROWSE_BUDGET_EVENT_RATE": "0",
    "COBROWSE_BUDGET_EVENT_BURST": "100",
    "COBROWSE_BUDGET_BYTE_RATE": "-1",
    "COBROWSE_BUDGET_BYTE_BURST": "65536",
    "COBROWSE_BUDGET_GRACE": "-1",
    "COBROWSE_BUDGET_SESSION_BYTES": "65536",
    "COBROWSE_LOG_LEVEL": "loud",
    "COBROWSE_LOG_FORMAT": "xml",
    "COBROWSE_PROXY_PUBLIC_URL": "ftp://x",
    "COBROWSE_HTTP_HEADER_TIMEOUT": "0",
    "COBROWSE_HTTP_BODY_TIMEOUT": "-5",
    "COBROWSE_GATEWAY_PORT": "abc",
    "COBROWSE_GATEWAY_ID": "gw.1",
    "COBROWSE_GATEWAY_PUBLIC_URL": "http://x/",
    "COBROWSE_GATEWAY_HEALTH_PORT": "70000",
    "COBROWSE_GATEWAY_WORKERS": "-1",
    "COBROWSE_GATEWAY_WORKER_STUCK_AFTER": "0.5",
    "COBROWSE_GATEWAY_READ_HUB": "maybe",
    "COBROWSE_GATEWAY_FORWARDED_HOPS": "-1",
    "COBROWSE_DRAIN_WINDOW": "0",
    "COBROWSE_HELLO_TIMEOUT": "soon",
    "COBROWSE_ADMIT_NEW_RATE": "-1",
    "COBROWSE_ADMIT_NEW_BURST": "0.5",
    "COBROWSE_ADMIT_RESUME_RATE": "inf",
    "COBROWSE_ADMIT_RESUME_BURST": "lots",
    "COBROWSE_ADMIT_NEW_PER_ADDRESS": "many",
    "COBROWSE_CONFIG": "/nonexistent/router.json",
    "COBROWSE_SITE_KEYS": "short:x",
    "COBROWSE_AGENT_KEYS": "tooshort:x",
    "COBROWSE_API_PORT": "-1",
    "COBROWSE_CODE_TTL": "0",
    "COBROWSE_TOKEN_TTL": "0.5",
    "COBROWSE_LOOKUP_LIMIT_PER_KEY": "lots",
    "COBROWSE_LOOKUP_LIMIT_PER_ADDRESS": "10/fortnight",
    "COBROWSE_CREATE_LIMIT_PER_ADDRESS": "x/minute",
    "COBROWSE_API_FORWARDED_HOPS": "one",
    "COBROWSE_API_METRICS_PORT": "metrics",
    "COBROWSE_API_CORS_ORIGINS": "desk.example.com",
    "COBROWSE_EMBED_FRAME_ANCESTORS": "'self'; script-src *",
    "COBROWSE_DEMO_SITE_KEY": "bad key!",
    "COBROWSE_AGENT_SITES": "desk:+",
    "COBROWSE_PROXY_KEYS": "nocolon",
    "COBROWSE_PROXY_ALLOW": "10.0.0.1/8",
    "COBROWSE_PROXY_MAX_CSS_BYTES": "5MiB",
    "COBROWSE_PROXY_TIMEOUT": "nan",
    "COBROWSE_PROXY_MAX_REDIRECTS": "-1",
    "COBROWSE_PROXY_CACHE_BYTES": "1.5",
    "COBROWSE_PROXY_URL_TTL": "0",
    "COBROWSE_PROXY_CORS_ORIGINS": "https://x/path",
    "COBROWSE_PROXY_FORWARDED_HOPS": "-2",
}
ANY_TEXT = {"COBROWSE_GATEWAY_HOST", "COBROWSE_API_HOST"}


def names(kind: type) -> list[str]:
    return [v.name for v, _ in s.variables(kind)]


def build(component: str, env: dict[str, str]):
    """The component's own configuration from `env` (no os.environ, no flags)."""
    if component == "gateway":
        return s.read(s.GatewaySettings, env)
    if component == "router":
        return load(env)
    return ProxyConfig.from_env(env)


def problem_names(err: s.SettingsError) -> list[str]:
    """The variable (or flag) each problem is about: its first word, before any '='."""
    return [p.split()[0].split("=")[0] for p in err.problems]


# ---- declarations ------------------------------------------------------------------------


def test_every_variable_is_declared_once_and_read_by_some_component():
    declared = [v.name for v in s.declared()]
    assert len(declared) == len(set(declared)), "a variable is declared twice"
    assert set(declared) == set(DEFAULTS)
    used = {n for kind in s.COMPONENTS.values() for n in names(kind)}
    assert used == set(declared)
    for kind in s.COMPONENTS.values():
        assert len(names(kind)) == len(set(names(kind))), kind


def test_shared_variables_are_the_same_declaration_in_each_component():
    by_component = {c: {v.name: v for v, _ in s.variables(k)} for c, k in s.COMPONENTS.items()}
    for name in ("COBROWSE_TOKEN_KEYS", "COBROWSE_LOG_LEVEL", "COBROWSE_LOG_FORMAT"):
        assert len({id(by_component[c][name]) for c in by_component}) == 1
    for name in ("COBROWSE_NATS_URL", "COBROWSE_ADMIN_KEY", "COBROWSE_STREAM_MAX_AGE"):
        assert by_component["gateway"][name] is by_component["router"][name]
    assert by_component["router"]["COBROWSE_PROXY_PUBLIC_URL"] is s.PROXY_PUBLIC_URL
    assert by_component["proxy"]["COBROWSE_PROXY_PUBLIC_URL"] is s.PROXY_PUBLIC_URL


def test_each_component_reads_only_its_own_variables():
    gateway, router, proxy = (set(names(k)) for k in s.COMPONENTS.values())
    assert "COBROWSE_NATS_URL" not in proxy  # the proxy never talks to NATS
    assert not {n for n in router | proxy if n.startswith("COBROWSE_GATEWAY_")}
    assert not {n for n in gateway if n.startswith(("COBROWSE_API_", "COBROWSE_PROXY_"))}
    assert {"COBROWSE_TOKEN_KEYS", "COBROWSE_LOG_LEVEL", "COBROWSE_LOG_FORMAT"} <= proxy


def test_every_variable_has_a_meaning_and_a_default_as_documented():
    for var in s.declared():
        assert var.default == DEFAULTS[var.name], var.name
        assert var.meaning and "\n" not in var.meaning and "|" not in var.meaning, var.name
        assert var.doc_default()


# ---- defaults -------------------------------------------------------------------------------


@pytest.mark.parametrize("component", ["gateway", "router", "proxy"])
def test_every_default_is_what_a_component_gets_with_nothing_set(component):
    kind = s.COMPONENTS[component]
    got = s.read(kind, NEEDED[component])

    def walk(obj, kind):
        for f in fields(kind):
            value = getattr(obj, f.name)
            if "group" in f.metadata:
                yield from walk(value, f.metadata["group"])
            elif not f.metadata["required"]:
                yield f.metadata["var"].name, value

    seen = dict(walk(got, kind))
    assert seen == {n: DEFAULTS[n] for n in seen}
    assert set(seen) | set(NEEDED[component]) == set(names(kind))


def test_the_configs_take_their_defaults_from_the_declarations():
    keyring = s.keyring(KEYS)
    cfg = parse_args([], NEEDED["gateway"])
    bare = GatewayConfig(keyring=keyring)
    for c in (cfg, bare):
        assert (c.host, c.port, c.drain_window, c.hello_timeout) == ("127.0.0.1", 8765, 30.0, 10.0)
        assert c.nats_servers == ["nats://127.0.0.1:4222"] and c.admin_key is None
    assert cfg.stream == StreamSettings() and cfg.admission == AdmissionSettings()
    assert cfg.health_port is None and cfg.public_url is None
    assert cfg.workers == (os.cpu_count() or 1)
    assert cfg.gateway_id.startswith("gw-") and cfg.log == s.LogSettings()

    router = load(NEEDED["router"])
    bare_router = RouterConfig(keyring=keyring, site_keys={}, agent_keys={})
    for f in ("host", "port", "code_ttl", "token_ttl", "forwarded_hops", "cors_origins"):
        assert getattr(router, f) == getattr(bare_router, f), f
    for f in ("lookup_limit_per_key", "lookup_limit_per_address", "create_limit_per_address"):
        assert getattr(router, f) == getattr(bare_router, f), f
    assert router.stream == StreamSettings() and router.proxy_url is None
    assert router.embed_frame_ancestors == "*" and router.demo_site_key is None

    proxy = ProxyConfig.from_env({})
    assert proxy == ProxyConfig()


def test_admission_settings_defaults_agree_with_the_variables():
    """AdmissionSettings (gateway/admission_gate.py) still writes its own defaults: they
    must be the variables' until it takes them from gateway/settings.py."""
    a = AdmissionSettings()
    assert (a.new_rate, a.new_burst, a.resume_rate, a.resume_burst) == (
        s.ADMIT_NEW_RATE.default,
        s.ADMIT_NEW_BURST.default,
        s.ADMIT_RESUME_RATE.default,
        s.ADMIT_RESUME_BURST.default,
    )
    assert a.new_per_address == s.ADMIT_NEW_PER_ADDRESS.default
    assert a.forwarded_hops == s.GATEWAY_FORWARDED_HOPS.default


def test_blank_values_mean_the_default():
    env = {**NEEDED["gateway"], "COBROWSE_GATEWAY_PORT": "  ", "COBROWSE_LOG_LEVEL": ""}
    got = s.read(s.GatewaySettings, env)
    assert got.port == 8765 and got.log.level == "INFO"


# ---- every bad value, at once ------------------------------------------------------------


@pytest.mark.parametrize("component", ["gateway", "router", "proxy"])
def test_every_bad_value_is_reported_at_once_with_its_name(component):
    kind = s.COMPONENTS[component]
    bad = {n: BAD[n] for n in names(kind) if n not in ANY_TEXT}
    assert set(bad) | (ANY_TEXT & set(names(kind))) == set(names(kind))
    with pytest.raises(s.SettingsError) as err:
        build(component, bad)
    assert sorted(problem_names(err.value)) == sorted(bad)
    text = str(err.value)
    for name, value in bad.items():
        var = next(v for v, _ in s.variables(kind) if v.name == name)
        if not var.secret:
            assert value in text, name


@pytest.mark.parametrize("component", ["gateway", "router", "proxy"])
@given(data=st.data())
@hsettings(max_examples=40, deadline=None)
def test_any_set_of_bad_values_is_named_exactly(component, data):
    kind = s.COMPONENTS[component]
    choices = sorted(n for n in names(kind) if n not in ANY_TEXT)
    chosen = data.draw(st.sets(st.sampled_from(choices), min_size=1))
    env = {**NEEDED[component], **{n: BAD[n] for n in chosen}}
    with pytest.raises(s.SettingsError) as err:
        build(component, env)
    assert sorted(problem_names(err.value)) == sorted(chosen)


@pytest.mark.parametrize("var", s.declared(), ids=lambda v: v.name)
@given(raw=st.text(max_size=40))
@hsettings(max_examples=60, deadline=None)
def test_any_text_parses_or_is_one_clear_problem(var, raw):
    reader = s.Reader({var.name: raw})
    reader.value(var)
    assert len(reader.problems) <= 1
    for p in reader.problems:
        assert p.startswith(var.name + ("" if var.secret else "="))
        assert not p.startswith(var.name + "=") or not var.secret  # a secret is not shown


def test_secrets_are_never_repeated():
    marker = "SECRET-MARKER-x"
    env = {
        "COBROWSE_TOKEN_KEYS": f"k:{marker}",  # too short
        "COBROWSE_PROXY_KEYS": f"p.1:{marker}xxxxxxxxxxxxxxxxxx",  # '.' in the id
        "COBROWSE_ADMIN_KEY": f"{marker} with spaces",
        "COBROWSE_AGENT_KEYS": f"{marker}:a,{marker}:b",  # listed twice, and short
        "COBROWSE_SITE_KEYS": f"{SITE}:shop",
    }
    for build_it in (lambda: load(env), lambda: ProxyConfig.from_env(env)):
        with pytest.raises(s.SettingsError) as err:
            build_it()
        assert marker not in str(err.value)
    site_and_agent = {**NEEDED["router"], "COBROWSE_AGENT_KEYS": f"{SITE}{marker}:a"}
    site_and_agent["COBROWSE_SITE_KEYS"] = f"{SITE}{marker}:shop"
    with pytest.raises(s.SettingsError, match="public") as err:
        load(site_and_agent)
    assert problem_names(err.value) == ["COBROWSE_AGENT_KEYS"]


@given(n=st.integers(min_value=-(10**6), max_value=10**6))
def test_ports_are_0_to_65535(n):
    reader = s.Reader({"COBROWSE_GATEWAY_PORT": str(n), "COBROWSE_API_PORT": f" {n} "})
    assert reader.value(s.GATEWAY_PORT) == (n if 0 <= n <= 65535 else 8765)
    reader.value(s.API_PORT)
    assert len(reader.problems) == (0 if 0 <= n <= 65535 else 2)


# ---- cross-field rules ---------------------------------------------------------------------


@given(age=st.floats(min_value=0, max_value=1e7, allow_nan=False))
def test_max_age_is_at_least_the_duplicate_window(age):
    assert StreamSettings.duplicate_window == s.DUPLICATE_WINDOW == 120
    for kind, env in ((s.GatewaySettings, NEEDED["gateway"]), (s.RouterSettings, NEEDED["router"])):
        env = {**env, "COBROWSE_STREAM_MAX_AGE": repr(age)}
        if age >= 120:
            assert s.read(kind, env).stream.settings.max_age == age
        else:
            with pytest.raises(s.SettingsError) as err:
                s.read(kind, env)
            assert err.value.problems == (
                f"COBROWSE_STREAM_MAX_AGE={age!r} must be at least 120 "
                "(the stream's duplicate window)",
            )


def test_the_example_from_the_issue():
    env = {**NEEDED["gateway"], "COBROWSE_GATEWAY_PORT": "abc", "COBROWSE_STREAM_MAX_AGE": "60"}
    with pytest.raises(s.SettingsError) as err:
        s.read(s.GatewaySettings, env)
    assert str(err.value) == (
        "COBROWSE_GATEWAY_PORT='abc' is not an integer; "
        "COBROWSE_STREAM_MAX_AGE=60 must be at least 120 (the stream's duplicate window)"
    )


def test_gateway_health_port_differs_from_its_websocket_port():
    env = {**NEEDED["gateway"], "COBROWSE_GATEWAY_HEALTH_PORT": "8765"}
    with pytest.raises(s.SettingsError, match="HEALTH_PORT=8765 must differ"):
        s.read(s.GatewaySettings, env)
    assert s.read(s.GatewaySettings, {**env, "COBROWSE_GATEWAY_PORT": "9000"}).health_port == 8765


def test_router_key_rules():
    admin_is_agent = {**NEEDED["router"], "COBROWSE_ADMIN_KEY": AGENT}
    with pytest.raises(s.SettingsError, match="COBROWSE_ADMIN_KEY must differ"):
        load(admin_is_agent)
    demo = {**NEEDED["router"], "COBROWSE_DEMO_SITE_KEY": "pk_other_1234"}
    with pytest.raises(s.SettingsError, match="DEMO_SITE_KEY=pk_other_1234 is not one of"):
        load(demo)
    assert load({**demo, "COBROWSE_DEMO_SITE_KEY": SITE}).demo_site_key == SITE


# ---- flags -----------------------------------------------------------------------------------


def test_a_flag_overrides_the_variable_beside_it():
    env = {**NEEDED["gateway"], "COBROWSE_GATEWAY_PORT": "8000", "COBROWSE_STREAM_MAX_AGE": "60"}
    cfg = parse_args(["--port", "9000", "--max-age", "600", "--nats", "nats://a:1,nats://b:2"], env)
    assert cfg.port == 9000 and cfg.stream.max_age == 600
    assert cfg.nats_servers == ["nats://a:1", "nats://b:2"]
    router = load(NEEDED["router"] | {"COBROWSE_API_PORT": "abc"}, host="0.0.0.0", port=7000)
    assert (router.host, router.port) == ("0.0.0.0", 7000)


def test_a_bad_flag_is_named_by_its_flag_and_exits_2(capsys):
    env = {**NEEDED["gateway"], "COBROWSE_DRAIN_WINDOW": "-3"}
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--max-age", "60", "--port", "http"], env)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--max-age=60 must be at least 120 (the stream's duplicate window)" in err
    assert "--port='http' is not an integer" in err
    assert "COBROWSE_DRAIN_WINDOW=-3 must be greater than 0" in err
    with pytest.raises(s.SettingsError, match="--port='x' is not an integer"):
        load(NEEDED["router"], port="x")


def test_every_gateway_flag_names_a_gateway_variable():
    gateway = set(names(s.GatewaySettings))
    assert set(GATEWAY_FLAGS) <= gateway
    assert set(ROUTER_FLAGS) <= set(names(s.RouterSettings))
    cfg = parse_args(["--workers", "0"], NEEDED["gateway"])  # 0: the CPU count
    assert cfg.workers == (os.cpu_count() or 1)


# ---- the commands exit 2 with the report, no traceback ----------------------------------------


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("COBROWSE_")}
    return subprocess.run(
        [sys.executable, "-m", *args],
        env={**clean, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_python_m_gateway_with_bad_values_exits_2_with_the_message():
    env = {
        "COBROWSE_TOKEN_KEYS": KEYS,
        "COBROWSE_GATEWAY_PORT": "abc",
        "COBROWSE_STREAM_MAX_AGE": "60",
        "COBROWSE_LOG_LEVEL": "loud",
    }
    r = run("gateway", env=env)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert "bad configuration" in r.stderr
    assert "COBROWSE_GATEWAY_PORT='abc' is not an integer" in r.stderr
    assert "COBROWSE_STREAM_MAX_AGE=60 must be at least 120 (the stream's duplicate window)" in (
        r.stderr
    )
    assert "COBROWSE_LOG_LEVEL='loud'" in r.stderr
    r = run("gateway", "--max-age", "60", env={"COBROWSE_TOKEN_KEYS": KEYS})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "--max-age=60 must be at least 120" in r.stderr
    r = run("gateway", env={})
    assert r.returncode == 2 and "COBROWSE_TOKEN_KEYS is not set" in r.stderr


def test_python_m_router_and_proxy_with_bad_values_exit_2_with_the_message():
    bad = {"COBROWSE_TOKEN_KEYS": "k:short", "COBROWSE_CODE_TTL": "soon"}
    r = run("router", "serve", "--port", "99999", env=bad)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    for said in ("COBROWSE_TOKEN_KEYS is not", "COBROWSE_CODE_TTL='soon'", "--port='99999'"):
        assert said in r.stderr
    r = run("router", "token", "--role", "agent", env={"COBROWSE_TOKEN_KEYS": "k:short"})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "COBROWSE_TOKEN_KEYS is not 'kid:secret" in r.stderr
    r = run("router", "status", env={"COBROWSE_NATS_URL": "http://x"})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "COBROWSE_NATS_URL='http://x' is not a nats://" in r.stderr
    r = run("proxy", "serve", env={"COBROWSE_PROXY_TIMEOUT": "0", "COBROWSE_LOG_FORMAT": "xml"})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "COBROWSE_PROXY_TIMEOUT=0 must be greater than 0" in r.stderr
    assert "COBROWSE_LOG_FORMAT='xml'" in r.stderr


# ---- the docs' tables are the declarations -----------------------------------------------------


@pytest.mark.parametrize(
    "doc, kind, flags",
    [
        ("README.md", s.GatewaySettings, GATEWAY_FLAGS),
        ("docs/api.md", s.RouterSettings, ROUTER_FLAGS),
        ("docs/proxy.md", s.ProxySettings, None),
    ],
)
def test_the_docs_tables_are_the_declarations(doc, kind, flags):
    table = s.table(kind, flags)
    assert table in (ROOT / doc).read_text(), f"{doc} must hold this table:\n{table}"


def test_proxy_config_error_is_the_settings_error():
    assert ConfigError is s.SettingsError


# ---- each variable's bad value, alone, in every component that reads it ------------------

READS = [
    (var, component)
    for component, kind in s.COMPONENTS.items()
    for var, _ in s.variables(kind)
    if var.name not in ANY_TEXT
]


@pytest.mark.parametrize(("var", "component"), READS, ids=lambda x: getattr(x, "name", x))
def test_each_bad_value_alone_is_one_problem_naming_its_variable(var, component):
    """The table of declarations drives this: a variable added without a bad value in BAD
    fails here (KeyError), and a reader that lets its bad value through fails too."""
    with pytest.raises(s.SettingsError) as err:
        build(component, {**NEEDED[component], var.name: BAD[var.name]})
    assert problem_names(err.value) == [var.name]
    (problem,) = err.value.problems
    bad = BAD[var.name]
    assert (bad in problem) != var.secret  # the value is shown unless it is a secret
    why = problem.split(bad, 1)[1] if bad in problem else problem.removeprefix(var.name)
    assert len(why.split()) >= 3, problem  # what is wrong, not just "invalid"


@pytest.mark.parametrize("var", s.declared(), ids=lambda v: v.name)
def test_a_value_that_is_not_text_parses_or_is_one_clear_problem(var):
    """A JSON config file (the router's COBROWSE_CONFIG) can give any JSON value."""
    for raw in ([1], {"a": 1}, True, 3, 2.5, float("nan"), 10**30, -1):
        reader = s.Reader({var.name: raw})
        reader.value(var)  # never raises: a parser's TypeError would be a crash
        assert len(reader.problems) <= 1
        assert all(p.startswith(var.name) for p in reader.problems)


def test_a_missing_required_variable_says_its_format():
    with pytest.raises(s.SettingsError) as err:
        s.read(s.GatewaySettings, {})
    assert err.value.problems == (f"COBROWSE_TOKEN_KEYS is not set (format {s.TOKEN_KEYS.form})",)
