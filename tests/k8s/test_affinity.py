"""Session affinity in production, and the one place an installation is set (k8s/).

The router orders a session's gateways by rendezvous hashing over the URLs they advertise
(gateway/membership.py) and hands that order to the visitor and the agent alike; a draining
gateway names the next URL of it. These tests render the overlays offline (as test_k8s.py
does) and follow each gateway pod's advertised URL through the Ingresses and Services to the
pods it reaches: each reaches its own pod alone, so the router's order is the placement in
production as in the local cluster, and a drain hint names another pod that is running.
"""

from __future__ import annotations

import re
import shutil
import tomllib
from urllib.parse import urlsplit

import yaml

from gateway.membership import GatewayInfo, drain_hint, urls_for
from tests.k8s.test_k8s import (
    K8S,
    OVERLAYS,
    ROOT,
    WORKLOADS,
    container_env,
    gateway_config,
    ingress_backend,
    main_container,
    max_pods,
    objects,
    one,
    pod_labels,
    pod_spec,
    public_host,
    pytestmark,  # noqa: F401  (skipped without the pinned kubectl, like test_k8s.py)
    render,
    render_text,
    selects,
    workload,
)

SIDS = [f"session-{i:04d}" for i in range(300)]  # 12 pods: each is some session's first


def reached_pods(docs, url: str) -> list[str]:
    """The gateway pods a client connecting to `url` can land on, through the Ingresses."""
    parts = urlsplit(url)
    assert parts.hostname == public_host(docs), url
    service, port = ingress_backend(objects(docs, "Ingress"), parts.hostname, parts.path)
    assert port == "ws", url
    sel = {"matchLabels": one(docs, "Service", service)["spec"]["selector"]}
    return [
        pod for pod, labels in pod_labels(docs, workload(docs, "gateway")) if selects(sel, labels)
    ]


def advertised(docs, monkeypatch) -> dict[str, str]:
    """pod name -> the URL that pod's gateway advertises, for every pod the autoscaler may
    run: from each pod's environment, read for the first pod with the gateway's own parser
    (the others differ only in the pod name)."""
    gw = workload(docs, "gateway")
    out = {}
    for pod, _ in pod_labels(docs, gw):
        env = container_env(docs, main_container(gw), pod=pod)
        assert env["COBROWSE_GATEWAY_ID"] == pod
        out[pod] = env["COBROWSE_GATEWAY_PUBLIC_URL"]
    first = next(iter(out))
    cfg, _ = gateway_config(container_env(docs, main_container(gw), pod=first), monkeypatch)
    assert (cfg.gateway_id, cfg.url) == (first, out[first])
    return out


def members(urls: dict[str, str], pods: list[str], workers: int) -> list[GatewayInfo]:
    """The membership registry with these pods up: one entry per worker, as they register."""
    return [GatewayInfo(id=f"{p}.w{k}", url=urls[p]) for p in pods for k in range(workers)]


def hpa_target(docs) -> dict:
    gw = workload(docs, "gateway")
    return {"kind": gw["kind"], "name": gw["metadata"]["name"]}


def test_each_gateway_pod_advertises_a_url_that_reaches_it_alone(overlay, monkeypatch):
    docs = render(overlay)
    gw = workload(docs, "gateway")
    assert gw["kind"] == "StatefulSet", "stable pod names, each with its own route"
    urls = advertised(docs, monkeypatch)
    assert len(urls) == max_pods(docs, gw) >= 3
    for pod, url in urls.items():
        assert "$(" not in url, f"{pod}: an unexpanded reference in {url}"
        assert urlsplit(url).scheme == "wss"
        assert reached_pods(docs, url) == [pod], f"{url} does not reach {pod} alone"
    # A route for every ordinal the autoscaler may reach (more are harmless: 503, next URL).
    per_pod = [s for s in objects(docs, "Service") if s["metadata"]["labels"].get("cobrowse/route")]
    assert len(per_pod) >= len(urls)
    # The documented alternative autoscaler stays within the routes too.
    example = yaml.safe_load((K8S / "examples" / "hpa-connections.yaml").read_text())
    assert example["spec"]["scaleTargetRef"] == {**hpa_target(docs), "apiVersion": "apps/v1"}
    assert example["spec"]["maxReplicas"] <= len(per_pod)


