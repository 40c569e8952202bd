"""JetStream's `err_code`s that the gateway acts on, in one place: the native KV client and
the publish chain both write with `Nats-Expected-Last-Subject-Sequence` and must read the
same refusals the same way."""

from __future__ import annotations

NO_MESSAGE = 10037  # a direct or message get found no message
# The expected last subject sequence failed: another write came first ("wrong last sequence:
# N", N the subject's last), or, on one replica, our own stored-but-unacknowledged attempt.
WRONG_LAST_SEQUENCE = 10071
DUPLICATE_IN_PROCESS = 10158  # a replicated stream still storing the first copy of a retry
# A replicated stream refusing an expected last sequence while another write to the subject
# is still being proposed ("wrong last sequence", no number): 93-95 of the 95 losing writes
# of five races of 20 writers on an R3 bucket here (`python -m loadtest.bench.replicas`).
# nats-py reads it as 10071.
WRONG_LAST_SEQUENCE_IN_PROCESS = 10164
# Both mean a lost compare-and-set.
LOST_COMPARE_AND_SET = frozenset({WRONG_LAST_SEQUENCE, WRONG_LAST_SEQUENCE_IN_PROCESS})
