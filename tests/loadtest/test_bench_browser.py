"""`make bench`'s browser section (loadtest/bench/browser.py) at a tiny size, ours only.

rrweb (npm) is left to `make bench`: this test needs Chromium and our snippet, no network.
"""

from __future__ import annotations

import json

import pytest

from loadtest.bench import browser as bench_browser


def test_generated_page_is_deterministic():
    a = bench_browser.generate_page(500)
    assert a == bench_browser.generate_page(500)
    assert a != bench_browser.generate_page(500, seed=1)
    assert a.startswith("<!DOCTYPE html>") and a.endswith("</body></html>")
    with pytest.raises(ValueError):
        bench_browser.generate_page(3)


def test_table_rows_for_a_skipped_section():
    rows = bench_browser.table_rows({"skipped": "npm is not installed"})
    assert rows == [("browser: snapshot vs rrweb", "skipped", "npm is not installed", "", "", "")]
    assert bench_browser.table_rows(None) == []


def test_tiny_run_ours_only(chromium):
    doc = bench_browser.run(
        nodes=500,
        snapshot_reps=2,
        batches=2,
        rounds=1,
        with_rrweb=False,
        batch={"removes": 30, "adds": 30, "attrs": 30, "texts": 10},
        browser=chromium,
    )
    assert "skipped" not in doc, doc.get("skipped")
    json.dumps(doc)  # the section is plain JSON
    assert doc["nodes"] == 500  # the generator's count, as the page's DOM has it
    snap = doc["snapshot"]["ours"]
    assert snap["nodes"] == 500  # every node of the page is in our snapshot
    assert 0 < snap["median_ms"] < 5_000
    assert 500 * 10 < snap["bytes"] < 500 * 1_000  # valid JSON (parsed in the page), sane size
    assert "rrweb" not in doc["snapshot"] and doc["rrweb"].startswith("skipped")
    mut = doc["mutation"]
    assert mut["ops_per_batch"] == 100 and mut["batches_per_observer"] == 2
    for who in ("ours", "raw"):
        assert mut[who]["missed"] == 0, who
        assert mut[who]["median_ms"] is not None and mut[who]["median_ms"] >= 0
    assert mut["ours"]["events_per_batch"] >= 1
    assert mut["ours"]["bytes_per_batch"] > 30 * 10  # 30 added spans with their text, at least
    rows = bench_browser.table_rows(doc)
    assert rows[0][0] == "full snapshot, 500 nodes" and "KiB" in rows[0][1]
    assert rows[1][0] == "mutation batch, 100 DOM ops"


def test_without_npm_rrweb_is_skipped_with_the_reason(monkeypatch, tmp_path):
    monkeypatch.setattr(bench_browser, "RRWEB_JS", tmp_path / "missing.js")
    monkeypatch.setattr(bench_browser.shutil, "which", lambda name: None)
    assert bench_browser.ensure_rrweb() == "npm is not installed"


def test_without_chromium_the_section_is_skipped(monkeypatch):
    monkeypatch.setattr(bench_browser, "chromium_path", lambda: None)
    doc = bench_browser.run(nodes=100)
    assert doc["skipped"].startswith("chromium is not installed")
    assert bench_browser.table_rows(doc)[0][1] == "skipped"
