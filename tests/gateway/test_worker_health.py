"""The supervisor's view of its workers (gateway/worker_health.py), without processes:
ready only while every worker's last probe was a 200; stuck only after an answer followed
by `stuck_after` seconds of silence; a restart forgets what the worker said before."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.admin_port import AdminHooks, route
from gateway.worker_health import WorkerHealth


def started(n: int, stuck_after: float = 10.0) -> WorkerHealth:
    h = WorkerHealth(stuck_after=stuck_after)
    for i in range(n):
        h.started(i)
    return h


def test_ready_needs_every_worker_to_answer_200():
    h = started(2)
    assert not h.ready()  # nobody answered yet
    h.answered(0, ready=True, now=1)
    assert not h.ready()
    h.answered(1, ready=True, now=1)
    assert h.ready()
    h.answered(1, ready=False, now=2)  # lost NATS, or draining
    assert not h.ready() and h.report(2) == {"w0": "ready", "w1": "not_ready"}
    h.answered(1, ready=True, now=3)
    h.silent(0)  # a probe timed out
    assert not h.ready() and h.report(3) == {"w0": "silent", "w1": "ready"}
    assert not WorkerHealth(stuck_after=1).ready()  # no workers: not ready


def test_stuck_after_an_answer_then_silence_and_a_restart_forgets():
    h = started(2, stuck_after=10)
    h.silent(0)
    assert h.stuck(1000) == [] and h.report(1000)["w0"] == "starting"  # may wait for NATS
    h.answered(0, ready=True, now=5)
    h.answered(1, ready=False, now=5)  # a 503 is an answer: alive
    h.silent(0)
    assert h.stuck(15) == []
    assert h.stuck(15.5) == [0, 1] and h.report(15.5) == {"w0": "stuck", "w1": "stuck"}
    h.answered(1, ready=True, now=15.5)
    h.started(0)  # replaced by a fresh process
    assert h.stuck(100) == [1] and h.report(15.5) == {"w0": "starting", "w1": "ready"}


PROBES = st.lists(
    st.tuples(st.integers(0, 2), st.sampled_from(["ok", "503", "silent", "restart"])),
    max_size=40,
)


@settings(max_examples=50)  # 3 workers, 4 kinds of event: 50 sequences cover it in ~0.4 s
@given(PROBES, st.floats(1, 30))
def test_the_two_probes_follow_the_last_answers(probes, stuck_after):
    """Readiness is exactly "each worker's last event was a 200"; a worker is stuck exactly
    when its last answer (since its last restart) is older than `stuck_after`."""
    h = started(3, stuck_after)
    last: dict[int, str] = {}
    answered_at: dict[int, float] = {}
    for t, (i, what) in enumerate(probes):
        if what == "restart":
            h.started(i)
            last.pop(i, None)
            answered_at.pop(i, None)
        elif what == "silent":
            h.silent(i)
            last[i] = what
        else:
            h.answered(i, ready=what == "ok", now=t)
            last[i], answered_at[i] = what, t
    assert h.ready() == all(last.get(i) == "ok" for i in range(3))
    now = len(probes) + stuck_after / 2
    assert h.stuck(now) == sorted(i for i, at in answered_at.items() if now - at > stuck_after)


def test_the_admin_port_answers_liveness_and_says_why():
    h = started(2, stuck_after=1)
    h.answered(0, ready=True, now=0)
    h.answered(1, ready=True, now=0)
    hooks = AdminHooks(
        ready=h.ready,
        drain=dict,
        admin_key=None,
        live=lambda: not h.stuck(5),
        detail=lambda: h.report(5),
    )
    assert route(hooks, b"GET", "/healthz", {}) == (503, "text/plain", b"stuck w0=stuck w1=stuck\n")
    h.answered(1, ready=False, now=5)
    status, _, body = route(hooks, b"GET", "/readyz", {})
    assert (status, body) == (503, b"not ready w0=stuck w1=not_ready\n")
