from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from newsletter.logs import LOGGERS


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Commands install their own log handler (newsletter.logs.setup_logging); put the
    loggers back afterwards so one test's handler never leaks into the next."""
    saved = {
        name: (list(logger.handlers), logger.propagate, logger.level)
        for name in LOGGERS
        for logger in [logging.getLogger(name)]
    }
    yield
    for name, (handlers, propagate, level) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.propagate = propagate
        logger.setLevel(level)
