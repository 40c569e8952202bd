"""The router's operator actions on gateways (router/gateway_control.py): the status table,
drain ids, and how the answers of a gateway's workers combine. The commands themselves run
in tests/router/test_api.py (`test_status_and_drain_commands`)."""

from __future__ import annotations

import pytest

from gateway import membership
from router import gateway_control


def test_status_table_is_aligned():
    gws = [
        membership.GatewayInfo(id="gw-1", url="ws://h:1/", connections=12, load=0.5, updated=95),
        membership.GatewayInfo(
            id="gw-long-name", url="ws://h:2/", state="draining", connections=3, updated=99
        ),
    ]
    lines = gateway_control.format_status(gws, now=100).splitlines()
    assert lines[0].split() == ["ID", "STATE", "CONNECTIONS", "LOAD", "URL", "AGE"]
    assert lines[1].split() == ["gw-1", "active", "12", "0.50", "ws://h:1/", "5.0s"]
    assert lines[2].split()[:3] == ["gw-long-name", "draining", "3"]
    col = lines[0].index("STATE")
    assert lines[1][col:].startswith("active") and lines[2][col:].startswith("draining")
    assert "no gateways" in gateway_control.format_status([], now=0)


def test_drain_answers_of_a_gateways_workers_are_summed():
    replies = [
        {"ok": True, "gateway": "gw-1.w1", "state": "draining", "connections": 2},
        {"ok": True, "gateway": "gw-1.w0", "state": "draining", "connections": 0},
    ]
    assert gateway_control.combine_replies("gw-1", replies) == {
        "ok": True,
        "gateway": "gw-1",
        "state": "draining",
        "connections": 2,
        "workers": [
            {"gateway": "gw-1.w0", "state": "draining", "connections": 0},
            {"gateway": "gw-1.w1", "state": "draining", "connections": 2},
        ],
    }
    refused = [dict(replies[0], ok=False, state="active"), replies[1]]
    assert gateway_control.combine_replies("gw-1", refused)["ok"] is False
    assert gateway_control.combine_replies("gw-1", refused)["state"] == "mixed"
    with pytest.raises(gateway_control.NoAnswer):
        gateway_control.combine_replies("gw-1", [])


def test_drain_ids_are_the_ids_status_lists():
    gws = [membership.GatewayInfo(id=i, url="ws://x/") for i in ("gw-1.w0", "gw-1.w1", "gw-10")]
    assert [g.id for g in membership.workers_of("gw-1", gws)] == ["gw-1.w0", "gw-1.w1"]
    assert [g.id for g in membership.workers_of("gw-1.w1", gws)] == ["gw-1.w1"]
    assert [g.id for g in membership.workers_of("gw-10", gws)] == ["gw-10"]
    assert gateway_control.valid_gateway_id("gw-1.w0") and gateway_control.valid_gateway_id("gw-1")
    for bad in ("gw.*", "gw-1.", "gw-1.x0", "gw.1.w0", "gw-1.w0.w1", "*", ">", "a b", ""):
        assert not gateway_control.valid_gateway_id(bad), bad
