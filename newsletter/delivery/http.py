"""The middle class of the HTTP API backends: client, timeouts, error mapping.

A provider subclass fills these hooks::

    build_request(template, batch)        -> HttpRequest   (URL, auth, JSON or form body)
    parse_response(response, batch)       -> results       (per recipient, HTTP 2xx only)
    error_message(response)               -> str           (the provider's error shape)
    read_error(response)                  -> an exception to raise, or None (optional:
                                             account-wide errors, provider-specific codes)
    retry_after(response)                 -> seconds       (optional: rate-limit headers)

and :meth:`HttpBackend.send_batch` maps everything else the same way for all:

=============================  ===============================================
request over max_request_bytes BatchTooLarge before sending: the base splits it
timeout, connection error      TransientError (retried by the base flow)
HTTP 413                       BatchTooLarge: the base splits the batch in two
HTTP 429, 5xx                  TransientError with Retry-After (seconds or a date)
HTTP 401                       AuthError: the run stops ("refused the API key")
HTTP 403                       AuthError with what the provider said (a provider's
                               read_error turns "sender not verified" into a
                               DeliveryError first): the run stops
other 4xx (400, 422...)        every recipient of the batch failed, permanently
2xx the provider's parser      "outcome unknown" (see :meth:`unknown_outcome`)
cannot read
=============================  ===============================================

The HTTP backends build the message at the provider (JSON fields, not our MIME), so
our own DKIM signature cannot travel with it: ``delivery.dkim_key`` with one of them
is refused with a ConfigError (set up DKIM for the sending domain at the provider).

The ``httpx.Client`` is injected (tests use ``httpx.MockTransport``); without one the
backend makes its own and closes it in :meth:`close`. API keys go into request
headers only and never into errors, logs or ``repr``.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import httpx

from newsletter.config import Settings
from newsletter.delivery.base import Backend, BackendOptions, BatchTooLarge
from newsletter.errors import AuthError, ConfigError, DeliveryError, TransientError
from newsletter.message import DkimSigner, MessageTemplate, Recipient
from newsletter.models import SendResult, SendStatus

DEFAULT_TIMEOUT = 30.0
"""Seconds for connecting and for each read of an API call."""

MAX_ERROR_CHARS = 300
"""Longest provider error text kept in a result."""

USER_AGENT = "newsletter-delivery/0.1"

_TITLE_RE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class HttpRequest:
    """One API call: what :meth:`HttpBackend.build_request` returns."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    data: Mapping[str, Any] | None = None
    auth: tuple[str, str] | None = None


