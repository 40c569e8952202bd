"""Prometheus metrics of the proxy (served on its /metrics)."""

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "cobrowse_proxy_requests_total", "Requests by endpoint and status", ["endpoint", "status"]
)
REFUSED = Counter("cobrowse_proxy_refused_total", "Refusals by error code", ["code"])
ORIGIN_FETCHES = Counter("cobrowse_proxy_origin_fetches_total", "Fetches from origins")
CACHE = Counter("cobrowse_proxy_cache_total", "Cache lookups", ["result"])
REWRITE_SECONDS = Histogram(
    "cobrowse_proxy_rewrite_seconds",
    "CSS rewrite time",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
