"""structlog set-up shared by every component: one key-value line per event, to stderr."""

from __future__ import annotations

import logging
import sys

import structlog

from . import settings


def configure(
    component: str, log: settings.LogSettings | None = None, *, level: str | None = None
) -> None:
    """Set up structlog from `log` (the component's COBROWSE_LOG_* settings; read from the
    environment when not given); `level` overrides the level."""
    if log is None:
        log = settings.from_environ(settings.LogSettings)
    lvl = getattr(logging, (level or log.level).upper(), logging.INFO)
    renderer = (
        structlog.processors.JSONRenderer()
        if log.format == "json"
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
