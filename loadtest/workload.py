"""The event mix of a simulated co-browsing session, sans-I/O and seeded.

A visitor's page produces *gestures*, each a short run of events of one kind:

| gesture  | events per gesture | spacing          | payload bytes          |
|----------|--------------------|------------------|------------------------|
| pointer  | 4-12               | 50 ms (20 Hz)    | ~30                    |
| mutation | 1                  | -                | 200-8000 (log-uniform) |
| scroll   | 1-4                | 100 ms           | ~30                    |
| input    | 2-8                | 150 ms (typing)  | 40-200                 |
| canvas   | 1                  | -                | 45-55 KB (an image)    |

Gestures start as a Poisson process whose rate is chosen so that the mean event rate is the
requested `--rate` per session; the pointer moves inside a gesture come at 20 Hz. Before any
of them the visitor sends a full snapshot of 100-300 KB. Agents send a few events back:
pointer runs and highlights, about a tenth of the visitor's rate per agent.

Everything here is plain data from a seeded `random.Random`, so a seed gives the same run of
kinds, sizes and times; the harness sleeps until each event's time and sends it with the
current wall clock in the payload (`"t"`), which is what latency is measured from.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import struct
from bisect import bisect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgpack

SNAPSHOT_BYTES = (100_000, 300_000)
CANVAS_BYTES = (45_000, 55_000)
AGENT_SHARE = 0.1  # agent events per second per agent, as a share of the visitor's rate


@dataclass(frozen=True)
class Gesture:
    weight: float  # share of gestures
    count: tuple[int, int]  # events per gesture, inclusive
    spacing: float  # seconds between the events of one gesture
    size: tuple[int, int]  # payload bytes, inclusive
    log_size: bool = False  # sizes log-uniform (many small, a few large)

    @property
    def mean_count(self) -> float:
        return (self.count[0] + self.count[1]) / 2


VISITOR_GESTURES: dict[str, Gesture] = {
    "pointer": Gesture(0.25, (4, 12), 0.05, (24, 40)),
    "mutation": Gesture(0.40, (1, 1), 0.0, (200, 8000), log_size=True),
    "scroll": Gesture(0.15, (1, 4), 0.10, (24, 40)),
    "input": Gesture(0.17, (2, 8), 0.15, (40, 200)),
    "canvas": Gesture(0.03, (1, 1), 0.0, CANVAS_BYTES),
}

AGENT_GESTURES: dict[str, Gesture] = {
    "pointer": Gesture(0.7, (3, 8), 0.05, (24, 40)),
    "highlight": Gesture(0.3, (1, 1), 0.0, (30, 80)),
}


class Planned(NamedTuple):
    at: float  # seconds after the session started streaming
    kind: str
    size: int  # payload bytes to carry (approximately)


def mean_events_per_gesture(gestures: dict[str, Gesture]) -> float:
    total = sum(g.weight for g in gestures.values())
    return sum(g.weight * g.mean_count for g in gestures.values()) / total


class EventMix:
    """The plan of one session: its snapshot size, the visitor's and each agent's events."""

    def __init__(self, rate: float, rng: random.Random | int | None = None) -> None:
        if rate < 0:
            raise ValueError("rate must be >= 0")
        self.rate = rate
        self.rng = rng if isinstance(rng, random.Random) else random.Random(rng)

    def snapshot_size(self) -> int:
        return self.rng.randint(*SNAPSHOT_BYTES)

    def visitor(self, duration: float) -> Iterator[Planned]:
        return self._plan(VISITOR_GESTURES, self.rate, duration)

    def agent(self, duration: float) -> Iterator[Planned]:
        return self._plan(AGENT_GESTURES, self.rate * AGENT_SHARE, duration)

    def visitor_tuples(self, duration: float) -> Iterator[tuple[float, str, int]]:
        """`visitor` as plain (at, kind, size) tuples."""
        return self.plan_tuples(VISITOR_GESTURES, self.rate, duration)

    def agent_tuples(self, duration: float) -> Iterator[tuple[float, str, int]]:
        return self.plan_tuples(AGENT_GESTURES, self.rate * AGENT_SHARE, duration)

    def _plan(
        self, gestures: dict[str, Gesture], rate: float, duration: float
    ) -> Iterator[Planned]:
        """Events in time order, lazily (a long run never holds its whole plan)."""
        return itertools.starmap(Planned, self.plan_tuples(gestures, rate, duration))

    def plan_tuples(
        self, gestures: dict[str, Gesture], rate: float, duration: float
    ) -> Iterator[tuple[float, str, int]]:
        """`_plan` as plain (at, kind, size) tuples, for the load generator's timers.

        The draws are those of `random.choices`, `randint`, `uniform` and `expovariate`
        made by hand (CPython's own formulas, same calls to `random()` and `getrandbits`),
        so a seed plans the same events as through those methods, at a third of the cost."""
        if rate <= 0 or duration <= 0:
            return
        rng = self.rng
        rand, bits = rng.random, rng.getrandbits
        kinds = list(gestures)
        cum = list(itertools.accumulate(gestures[k].weight for k in kinds))
        total, last = cum[-1] + 0.0, len(kinds) - 1
        # per kind: events per gesture (lo, width, bits), spacing, the size's draw
        spec = {}
        for k, g in gestures.items():
            n_lo, n_hi = g.count
            s_lo, s_hi = g.size
            if g.log_size:
                size = (True, math.log(s_lo), math.log(s_hi) - math.log(s_lo), 0)
            else:
                size = (False, s_lo, s_hi - s_lo + 1, (s_hi - s_lo + 1).bit_length())
            spec[k] = (n_lo, n_hi - n_lo + 1, (n_hi - n_lo + 1).bit_length(), g.spacing, size)
        gesture_rate = rate / mean_events_per_gesture(gestures)
        log, exp = math.log, math.exp
        pending: list[tuple[float, int, str, int]] = []  # (at, tie-break, kind, size)
        tie = 0
        next_gesture = -log(1.0 - rand()) / gesture_rate
        push, pop = heapq.heappush, heapq.heappop
        while True:
            # Start every gesture due before the earliest pending event.
            while next_gesture < duration and (not pending or next_gesture <= pending[0][0]):
                kind = kinds[bisect(cum, rand() * total, 0, last)]
                n_lo, n_width, n_bits, spacing, (log_size, a, width, k) = spec[kind]
                r = bits(n_bits)
                while r >= n_width:
                    r = bits(n_bits)
                for i in range(n_lo + r):
                    at = next_gesture + i * spacing
                    if at >= duration:
                        continue
                    if log_size:
                        size = int(round(exp(a + width * rand())))
                    else:
                        size = bits(k)
                        while size >= width:
                            size = bits(k)
                        size += a
                    push(pending, (at, tie, kind, size))
                    tie += 1
                next_gesture += -log(1.0 - rand()) / gesture_rate
            if not pending:
                return
            at, _, kind, size = pop(pending)
            yield at, kind, size


# ---- payloads -----------------------------------------------------------------------------

_BLOB = random.Random(0x0B).randbytes(64 * 1024)  # page bytes: content does not matter


def blob(n: int) -> bytes:
    """n bytes of filler (up to 64 KiB without copying more than once)."""
    if n <= len(_BLOB):
        return _BLOB[:n]
    return (_BLOB * (n // len(_BLOB) + 1))[:n]


def snapshot_bytes(size: int, label: str = "") -> bytes:
    head = f"<!doctype html><html data-session='{label}'><body>".encode()
    return head + blob(max(0, size - len(head)))


def payload(kind: str, size: int, n: int, sent_at: float) -> dict[str, Any]:
    """A payload of about `size` bytes that looks like its kind; `t` is the send time, and
    `n` (the sender's count) varies it, through `n % VARIANTS` for the small kinds."""
    if kind in ("pointer", "scroll"):
        pad = "p" * max(0, size - 24)
        k = n % VARIANTS
        return {"t": sent_at, "x": (k * 37) % 1280, "y": (k * 53) % 2400, "el": pad}
    if kind == "input":
        return {"t": sent_at, "id": f"#field-{n % VARIANTS % 7}", "v": "x" * max(1, size - 24)}
    if kind == "highlight":
        return {"t": sent_at, "sel": f"#item-{n % VARIANTS}", "note": "x" * max(0, size - 30)}
    if kind == "canvas":
        return {"t": sent_at, "id": "chart", "w": 400, "h": 300, "png": blob(size)}
    # mutation and anything else: a batch of node changes
    return {"t": sent_at, "adds": [{"parent": n % 997, "html": blob(max(1, size - 40))}]}


def sent_time(payload: Any, ts_ms: int) -> float:
    """When an event was sent (wall clock, seconds): its payload's `t` when the payload is one
    of ours, else the event's own `ts` (milliseconds), e.g. a snapshot part's bytes."""
    t = payload.get("t") if type(payload) is dict else None
    return t if type(t) is float else ts_ms / 1000


VARIANTS = 16  # small payloads of one kind and size differ in n % VARIANTS only
TEMPLATE_KINDS = frozenset({"pointer", "scroll", "input", "highlight"})  # at most ~200 B each


class Packed:
    """A payload already encoded (msgpack), for a sender that builds its events' bytes
    itself (the load generator). msgpack cannot pack this object, so an encoder that expects
    a payload fails loudly instead of sending something else."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


_pack = msgpack.Packer(use_bin_type=True).pack
_f64 = struct.Struct(">d").pack
_TEMPLATES: dict[tuple[str, int, int], bytes] = {}
_T_HEAD = b"\xa1t\xcb"  # after the map's header: the key "t" and a float64's marker


def payload_bytes(kind: str, size: int, n: int, sent_at: float) -> bytes:
    """`msgpack(payload(kind, size, n, sent_at))`. A small payload comes from a template of
    its kind, size and n % VARIANTS with the send time written in its 8 bytes (most events
    are pointer moves: this skips building and packing a dict for each)."""
    if kind not in TEMPLATE_KINDS:
        return _pack(payload(kind, size, n, sent_at))
    key = (kind, size, n % VARIANTS)
    tpl = _TEMPLATES.get(key)
    if tpl is None:
        tpl = _TEMPLATES[key] = _pack(payload(kind, size, n, 0.0))
        assert tpl[1:4] == _T_HEAD, "a small payload is a short map that starts with t"
    return tpl[:4] + _f64(sent_at) + tpl[12:]
