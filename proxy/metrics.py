"""Prometheus metrics of the proxy (served on its /metrics, which the Ingress does not route:
it sends the proxy only /v1/stylesheet, /v1/asset, /v1/rewrite and /v1/sign).

`HTTP`: `cobrowse_proxy_requests_total{route,status}` and
`cobrowse_proxy_request_duration_seconds{route}` (gateway/http_observe.py)."""

from prometheus_client import Counter, Histogram

from gateway.http_observe import HttpMetrics

HTTP = HttpMetrics.named("proxy")
REFUSED = Counter("cobrowse_proxy_refused_total", "Refusals by error code", ["code"])
ORIGIN_FETCHES = Counter("cobrowse_proxy_origin_fetches_total", "Fetches from origins")
CACHE = Counter("cobrowse_proxy_cache_total", "Cache lookups", ["result"])
REWRITE_SECONDS = Histogram(
    "cobrowse_proxy_rewrite_seconds",
    "CSS rewrite time",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
