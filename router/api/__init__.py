"""The router's HTTP API: sessions, short codes, join tokens, the cluster's gateways.

A FastAPI app served by Hypercorn's trio worker, so everything runs on trio (Starlette runs on
anyio). NATS is reached only through `await bridge.call(...)` (nats-py under trio-asyncio).
Handlers are thin: the session logic is in `router.sessions`, tokens in `gateway.tokens`, the
gateway order in `gateway.membership`. Every error is JSON
`{"error": {"code": "<stable code>", "message": "<text>"}}`; bad input is always a 4xx.

Auth: a public *site key* (in the page's script tag) creates sessions; a secret *agent API
key* (`Authorization: Bearer ...`) looks up codes and manages sessions; the *admin key* also
reads the cluster and drains gateways. See docs/api.md.

The parts: `app` (create_app), `deps` (what the routes use, in app.state), `errors`,
`models`, `auth`, `rate_limits`, `body_limit`, and the routes by resource: `session_routes`,
`cluster_routes`, `health_routes`, `browser_routes`.
"""

from .app import create_app

__all__ = ["create_app"]
