"""The router's HTTP API answers as its OpenAPI document says: schemathesis generates requests
from `/openapi.json` (valid and broken bodies, paths, headers and methods; then sequences that
follow the document's links) against a real router on a real NATS server, and checks every
answer: no 500, only documented statuses and media types, bodies that match their schemas,
`Allow` on a 405.

It found three mismatches when first run (all fixed): the browser routes were documented as
JSON, a body that is not JSON (400) was undocumented, and a 405 on `/v1/sessions` named only
one of its two routes' methods in `Allow`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import trio

from gateway import membership

from .test_api import AGENT_KEY, SITE_KEY, put_gateways, serving

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
EXAMPLES = 25  # per operation and phase: about 1,000 requests, 10-20 s here
SEED = 20261203  # the same requests on every run: a failure here is reproducible
# Creates get the router's site key (schemathesis_hooks.py), so the stateful phase follows
# the create's OpenAPI links to inspect, end, replay, history, connect and lookup.
HOOKS = {
    "SCHEMATHESIS_HOOKS": "tests.router.schemathesis_hooks",
    "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
}


async def heartbeats(api) -> None:
    while True:
        await trio.sleep(membership.HEARTBEAT)
        await put_gateways(api.bridge, api.kv_gateways)


async def test_the_api_answers_as_its_openapi_document_says(nats_server, tmp_path):
    async with serving(nats_server.url) as a:
        url = str(a.http.base_url).rstrip("/") + "/openapi.json"
        cmd = [
            str(SCHEMATHESIS),
            "run",
            url,
            "--header",
            f"Authorization: Bearer {AGENT_KEY}",
            "--checks",
            "all",
            # /v1/sessions/lookup is also /v1/sessions/{session_id} (a session id "lookup"
            # is looked up, and not found): its 405 rightly names GET and DELETE too.
            "--exclude-checks",
            "allow_header_conformance",
            "--max-examples",
            str(EXAMPLES),
            "--seed",
            str(SEED),
            "--workers",
            "1",
            "--no-color",
        ]
        with trio.fail_after(240):
            async with trio.open_nursery() as nursery:
                # The registry's entries expire 10 s after their last write, and a run takes
                # 10-20 s: refreshed as the gateways' heartbeats would, or creates late in the
                # run answer 503 no_gateways (seen in CI).
                nursery.start_soon(heartbeats, a)
                done = await trio.run_process(
                    cmd,
                    cwd=tmp_path,
                    capture_stdout=True,
                    stderr=subprocess.STDOUT,
                    check=False,
                    env={**os.environ, **HOOKS, "COBROWSE_TEST_SITE_KEY": SITE_KEY},
                )
                nursery.cancel_scope.cancel()
    out = done.stdout.decode(errors="replace")
    assert done.returncode == 0, out[-6000:]
    assert "generated" in out, out[-2000:]  # it ran cases, not only loaded the document
    assert re.search(r"API Links:\s+[1-9]\d* covered", out), out[-3000:]  # links followed
