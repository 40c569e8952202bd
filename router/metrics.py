"""Prometheus metrics of the router (served on its /metrics: see router/serve.py for where).

`HTTP` counts and times every request by route template (gateway/http_observe.py). The two
counters below are the ones an SRE alerts on: refusals by the rate limits, and short-code
lookups by result, since code guessing shows as a rise of `unknown` against `found`.
"""

from prometheus_client import Counter

from gateway.http_observe import HttpMetrics

HTTP = HttpMetrics.named("router")
RATE_LIMITED = Counter(
    "cobrowse_router_rate_limited_total",
    "Requests refused with 429 by a rate limit (lookup-key, lookup-addr, create-addr)",
    ["limit"],
)
CODE_LOOKUPS = Counter(
    "cobrowse_router_code_lookups_total",
    "Short-code lookups past the rate limits: found, unknown (no such code, or expired) or "
    "malformed (not a code's shape)",
    ["result"],
)