class HttpBackend(Backend):
    """Base of the API providers; see the module doc for the hooks."""

    default_base_url: ClassVar[str] = ""
    secret_name: ClassVar[str] = "delivery.api_key"
    max_request_bytes: ClassVar[int | None] = None
    """The provider's documented limit on one request's body, if any."""
    idempotent: ClassVar[bool] = False
    """True when a repeated request cannot deliver twice (an idempotency key)."""

    def __init__(
        self,
        *,
        api_key: str,
        client: httpx.Client | None = None,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        options: BackendOptions | None = None,
    ) -> None:
        super().__init__(options=options)
        if not api_key:
            raise ConfigError(
                f"{self.secret_name} is not set: "
                "set the environment variable NEWSLETTER_DELIVERY__API_KEY"
            )
        self._api_key = api_key
        self.redact = self.redact.adding(api_key)
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self._own_client = client is None
        self.client = client or httpx.Client(
            timeout=httpx.Timeout(timeout), headers={"User-Agent": USER_AGENT}
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        client: httpx.Client | None = None,
        options: BackendOptions | None = None,
    ) -> Self:
        return cls(
            client=client,
            options=options or BackendOptions.from_settings(settings),
            **cls.settings_kwargs(settings),
        )

    @classmethod
    def settings_kwargs(cls, settings: Settings) -> dict[str, Any]:
        d = settings.delivery
        return {"api_key": d.api_key or "", "base_url": d.base_url, "timeout": d.timeout}

    def dkim_signer(self, signer: DkimSigner | None) -> DkimSigner | None:
        if signer is not None:
            raise ConfigError(
                f"delivery.dkim_key: the {self.name} backend sends through the provider's API, "
                f"which builds and signs the message itself; unset delivery.dkim_key and set up "
                f"DKIM for your domain at {self.name}"
            )
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url})"

    def close(self) -> None:
        if self._own_client:
            self.client.close()

    # -- hooks ---------------------------------------------------------------------

    def build_request(self, template: MessageTemplate, batch: Sequence[Recipient]) -> HttpRequest:
        raise NotImplementedError

    def parse_response(
        self, response: httpx.Response, template: MessageTemplate, batch: Sequence[Recipient]
    ) -> Iterable[SendResult]:
        raise NotImplementedError

    def read_error(self, response: httpx.Response) -> DeliveryError | None:
        """A provider-specific reading of an error answer (status >= 400): the exception
        to raise (TransientError: retried; DeliveryError: the run stops), or None for
        the generic mapping of the module doc."""
        return None

    def retry_after(self, response: httpx.Response) -> float | None:
        """Seconds a 429/5xx answer asks us to wait (default: ``Retry-After``)."""
        return retry_after_seconds(response.headers.get("Retry-After"))

    def unknown_outcome(self, batch: Sequence[Recipient], why: str) -> list[SendResult]:
        """A 2xx answer we cannot read: the provider may have taken some or all of it.

        With an idempotency key (``idempotent``) the batch is retried: the provider
        answers a replay from its record instead of sending again. Without one a resend
        may deliver twice, so every recipient is failed permanently with a message that
        says the outcome is unknown; after checking the provider's activity log,
        ``newsletter send --retry-failed`` sends to them again. (django-anymail raises
        an error for an unreadable success answer too and does not resend.)
        """
        if self.idempotent:
            raise TransientError(f"{self.name}: {why}")
        error = (
            f"{self.name}: outcome unknown: {why}; not resent (the API has no idempotency "
            f"key): check the provider's activity log, then use --retry-failed"
        )
        return [SendResult(r.email, SendStatus.FAILED, error=error) for r in batch]

    def error_message(self, response: httpx.Response) -> str:
        """The provider's error text (default: a JSON ``message``, else the body)."""
        try:
            body = response.json()
        except ValueError:
            return _one_line(response.text) or response.reason_phrase
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            return str(body["message"])[:MAX_ERROR_CHARS]
        return str(body)[:MAX_ERROR_CHARS]

    # -- the flow ------------------------------------------------------------------

    def send_batch(
        self, template: MessageTemplate, batch: Sequence[Recipient]
    ) -> Iterable[SendResult]:
        spec = self.build_request(template, batch)
        request = self.client.build_request(
            spec.method, spec.url, headers=dict(spec.headers), json=spec.json, data=spec.data
        )
        size = int(request.headers.get("Content-Length", "0"))
        if self.max_request_bytes is not None and size > self.max_request_bytes:
            raise BatchTooLarge(
                f"{self.name}: {len(batch)} message(s) make {size} bytes, over the "
                f"{self.max_request_bytes}-byte request limit",
                sent=False,
            )
        self.limiter.acquire(len(batch))
        try:
            response = self.client.send(request, auth=spec.auth)
        except httpx.TimeoutException as exc:
            raise TransientError(f"{self.name}: timeout ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise TransientError(f"{self.name}: connection failed ({type(exc).__name__})") from None
        status = response.status_code
        if status >= 400:
            special = self.read_error(response)
            if special is not None:
                raise special
        if status == 413:
            raise BatchTooLarge(f"{self.name}: HTTP 413: {self.error_message(response)}", sent=True)
        if status == 429 or status >= 500:
            raise TransientError(
                f"{self.name}: HTTP {status}: {self.error_message(response)}",
                retry_after=self.retry_after(response),
            )
        if status == 401:
            raise AuthError(
                f"{self.name} refused the API key (HTTP 401: {self.error_message(response)}); "
                f"check NEWSLETTER_DELIVERY__API_KEY"
            )
        if status == 403:
            raise AuthError(
                f"{self.name} refused the request (HTTP 403: {self.error_message(response)})"
            )
        if status >= 400:
            error = f"HTTP {status}: {self.error_message(response)}"
            status_for = SendStatus.INVALID if status in (400, 422) else SendStatus.FAILED
            return [SendResult(r.email, status_for, error=error) for r in batch]
        return self.parse_response(response, template, batch)


def _one_line(body: str) -> str:
    """A non-JSON error body on one line: an HTML page's title, else the text squashed."""
    title = _TITLE_RE.search(body)
    text = title.group(1) if title else body
    return " ".join(text.split())[:MAX_ERROR_CHARS]


def reset_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds until a rate-limit reset given as a Unix time (``X-RateLimit-Reset``)."""
    try:
        reset = float(value) if value else None
    except ValueError:
        return None
    if reset is None:
        return None
    return max(0.0, reset - (time.time() if now is None else now))


def retry_after_seconds(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    now = now or dt.datetime.now(dt.UTC)
    return max(0.0, (when - now).total_seconds())
