"""The load test's verifier, sans-I/O: was every acked event delivered once, in order?

It is fed what the simulated clients observed, and nothing else: no sockets, no clock.

- `sent(...)` / `acked(...)`: a sender numbered an event; the gateway acked a sender's events
  cumulatively up to a seq of an epoch (an ack means JetStream holds the event, G1).
- `expect(...)`: a receiver joined a session's direction and should get every acked event
  after a key (an agent joins at the latest snapshot: `welcome.delivered`).
- `delivered(...)`: a receiver's application got an event (after the client's own
  duplicate dropping), with its latency if known.
- `reset(...)` / `skip_acked(...)`: the protocol lets the receiver start over (ctl `reset`,
  a new agent identity) or skip what was stored before (a visitor's new page).

A *stream* is one sender's events in one session and direction: `(session, "v", "visitor")`
for visitor -> agents, `(session, "a", <agent id>)` for one agent -> visitor. Keys are
`(epoch, seq)`; within an epoch acked seqs are gap-free from 1, so the acked set of a stream is
`{epoch: highest acked seq}`.

Per (stream, receiver):
- **duplicated**: a key delivered again;
- **reordered**: a key delivered after a higher key of the same stream (and not a duplicate);
- **lost**: an acked key after the receiver's start that was never delivered.

Latency (seconds in, microseconds stored) goes into HDR histograms, one per direction.
Client-side figures (resumes, resume times, reconnect notices, admission rejections) are
summed by `record_client`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from hdrh.histogram import HdrHistogram

Key = tuple[int, int]
StreamId = tuple[str, str, str]  # (session, direction "v" | "a", sender)

LATENCY_MAX_US = 3_600_000_000  # one hour: anything slower is clamped
LATENCY_DIGITS = 3


def new_histogram(digits: int = LATENCY_DIGITS) -> HdrHistogram:
    return HdrHistogram(1, LATENCY_MAX_US, digits)


def record_latency(hist: HdrHistogram, seconds: float) -> None:
    """`hist.record_value` of the microseconds, with hdrh's index arithmetic inlined: its
    five method calls per value were a tenth of the load generator's CPU per event."""
    v = min(LATENCY_MAX_US, max(1, int(seconds * 1_000_000)))
    unit = hist.unit_magnitude
    bucket = (
        (v | hist.sub_bucket_mask).bit_length() - unit - hist.sub_bucket_half_count_magnitude - 1
    )
    index = ((bucket + 1) << hist.sub_bucket_half_count_magnitude) + (
        (v >> (bucket + unit)) - hist.sub_bucket_half_count
    )
    hist.counts[index] += 1
    hist.total_count += 1
    if v < hist.min_value:
        hist.min_value = v
    if v > hist.max_value:
        hist.max_value = v


def record_many(hist: HdrHistogram, us: list[int]) -> None:
    """Record many values (microseconds, clamped like `record_latency`) at once: what
    `record_latency` does for one, in numpy array operations."""
    if not us:
        return
    v = np.asarray(us, dtype=np.int64)
    np.clip(v, 1, LATENCY_MAX_US, out=v)
    unit, half = hist.unit_magnitude, hist.sub_bucket_half_count_magnitude
    # bit_length(v | mask), exactly: frexp's exponent of an integer below 2**53
    bits = np.frexp((v | hist.sub_bucket_mask).astype(np.float64))[1].astype(np.int64)
    bucket = bits - unit - half - 1
    index = ((bucket + 1) << half) + ((v >> (bucket + unit)) - hist.sub_bucket_half_count)
    counts = np.ctypeslib.as_array(hist.counts)
    counts += np.bincount(index, minlength=len(counts)).astype(counts.dtype)
    hist.total_count += len(v)
    lo, hi = int(v.min()), int(v.max())
    if lo < hist.min_value:
        hist.min_value = lo
    if hi > hist.max_value:
        hist.max_value = hi


