"""structlog set-up shared by every component: one key-value line per event, to stderr."""

from __future__ import annotations

import logging
import os
import sys

import structlog


def configure(component: str, level: str | None = None) -> None:
    lvl = getattr(
        logging, (level or os.environ.get("COBROWSE_LOG_LEVEL", "INFO")).upper(), logging.INFO
    )
    fmt = os.environ.get("COBROWSE_LOG_FORMAT", "kv")
    renderer = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.processors.KeyValueRenderer(
            key_order=["timestamp", "level", "event"], drop_missing=True
        )
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(component=component)
