from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from newsletter.logs import LOGGERS

if TYPE_CHECKING:
    from newsletter.browser import Page

# Where libcst is installed, hypothesis imports it to print a failing example as a patch;
# that import warns (mypy_extensions.TypedDict), and under -W error the warning would
# turn the failure report into an INTERNALERROR that hides the example. Import it now,
# quietly, so the report shows the falsifying example.
with warnings.catch_warnings(), contextlib.suppress(ImportError):
    warnings.simplefilter("ignore", DeprecationWarning)
    import hypothesis.extra._patching  # noqa: F401


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


POSTGRES_ENV = "TEST_POSTGRES_URL"
"""A PostgreSQL URL whose role may CREATE DATABASE (scripts/test.sh sets it)."""


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a database made for this test session alone (other sessions run at the
    same time against the same server), dropped at the end.

    The PostgreSQL tests fail, never skip, without a server: run ``scripts/test.sh``
    (which starts the local cluster) or set TEST_POSTGRES_URL.
    """
    import os
    import secrets
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    admin = os.environ.get(POSTGRES_ENV)
    if not admin:
        pytest.fail(
            f"{POSTGRES_ENV} is not set: run scripts/test.sh (it starts the local "
            "PostgreSQL cluster) or point it at a server whose role may create databases"
        )
    name = f"newsletter_test_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(admin)
    try:
        yield urlunsplit(parts._replace(path="/" + name))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """``postgres_server`` emptied for one test: every table dropped afterwards."""
    import psycopg

    yield postgres_server
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh state database URL, once per engine."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('state') / 'state.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def browser() -> Iterator[Page]:
    """A page in headless Chromium (the ``browser`` extra; .ci/run installs chromium).
    Test modules that drive the browser another way define their own ``browser``."""
    from newsletter.browser import BrowserError, launch

    try:
        running = launch()
    except BrowserError as exc:
        pytest.fail(f"{exc} (.ci/run installs it)", pytrace=False)
    with running:
        yield running.page