class Latencies:
    """Latencies recorded in bulk, for the load generator's hot path: `us` takes each value in
    microseconds with one `append` (`us.append(int(seconds * 1e6))`), and `histogram()`
    folds what came since into the HDR histogram (`record_many`) before anyone reads it.
    The list is emptied in place, so a caller may keep `us.append`."""

    __slots__ = ("hist", "us")

    def __init__(self, digits: int = LATENCY_DIGITS) -> None:
        self.hist = new_histogram(digits)
        self.us: list[int] = []

    def record(self, seconds: float) -> None:
        self.us.append(int(seconds * 1_000_000))

    def histogram(self) -> HdrHistogram:
        if self.us:
            record_many(self.hist, self.us)
            self.us.clear()
        return self.hist

    def __getattr__(self, name: str):
        """Read like the histogram (`get_total_count()`, `get_value_at_percentile(p)`...)."""
        return getattr(self.histogram(), name)


def percentiles_ms(
    hist: HdrHistogram | Latencies, ps: Iterable[float] = (50, 99)
) -> dict[str, float | None]:
    """{"p50": ms, "p99": ms, "max": ms}, or Nones when nothing was recorded."""
    if isinstance(hist, Latencies):
        hist = hist.histogram()
    out: dict[str, float | None] = {}
    empty = hist.get_total_count() == 0
    for p in ps:
        name = f"p{p:g}".replace(".", "_")
        out[name] = None if empty else round(hist.get_value_at_percentile(p) / 1000, 2)
    out["max"] = None if empty else round(hist.get_max_value() / 1000, 2)
    return out


class SeqSet:
    """Seqs of one epoch seen so far: a contiguous run `base+1..upto` (from the first seq
    added: a receiver that joins late starts past 1) plus stragglers outside it.

    Delivery is in order almost always, so this stays O(1) in memory for long runs."""

    __slots__ = ("base", "upto", "extra")

    def __init__(self) -> None:
        self.base = self.upto = 0  # the run is empty until the first add
        self.extra: set[int] = set()

    def add(self, seq: int) -> bool:
        """Record `seq`; False if it was already there."""
        if self.base < seq <= self.upto or seq in self.extra:
            return False
        if seq == self.upto + 1:
            self.upto = seq
            extra = self.extra
            while self.upto + 1 in extra:
                self.upto += 1
                extra.discard(self.upto)
        elif self.upto == self.base:  # the first: the run starts here
            self.base, self.upto = seq - 1, seq
        else:
            self.extra.add(seq)
        return True

    def __contains__(self, seq: int) -> bool:
        return self.base < seq <= self.upto or seq in self.extra

    def count_in(self, lo: int, hi: int) -> int:
        """How many of lo..hi (inclusive) are present."""
        if hi < lo:
            return 0
        n = max(0, min(hi, self.upto) - max(lo, self.base + 1) + 1)
        return n + sum(1 for s in self.extra if lo <= s <= hi)


class _Receipt:
    """What one receiver got of one stream. `deliver` is O(1) for an event that continues the
    stream in order, the usual case, and allocates nothing then."""

    __slots__ = (
        "after",
        "seen",
        "top_epoch",
        "top_seq",
        "delivered",
        "duplicated",
        "reordered",
        "_epoch",
        "_set",
    )

    def __init__(self, after: Key | None) -> None:
        self.restart(after)

    def restart(self, after: Key | None) -> None:
        """Start over (in place, so that a client's cached reference stays valid)."""
        self.after = after  # expected: acked keys > after; None: set by the first delivery
        self.seen: dict[int, SeqSet] = {}
        self.top_epoch = self.top_seq = -1  # the highest key delivered; -1: none yet
        self.delivered = self.duplicated = self.reordered = 0
        self._epoch = -1  # the epoch of the last delivery, and its SeqSet
        self._set = SeqSet()

    @property
    def top(self) -> Key | None:
        return None if self.top_epoch < 0 else (self.top_epoch, self.top_seq)

    def has(self, key: Key) -> bool:
        s = self.seen.get(key[0])
        return s is not None and key[1] in s

    def deliver(self, epoch: int, seq: int) -> bool:
        """Record one delivered key; False when it is a duplicate."""
        if epoch == self._epoch:
            s = self._set
        else:
            s = self.seen.get(epoch)
            if s is None:
                s = self.seen[epoch] = SeqSet()
            self._epoch, self._set = epoch, s
            if self.after is None:
                self.after = (epoch, seq - 1)
        if seq == s.upto + 1 and not s.extra:
            s.upto = seq
        elif not s.add(seq):
            self.duplicated += 1
            return False
        self.delivered += 1
        te = self.top_epoch
        if epoch < te or (epoch == te and seq < self.top_seq):
            self.reordered += 1
        else:
            self.top_epoch, self.top_seq = epoch, seq
        return True


