"""The per-hop runtime floor benchmark (loadtest/bench/hop_floor.py), with small counts: every
server relays every message to its pair, and the figures are per message."""

from __future__ import annotations

import json

import pytest

from loadtest.bench import hop_floor


@pytest.mark.timeout(60)
def test_every_server_relays_every_message_and_its_cost_is_reported(tmp_path, capsys):
    kinds = ["trio-tasks", "trio-hub", "epoll", "asyncio"]
    kinds += [k for k in ("uvloop", "node") if hop_floor._available(k)]
    out = tmp_path / "hop.json"
    argv = ["--rate", "400", "--pairs", "4", "--seconds", "1", "--rounds", "1"]
    assert hop_floor.main([*argv, "--kinds", ",".join(kinds), "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert sorted(doc["medians"]) == sorted(kinds)
    for r in doc["results"]:
        assert r["sent"] >= 300 and r["relayed"] == r["sent"], r
        assert r["server_us_per_message"] > 0 and r["driver_us_per_message"] > 0, r
    printed = capsys.readouterr().out
    assert "per hop at 400 messages/s over 4 pairs" in printed
    if "node" in kinds:
        assert "x node" in printed


def test_a_server_that_drops_messages_fails_the_run(monkeypatch, capsys):
    def lossy(kind, pairs, rate, seconds, rnd):
        return hop_floor.HopResult(
            kind, rnd, sent=100, relayed=97, server_us_per_message=20.0, driver_us_per_message=40.0
        )

    monkeypatch.setattr(hop_floor, "drive", lossy)
    assert hop_floor.main(["--kinds", "epoll", "--rounds", "1"]) == 1
    assert "epoll round 0: 3 of 100 not relayed" in capsys.readouterr().out


def test_an_unknown_server_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        hop_floor.main(["--kinds", "epoll,libevent"])
    assert exc.value.code == 2
    assert "unknown server libevent" in capsys.readouterr().err
