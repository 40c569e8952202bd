"""The few calls of the router's HTTP API the harness makes (docs/api.md): create a session,
look one up by short code, list the cluster's gateways, drain one, read a gateway's /metrics."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import httpx
import trio

from gateway.client_protocol import DEFAULT_RETRY_AFTER, retry_after

if TYPE_CHECKING:
    from router.launcher import LocalCluster


@dataclass
class Target:
    """Where the harness sends its load: a router API and the keys it accepts."""

    api_url: str
    site_key: str
    agent_key: str
    admin_key: str | None
    local: bool = False

    @classmethod
    def of(cls, cluster: LocalCluster) -> Target:
        """A local cluster's router and its dev keys."""
        keys = cluster.keys
        return cls(cluster.api_url, keys.site_key, keys.agent_api_key, keys.admin_key, True)


class ApiError(Exception):
    pass


# httpcore 1.0's pool costs O(connections^2) per request added or removed, plus O(queued x
# connections) while requests wait in it: 916 requests of a 300-session ramp took 16.7 s of the
# harness's CPU with 64 connections, 7.8 s with 16, and 2.7 s with 16 and nothing queued in it
# (tests/loadtest/test_api.py's server, 20 ms a request).
POOL = 16  # connections to the router API and the gateways' /metrics
IN_FLIGHT = 16  # requests inside httpx at once (Api._slots): the rest wait here


class Api:
    """The few calls of the router's HTTP API the harness makes (docs/api.md)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.http = httpx.AsyncClient(
            base_url=target.api_url,
            timeout=10.0,
            limits=httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL),
        )
        self._slots = trio.Semaphore(IN_FLIGHT)
        self.rate_limited = 0  # 429s from the API (the harness retries after Retry-After)

    async def _request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        async with self._slots:
            return await self.http.request(method, url, **kw)

    async def aclose(self) -> None:
        await self.http.aclose()

    def _auth(self, admin: bool = False) -> dict[str, str]:
        key = self.target.admin_key if admin and self.target.admin_key else self.target.agent_key
        return {"Authorization": f"Bearer {key}"}

    async def _post(self, path: str, body: dict, headers: dict | None = None) -> dict:
        """POST with retries on 429/503 (after Retry-After) and on connection errors; the
        caller's deadline bounds them."""
        delay = 0.2
        err = "busy"
        for _ in range(60):
            try:
                r = await self._request("POST", path, json=body, headers=headers)
            except httpx.HTTPError as exc:
                err = f"{type(exc).__name__}: {exc}"
                await trio.sleep(delay)
                delay = min(5.0, delay * 2)
                continue
            if r.status_code in (200, 201):
                return r.json()
            if r.status_code in (429, 503):
                if r.status_code == 429:
                    self.rate_limited += 1
                wait = retry_after(r.headers.get("retry-after"))
                wait = DEFAULT_RETRY_AFTER if wait is None else wait
                await trio.sleep(min(10.0, wait) * random.uniform(1.0, 1.5))
                continue
            raise ApiError(f"{path}: HTTP {r.status_code} {r.text[:200]}")
        raise ApiError(f"{path}: gave up after retries ({err})")

    async def create_session(self) -> dict:
        return await self._post("/v1/sessions", {"site_key": self.target.site_key})

    async def lookup(self, code: str) -> dict:
        return await self._post("/v1/sessions/lookup", {"code": code}, self._auth())

    async def cluster(self) -> list[dict[str, Any]]:
        r = await self._request("GET", "/v1/cluster", headers=self._auth(admin=True))
        if r.status_code != 200:
            raise ApiError(f"/v1/cluster: HTTP {r.status_code} {r.text[:200]}")
        return r.json().get("gateways", [])

    async def drain(self, gateway_id: str) -> tuple[int, Any]:
        r = await self._request(
            "POST", f"/v1/cluster/gateways/{gateway_id}/drain", headers=self._auth(admin=True)
        )
        try:
            body = r.json()
        except ValueError:
            body = r.text[:200]
        return r.status_code, body

    async def metrics(self, admin_url: str) -> str | None:
        try:
            r = await self._request("GET", urljoin(admin_url, "metrics"), timeout=3.0)
        except httpx.HTTPError:
            return None
        return r.text if r.status_code == 200 else None
