"""The corpus tests read the checkout's own copy unless COBROWSE_CORPUS says otherwise."""

from __future__ import annotations

from pathlib import Path

from tests.support.corpus_dir import COPY, corpus_dir

CHECKOUT = Path(__file__).resolve().parent.parent


def test_the_checkouts_copy_by_default(tmp_path):
    assert corpus_dir({}) == COPY == corpus_dir({"COBROWSE_CORPUS": ""})
    assert COPY.is_relative_to(CHECKOUT) and any(COPY.rglob("*.html"))


def test_the_variable_names_another_folder(tmp_path):
    assert corpus_dir({"COBROWSE_CORPUS": str(tmp_path)}) == tmp_path
