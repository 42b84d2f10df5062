"""The one HTTP path every network source goes through: client, User-Agent, retries.

``get()`` sends a GET and retries, with exponential backoff and full jitter, on 429,
5xx and transport errors (timeouts, refused connections), at most ``settings.retries``
times. A ``Retry-After`` header (delta-seconds or an HTTP-date) replaces the computed
delay. Any other 4xx, or a failure after the last retry, raises
:class:`~newsletter.errors.SourceUnavailable` with one line naming the URL.

The clock, the sleep and the random jitter are injected through :class:`RetryPolicy`,
so tests never sleep.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import httpx

from newsletter import __version__
from newsletter.config import SourceSettings
from newsletter.errors import SourceUnavailable

log = logging.getLogger(__name__)

PROJECT_URL = "https://github.com/newsletter/newsletter"
"""Where operators of the APIs we call can learn who we are (sent in the User-Agent)."""

USER_AGENT = f"newsletter/{__version__} (+{PROJECT_URL})"
"""The User-Agent of every request: names the project and its version."""

BACKOFF_BASE = 1.0
"""Seconds before the first retry (before jitter); doubles on each retry."""

BACKOFF_CAP = 60.0
"""Longest computed delay between two attempts, in seconds."""

MAX_RETRY_AFTER = 300.0
"""A ``Retry-After`` longer than this (seconds) is not waited for: the source is unavailable."""

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
"""HTTP statuses worth retrying (plus any other 5xx)."""


def utcnow() -> dt.datetime:
    """The current time, aware, in UTC."""
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait between attempts; the clock and sleep are injectable."""

    retries: int = 4
    """Retries after the first attempt (``settings.retries``)."""
    base: float = BACKOFF_BASE
    cap: float = BACKOFF_CAP
    max_retry_after: float = MAX_RETRY_AFTER
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], dt.datetime] = utcnow
    rng: random.Random = field(default_factory=random.Random)

    def backoff(self, retry: int) -> float:
        """The delay before retry number ``retry`` (0-based): full jitter over base * 2**retry."""
        return self.rng.uniform(0.0, min(self.cap, self.base * 2.0**retry))


def make_client(settings: SourceSettings) -> httpx.Client:
    """A client with the project's User-Agent and the configured timeout."""
    return httpx.Client(
        headers={"User-Agent": USER_AGENT},
        timeout=httpx.Timeout(settings.timeout),
        follow_redirects=True,
    )


def parse_retry_after(value: str | None, *, now: dt.datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date), or None."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now).total_seconds())


def _get_within(
    client: httpx.Client,
    url: str,
    *,
    params: Mapping[str, str | int] | None,
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
) -> httpx.Response:
    """One GET whose whole answer must arrive within ``timeout`` seconds.

    httpx's timeout bounds each read, so a server dripping a byte at a time would
    hold the run forever; here the body is read chunk by chunk against a deadline.
    """
    deadline = clock() + timeout
    with client.stream(
        "GET",
        url,
        params=dict(params) if params else None,
        headers={"User-Agent": USER_AGENT},
        timeout=timeout,
    ) as response:
        if response.is_stream_consumed:  # already read (a mock transport's answer)
            return response
        chunks: list[bytes] = []
        for chunk in response.iter_raw():
            chunks.append(chunk)
            if clock() > deadline:
                raise httpx.ReadTimeout(
                    f"timed out: the answer did not arrive within {timeout:g} s",
                    request=response.request,
                )
    return httpx.Response(
        response.status_code,
        headers=response.headers,
        content=b"".join(chunks),
        request=response.request,
        extensions=response.extensions,
    )


def get(
    client: httpx.Client,
    url: str,
    *,
    params: Mapping[str, str | int] | None = None,
    timeout: float,
    policy: RetryPolicy,
) -> httpx.Response:
    """GET ``url`` with retries; the successful (2xx) response, or SourceUnavailable."""
    attempts = policy.retries + 1
    where = url if not params else str(httpx.URL(url, params=dict(params)))
    for attempt in range(attempts):
        last = attempt == attempts - 1
        try:
            response = _get_within(client, url, params=params, timeout=timeout)
        except httpx.TransportError as exc:
            problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if last:
                raise SourceUnavailable(
                    f"{where}: {problem} (gave up after {attempts} attempts)"
                ) from None
            delay = policy.backoff(attempt)
            log.warning("%s: %s; retrying in %.1f s", where, problem, delay)
            policy.sleep(delay)
            continue
        status = response.status_code
        if status < 400:
            return response
        retryable = status in RETRY_STATUSES or status >= 500
        if not retryable:
            raise SourceUnavailable(f"{where}: HTTP {status} {response.reason_phrase}".rstrip())
        if last:
            raise SourceUnavailable(
                f"{where}: HTTP {status} {response.reason_phrase} "
                f"(gave up after {attempts} attempts)"
            )
        wait = parse_retry_after(response.headers.get("Retry-After"), now=policy.now())
        if wait is not None and wait > policy.max_retry_after:
            raise SourceUnavailable(
                f"{where}: HTTP {status}, asked to retry after {wait:.0f} s "
                f"(more than {policy.max_retry_after:.0f} s)"
            )
        delay = wait if wait is not None else policy.backoff(attempt)
        log.warning("%s: HTTP %d; retrying in %.1f s", where, status, delay)
        policy.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