class Inbox:
    """What one receiver got of one stream, written down as it came and checked in bulk:
    the load generator's receive path appends each event's seq, send time and arrival time
    (`add_seq`, `add_sent`, `add_received`: three list appends) and `flush()` hands the keys
    to the receipt in the order they came, exactly as if each had been `deliver`ed then (a
    run that continues the stream in order costs one comparison of lists), and their
    latencies to the run's and each second's histograms. `Verifier.flush()` flushes every
    inbox; everything that reads the verifier's results or changes a receiver's expectations
    calls it first."""

    __slots__ = (
        "receipt",
        "latency",
        "timeline",
        "joined",
        "epoch",
        "seqs",
        "sent",
        "received",
        "add_seq",
        "add_sent",
        "add_received",
    )

    def __init__(self, receipt: _Receipt, latency: Latencies, timeline, joined: float) -> None:
        self.receipt, self.latency, self.timeline, self.joined = receipt, latency, timeline, joined
        self.epoch = -1  # the epoch of the events written down
        self.seqs: list[int] = []
        self.sent: list[float] = []  # each event's send time (wall clock, seconds)
        self.received: list[float] = []  # each event's arrival (wall clock, seconds)
        self.add_seq, self.add_sent = self.seqs.append, self.sent.append
        self.add_received = self.received.append

    def at_epoch(self, epoch: int) -> None:
        """The next events are of `epoch` (one epoch a batch: flush what is of another)."""
        if epoch != self.epoch:
            self.flush()
            self.epoch = epoch

    def flush(self) -> None:
        seqs = self.seqs
        if not seqs:
            return
        r, epoch, n = self.receipt, self.epoch, len(seqs)
        first = seqs[0]
        s = r._set
        if (
            epoch == r._epoch
            and first == s.upto + 1
            and not s.extra
            and r.top_epoch == epoch
            and r.top_seq == s.upto
            and seqs[-1] == first + n - 1
            and seqs == list(range(first, first + n))
        ):  # the stream continues in order: what `deliver` would do n times
            s.upto = r.top_seq = first + n - 1
            r.delivered += n
            kept = None
        else:
            kept = [r.deliver(epoch, q) for q in seqs]
        sent, got, joined = self.sent, self.received, self.joined
        if kept is None and sent[0] >= joined:  # the usual batch: every latency counts
            idx = None
            us = [int((g - t) * 1_000_000) for t, g in zip(sent, got, strict=True)]
        else:
            idx = [i for i in range(n) if sent[i] >= joined and (kept is None or kept[i])]
            us = [int((got[i] - sent[i]) * 1_000_000) for i in idx]
        if us:
            self.latency.us.extend(us)
            tl = self.timeline
            if tl is not None:
                first = got[0] if idx is None else got[idx[0]]
                last = got[-1] if idx is None else got[idx[-1]]
                if tl.slot(first) == tl.slot(last):
                    tl.add_latencies(first, us)
                else:  # across seconds: each latency to the second it arrived in
                    for i, u in zip(range(n) if idx is None else idx, us, strict=True):
                        tl.add_latencies(got[i], (u,))
        seqs.clear()
        sent.clear()
        got.clear()


@dataclass
class _Stream:
    sent: int = 0
    acked: dict[int, int] = field(default_factory=dict)  # epoch -> highest acked seq

    def pushed(self, epoch: int, seq: int) -> None:
        """The sender numbered an event (a sequencer's hook)."""
        self.sent += 1

    def ack(self, epoch: int, seq: int) -> None:
        """Cumulative: every seq <= `seq` of `epoch` is stored."""
        if seq > self.acked.get(epoch, 0):
            self.acked[epoch] = seq

    def top(self) -> Key | None:
        """The highest acked key."""
        keys = [(e, s) for e, s in self.acked.items() if s > 0]
        return max(keys) if keys else None

    def acked_count(self) -> int:
        return sum(self.acked.values())


@dataclass
class StreamReport:
    session: str
    direction: str
    sender: str
    receiver: str
    acked: int
    expected: int
    delivered: int
    lost: int
    duplicated: int
    reordered: int

    @property
    def clean(self) -> bool:
        return self.lost == self.duplicated == self.reordered == 0


