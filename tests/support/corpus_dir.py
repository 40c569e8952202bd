"""Where the tests read the rrweb fixture corpus: the checkout's own copy
(tests/corpus/rrweb-fixtures, MIT, see its LICENSE), unless `COBROWSE_CORPUS` names another
folder. Nothing outside the checkout is read by default, so every checkout tests the same pages."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

COPY = Path(__file__).resolve().parents[1] / "corpus" / "rrweb-fixtures"


def corpus_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """The corpus folder: `COBROWSE_CORPUS` when set and not empty, else the checkout's copy."""
    return Path(environ.get("COBROWSE_CORPUS") or COPY)
