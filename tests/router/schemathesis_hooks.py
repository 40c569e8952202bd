"""schemathesis hooks for tests/router/test_api_contract.py (loaded through
SCHEMATHESIS_HOOKS in the schemathesis process): a created session needs the site key the
test's router knows, so the stateful phase can follow the create's links to the routes that
take a real session id. Only a generated key that the schema allows is replaced (a string of
1-256 characters, as CreateSessionRequest says): a request broken on purpose (no key, a key
of the wrong type or length) stays broken."""

from __future__ import annotations

import os

import schemathesis

SITE_KEY = os.environ["COBROWSE_TEST_SITE_KEY"]


@schemathesis.hook
def map_body(ctx, body):
    op = ctx.operation
    if (
        op is not None
        and op.method.upper() == "POST"
        and op.path == "/v1/sessions"
        and isinstance(body, dict)
        and isinstance(body.get("site_key"), str)
        and 1 <= len(body["site_key"]) <= 256
    ):
        body = {**body, "site_key": SITE_KEY}
    return body