@dataclass
class ClientFigures:
    clients: int = 0
    connects: int = 0
    resumed: int = 0
    reconnect_notices: int = 0
    rejected_new: int = 0
    rejected_resume: int = 0
    duplicates_dropped: int = 0
    gaps: int = 0
    resume_times: list[float] = field(default_factory=list)  # disconnect -> resumed, seconds
    notice_times: list[float] = field(default_factory=list)  # notice -> resumed, seconds


class Verifier:
    def __init__(self) -> None:
        self._streams: dict[StreamId, _Stream] = {}
        # (session, direction) -> receiver -> default start
        self._receivers: dict[tuple[str, str], dict[str, Key | None]] = defaultdict(dict)
        self._receipts: dict[tuple[StreamId, str], _Receipt] = {}
        self._inboxes: list[Inbox] = []
        self.latency = {"v": Latencies(), "a": Latencies()}
        self.resets = 0
        self.clients = ClientFigures()

    # ---- what senders did --------------------------------------------------------------

    def _stream(self, sid: StreamId) -> _Stream:
        st = self._streams.get(sid)
        if st is None:
            st = self._streams[sid] = _Stream()
        return st

    def stream(self, session: str, direction: str, sender: str) -> _Stream:
        """One sender's stream, for a client that counts into it directly (`sent += 1`, and
        `ack()`) instead of calling `sent` and `acked` with its key each time."""
        return self._stream((session, direction, sender))

    def sent(self, session: str, direction: str, sender: str, epoch: int, seq: int) -> None:
        self._stream((session, direction, sender)).sent += 1

    def acked(self, session: str, direction: str, sender: str, epoch: int, seq: int) -> None:
        """Cumulative: every seq <= `seq` of `epoch` is stored."""
        self._stream((session, direction, sender)).ack(epoch, seq)

    # ---- what receivers did ------------------------------------------------------------

    def expect(
        self, session: str, direction: str, receiver: str, after: Key | None = (0, 0)
    ) -> None:
        """`receiver` should get every acked event of (session, direction) after `after`
        (None: after the key just before the first one it gets)."""
        self._receivers[(session, direction)][receiver] = after

    def _receipt(self, sid: StreamId, receiver: str) -> _Receipt:
        r = self._receipts.get((sid, receiver))
        if r is None:
            default = self._receivers.get((sid[0], sid[1]), {}).get(receiver)
            r = self._receipts[(sid, receiver)] = _Receipt(after=default)
            self._receivers[(sid[0], sid[1])].setdefault(receiver, default)
        return r

    def receipt(self, session: str, direction: str, sender: str, receiver: str) -> _Receipt:
        """What `receiver` got of one stream, for a client that feeds it directly
        (`deliver(epoch, seq)`, then the latency into `latency[direction].us`). The object
        stays the same across `reset`, so it can be kept."""
        sid = (session, direction, sender)
        self._stream(sid)
        return self._receipt(sid, receiver)

    def inbox(
        self,
        session: str,
        direction: str,
        sender: str,
        receiver: str,
        joined: float = 0.0,
        timeline=None,
    ) -> Inbox:
        """An `Inbox` for what `receiver` gets of one stream: latencies of events sent at or
        after `joined` count, and go to `timeline` (its `add_latencies`) too if given."""
        box = Inbox(
            self.receipt(session, direction, sender, receiver),
            self.latency[direction],
            timeline,
            joined,
        )
        self._inboxes.append(box)
        return box

    def flush(self) -> None:
        """Check what every inbox holds (see `Inbox`)."""
        for box in self._inboxes:
            if box.seqs:
                box.flush()

    def delivered(
        self,
        session: str,
        direction: str,
        sender: str,
        receiver: str,
        epoch: int,
        seq: int,
        latency: float | None = None,
    ) -> None:
        r = self.receipt(session, direction, sender, receiver)
        if r.deliver(epoch, seq) and latency is not None:
            self.latency[direction].record(latency)

    def reset(self, session: str, direction: str, receiver: str) -> None:
        """The receiver starts over (ctl reset, or a new agent identity): what it got so far
        no longer counts, and it expects acked events from its next delivery on."""
        self.flush()
        self.resets += 1
        self._receivers[(session, direction)][receiver] = None
        for (sid, rcv), r in self._receipts.items():
            if rcv == receiver and sid[0] == session and sid[1] == direction:
                r.restart(None)

    def skip_acked(self, session: str, direction: str, receiver: str) -> None:
        """Events acked so far need not reach `receiver` (a visitor's new page does not
        replay agent events meant for the old one)."""
        self.flush()
        for sid, st in self._streams.items():
            if sid[0] != session or sid[1] != direction:
                continue
            r = self._receipt(sid, receiver)
            top = st.top()
            if top is not None and (r.after is None or top > r.after):
                r.after = top

    # ---- client-side figures -----------------------------------------------------------

    def record_client(
        self,
        *,
        connects: int,
        resumes: int,
        reconnect_notices: int,
        rejected_new: int,
        rejected_resume: int,
        duplicates_dropped: int = 0,
        gaps: int = 0,
        resume_times: Iterable[float] = (),
        notice_times: Iterable[float] = (),
    ) -> None:
        c = self.clients
        c.clients += 1
        c.connects += connects
        c.resumed += resumes
        c.reconnect_notices += reconnect_notices
        c.rejected_new += rejected_new
        c.rejected_resume += rejected_resume
        c.duplicates_dropped += duplicates_dropped
        c.gaps += gaps
        c.resume_times.extend(resume_times)
        c.notice_times.extend(notice_times)

    # ---- results -----------------------------------------------------------------------

    def _pairs(self):
        """Every (stream, receiver) that should be checked."""
        for sid in self._streams:
            for receiver in self._receivers.get((sid[0], sid[1]), {}):
                yield sid, receiver

    def _lost(self, st: _Stream, r: _Receipt) -> tuple[int, int]:
        """(expected, lost) for one receiver of one stream."""
        if r.after is None:  # joined, got nothing yet, start unknown: everything acked counts
            after: Key = (0, 0)
        else:
            after = r.after
        expected = lost = 0
        for epoch, hi in st.acked.items():
            if epoch < after[0]:
                continue
            lo = after[1] + 1 if epoch == after[0] else 1
            if hi < lo:
                continue
            expected += hi - lo + 1
            seen = r.seen.get(epoch)
            got = seen.count_in(lo, hi) if seen is not None else 0
            lost += hi - lo + 1 - got
        return expected, lost

    def streams(self) -> list[StreamReport]:
        self.flush()
        out = []
        for sid, receiver in self._pairs():
            st = self._streams[sid]
            r = self._receipt(sid, receiver)
            expected, lost = self._lost(st, r)
            out.append(
                StreamReport(
                    session=sid[0],
                    direction=sid[1],
                    sender=sid[2],
                    receiver=receiver,
                    acked=st.acked_count(),
                    expected=expected,
                    delivered=r.delivered,
                    lost=lost,
                    duplicated=r.duplicated,
                    reordered=r.reordered,
                )
            )
        return out

    def outstanding(self) -> int:
        """(stream, receiver) pairs whose receiver has not yet got the stream's last acked
        event: the settle phase waits for this to reach 0."""
        self.flush()
        n = 0
        for sid, receiver in self._pairs():
            top = self._streams[sid].top()
            if top is None:
                continue
            r = self._receipt(sid, receiver)
            if r.after is not None and top <= r.after:
                continue
            if not r.has(top):
                n += 1
        return n

    def totals(self, direction: str | None = None) -> dict[str, int]:
        t = dict.fromkeys(
            ("sent", "acked", "expected", "delivered", "lost", "duplicated", "reordered"), 0
        )
        for sid, st in self._streams.items():
            if direction is None or sid[1] == direction:
                t["sent"] += st.sent
                t["acked"] += st.acked_count()
        for rep in self.streams():
            if direction is None or rep.direction == direction:
                for k in ("expected", "delivered", "lost", "duplicated", "reordered"):
                    t[k] += getattr(rep, k)
        return t

    def problems(self, limit: int = 20) -> list[dict]:
        bad = [s for s in self.streams() if not s.clean]
        bad.sort(key=lambda s: (-(s.lost + s.duplicated + s.reordered), s.session))
        return [s.__dict__ for s in bad[:limit]]