def test_visitor_and_agent_meet_on_one_pod_and_a_drain_hint_names_another(monkeypatch):
    """For each session the router hands both ends the same order; its first URL reaches one
    pod. When that pod drains, its hint reaches another running pod: the one the router now
    puts first, so both ends meet again. Scaling in drains the highest ordinal, and its
    clients move to pods that stay."""
    docs = render("prod")
    gw = workload(docs, "gateway")
    env = container_env(docs, main_container(gw))
    workers = gateway_config(env, monkeypatch)[0].workers
    assert workers >= 2, "several workers share one pod's URL"
    urls = advertised(docs, monkeypatch)
    reach = {url: reached_pods(docs, url) for url in urls.values()}  # through the Ingress
    hpa = one(docs, "HorizontalPodAutoscaler", "cobrowse-gateway")
    for n in (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]):
        running = [f"{gw['metadata']['name']}-{i}" for i in range(n)]
        registry = members(urls, running, workers)
        first_pods = set()
        for sid in SIDS:
            order = urls_for(sid, registry)  # what the router answers visitor and agent
            assert len(order) == n, "one URL per pod, workers folded"
            [pod] = reach[order[0]]
            first_pods.add(pod)
            # That pod drains (a rolling update, an eviction, POST /admin/drain).
            draining = [
                GatewayInfo(g.id, g.url, state="draining" if g.url == order[0] else "active")
                for g in registry
            ]
            hint = drain_hint(sid, draining, own_url=order[0])
            assert hint, f"{sid}: no hint from {pod}"
            [target] = reach[hint[0]]
            assert target != pod and target in running
            assert hint[0] == urls_for(sid, draining)[0], "the router's new first choice"
        assert first_pods == set(running), "sessions spread over every pod"
        # Scaling in by one drains the highest ordinal; its sessions go to pods that stay.
        top = running[-1]
        for sid in SIDS:
            hint = drain_hint(sid, registry, own_url=urls[top])
            assert reach[hint[0]][0] in running[:-1]


def test_the_drain_hint_falls_back_to_nothing_when_alone():
    only = [GatewayInfo("gw-0.w0", "wss://h/gw/gw-0/"), GatewayInfo("gw-0.w1", "wss://h/gw/gw-0/")]
    assert drain_hint("s", only, own_url="wss://h/gw/gw-0/") is None


# ---- one place per installation: image, host, namespaces ----------------------------------


SITE = {
    "HOST": "cobrowse.acme.test",
    "INGRESS_NAMESPACE": "edge-nginx",
    "MONITORING_NAMESPACE": "observability",
}


def namespace_selectors(docs, policy: str) -> set[str]:
    np = one(docs, "NetworkPolicy", policy)
    return {
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for rule in np["spec"]["ingress"]
        for peer in rule["from"]
    }


def test_host_and_namespaces_are_set_once_per_overlay(tmp_path, monkeypatch):
    """The prod overlay rendered with another site.env: every place that names the host or
    the namespaces follows it, and none of the defaults is left anywhere."""
    defaults = dict(
        line.split("=", 1)
        for line in (OVERLAYS["prod"] / "site.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert set(defaults) == set(SITE)
    tree = tmp_path / "k8s"
    shutil.copytree(K8S, tree)
    (tree / "overlays/prod/site.env").write_text("".join(f"{k}={v}\n" for k, v in SITE.items()))
    text = render_text(tree / "overlays" / "prod")
    assert defaults["HOST"] not in text
    for name in ("INGRESS_NAMESPACE", "MONITORING_NAMESPACE"):  # as a whole value
        value = re.escape(defaults[name])
        assert not re.search(rf"[:-] {value}$", text, re.M), f"{name} is still {defaults[name]}"
    docs = tuple(d for d in yaml.safe_load_all(text) if d)
    assert not [d for d in docs if d["metadata"]["name"] == "cobrowse-site"], "local config"
    assert public_host(docs) == SITE["HOST"]
    for url in advertised(docs, monkeypatch).values():
        assert urlsplit(url).hostname == SITE["HOST"]
    for component in ("router", "proxy"):
        env = container_env(docs, main_container(workload(docs, component)))
        assert urlsplit(env["COBROWSE_PROXY_PUBLIC_URL"]).hostname == SITE["HOST"]
    assert namespace_selectors(docs, "from-ingress-controller") == {SITE["INGRESS_NAMESPACE"]}
    assert namespace_selectors(docs, "from-monitoring") == {SITE["MONITORING_NAMESPACE"]}


def test_the_image_is_set_once_per_overlay():
    """Every cobrowse container runs the image the overlay's one `images:` entry names, at
    the version pyproject.toml builds (`make image`)."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name, path in OVERLAYS.items():
        kust = yaml.safe_load((path / "kustomization.yaml").read_text())
        [entry] = [i for i in kust["images"] if i["name"] == "cobrowse"]
        assert entry["newTag"] == version, name
        image = f"{entry.get('newName', 'cobrowse')}:{entry['newTag']}"
        docs = render(name)
        for w in (d for d in docs if d["kind"] in WORKLOADS):
            if w["metadata"]["name"] == "cobrowse-nats":
                continue
            for c in pod_spec(w)["containers"] + pod_spec(w).get("initContainers", []):
                assert c["image"] == image, (name, w["metadata"]["name"])
    # The base names only the placeholder the `images:` entries replace.
    base = {
        m for f in (K8S / "base").glob("*.yaml") for m in re.findall(r"image: (\S+)", f.read_text())
    }
    assert {i for i in base if "/nats:" not in i} == {"cobrowse:0.1.0"}


def test_readme_deploy_steps_come_in_order():
    """README's deploy section gives the real steps: secret, then image and host, then apply."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Deploying", 1)[1].split("\n## ", 1)[0].split("\n1. ", 1)[1]
    steps = [
        "create secret generic cobrowse-secrets",
        "images:",
        "site.env",
        "kubectl apply -k k8s/",
    ]
    at = [section.find(s) for s in steps]
    assert all(i >= 0 for i in at), dict(zip(steps, at, strict=True))
    assert at == sorted(at), dict(zip(steps, at, strict=True))
