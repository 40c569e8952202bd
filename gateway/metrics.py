"""Prometheus metrics of a gateway process (served on /metrics by the health server).

The per-event counters are tallied in plain integers and added to Prometheus by the
gateway's ticker (`Tally.flush`, every 0.1 s): a Prometheus counter takes a lock per
`inc`, and three to five of those per event were 5 % of a gateway's CPU.
"""

from prometheus_client import Counter, Gauge, Histogram

# multiprocess_mode: how a supervisor sums its workers' values (PROMETHEUS_MULTIPROC_DIR).
CONNECTIONS = Gauge(
    "cobrowse_gateway_connections",
    "Open WebSocket connections",
    ["role"],
    multiprocess_mode="livesum",
)
CONNECTS = Counter("cobrowse_gateway_connects_total", "Accepted hellos", ["role", "resumed"])
CLOSES = Counter("cobrowse_gateway_closes_total", "Closed connections by close code", ["code"])
PROTOCOL_ERRORS = Counter("cobrowse_gateway_protocol_errors_total", "Protocol errors", ["code"])
EVENTS_IN = Counter("cobrowse_gateway_events_in_total", "Events received from senders", ["role"])
EVENTS_OUT = Counter("cobrowse_gateway_events_out_total", "Events delivered to receivers", ["role"])
FRAMES_OUT = Counter(
    "cobrowse_gateway_frames_out_total", "Event frames sent to receivers", ["role"]
)
GAP_FILLS = Counter(
    "cobrowse_gateway_gap_fills_total", "Reads from JetStream to fill a gap or resume"
)
SNAPSHOT_REQUESTS = Counter(
    "cobrowse_gateway_snapshot_requests_total", "Snapshots asked of visitors"
)
SNAPSHOT_LOOKS = Counter(
    "cobrowse_gateway_snapshot_looks_total",
    "Waiting agents' later looks for a recorded snapshot (found: one the live path missed; "
    "none; failed: the KV or the stream did not answer)",
    ["result"],
)
JS_MESSAGES = Counter(
    "cobrowse_gateway_js_messages_total",
    "Stored JetStream messages (batches of a sender's events): events_in / this = batching",
)
JS_PUBLISH_LATENCY = Histogram(
    "cobrowse_gateway_js_publish_seconds",
    "Publish to JetStream ack, one stored message in JS_LATENCY_SAMPLE",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1, 5, 10, 30),
)
JS_LATENCY_SAMPLE = 8
JS_PUBLISH_RETRIES = Counter("cobrowse_gateway_js_publish_retries_total", "Publishes re-sent")
JS_PROMPT_RETRIES = Counter(
    "cobrowse_gateway_js_prompt_retries_total",
    "Publishes in flight retried at once instead of on their 2 s timer, by cause: "
    "leader_elected (JetStream announced the stream's new leader) or reconnected (the "
    "gateway's publish connection came back)",
    ["cause"],
)
JS_LEADER_ELECTIONS = Counter(
    "cobrowse_gateway_js_leader_elections_total",
    "New leaders of the events stream announced by JetStream (publishes in flight are then "
    "retried at once)",
)
JS_PUBLISH_FAILED = Counter("cobrowse_gateway_js_publish_failed_total", "Publishes given up")
ADMISSION = Counter(
    "cobrowse_gateway_admission_total", "Handshake admission decisions by lane", ["lane"]
)
NATS_CONNECTED = Gauge(
    "cobrowse_gateway_nats_connected",
    "1 while every NATS connection of the gateway is up (a supervisor shows its lowest worker)",
    multiprocess_mode="livemin",
)
DELIVERY_LATENCY = Histogram(
    "cobrowse_gateway_delivery_latency_seconds",
    "A visitor's frame from its arrival at a gateway to an agent's socket (live path, any "
    "gateway: wall clocks, so it includes their skew)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DRAINING = Gauge(
    "cobrowse_gateway_draining", "1 while this gateway drains", multiprocess_mode="livemax"
)
DRAIN_NOTICES = Counter("cobrowse_gateway_drain_notices_total", "Reconnect notices sent")
REORDER_WAITS = Counter(
    "cobrowse_gateway_reorder_waits_total", "Gaps a receiver waited on past the gap timeout"
)
SEND_QUEUE_BYTES = Gauge(
    "cobrowse_gateway_send_queue_bytes",
    "Bytes queued for clients that the kernel did not take yet (all connections), each second",
    multiprocess_mode="livesum",
)
SEND_QUEUE_MAX_BYTES = Gauge(
    "cobrowse_gateway_send_queue_max_bytes",
    "The most bytes queued for one client, each second (slow clients are bounded near 1 MiB)",
    multiprocess_mode="livemax",
)
RECEIVERS_BEHIND = Counter(
    "cobrowse_gateway_receivers_behind_total",
    "Times a slow client's receiver left the live path to be served from the stream",
)
BUDGET_WAITS = Counter(
    "cobrowse_gateway_budget_waits_total",
    "Times a connection over its event or byte budget had a frame held (socket not read)",
)
BUDGET_SAVES = Counter(
    "cobrowse_gateway_budget_saves_total",
    "Times a visitor's send budget was written to its session (at close, or while spending)",
)
BUDGET_WAIT_SECONDS = Counter(
    "cobrowse_gateway_budget_wait_seconds_total",
    "Seconds connections over budget were held, as asked by their budgets",
)


class Tally:
    """Per-event counts in plain integers, flushed into the counters above."""

    __slots__ = ("events_in", "events_out", "frames_out", "js_messages")

    def __init__(self) -> None:
        self.events_in = {"visitor": 0, "agent": 0}  # by the sender's role
        self.events_out = {"visitor": 0, "agent": 0}  # by the receiver's role
        self.frames_out = {"visitor": 0, "agent": 0}
        self.js_messages = 0

    def flush(self) -> None:
        for counts, metric in (
            (self.events_in, EVENTS_IN),
            (self.events_out, EVENTS_OUT),
            (self.frames_out, FRAMES_OUT),
        ):
            for role, n in counts.items():
                if n:
                    metric.labels(role=role).inc(n)
                    counts[role] = 0
        if self.js_messages:
            JS_MESSAGES.inc(self.js_messages)
            self.js_messages = 0


TALLY = Tally()
CONTROL_CHANGES = Counter(
    "cobrowse_gateway_control_changes_total",
    "Remote-control grants and ends written to sessions (to: agent or none)",
    ["to"],
)
CONTROL_REFUSED = Counter(
    "cobrowse_gateway_control_refused_total",
    "Agents' remote-control input events refused: the agent held no grant",
)
