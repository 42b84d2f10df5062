"""The middle class of the HTTP API backends: client, timeouts, error mapping.

A provider subclass fills three hooks::

    build_request(template, batch)        -> HttpRequest   (URL, auth, JSON or form body)
    parse_response(response, batch)       -> results       (per recipient, HTTP 2xx only)
    error_message(response)               -> str           (the provider's error shape)

and :meth:`HttpBackend.send_batch` maps everything else the same way for all:

=============================  ===============================================
timeout, connection error      TransientError (retried by the base flow)
HTTP 429, 5xx                  TransientError with Retry-After (seconds or a date)
HTTP 401, 403                  AuthError: the run stops
other 4xx (400, 413, 422...)   every recipient of the batch failed, permanently
=============================  ===============================================

The ``httpx.Client`` is injected (tests use ``httpx.MockTransport``); without one the
backend makes its own and closes it in :meth:`close`. API keys go into request
headers only and never into errors, logs or ``repr``.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import httpx

from newsletter.config import Settings
from newsletter.delivery.base import Backend, BackendOptions
from newsletter.errors import AuthError, ConfigError, TransientError
from newsletter.message import MessageTemplate, Recipient
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
        request = self.build_request(template, batch)
        self.limiter.acquire(len(batch))
        try:
            response = self.client.request(
                request.method,
                request.url,
                headers=dict(request.headers),
                json=request.json,
                data=request.data,
                auth=request.auth,
            )
        except httpx.TimeoutException as exc:
            raise TransientError(f"{self.name}: timeout ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise TransientError(f"{self.name}: connection failed ({type(exc).__name__})") from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise TransientError(
                f"{self.name}: HTTP {status}: {self.error_message(response)}",
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            )
        if status in (401, 403):
            raise AuthError(
                f"{self.name} refused the API key (HTTP {status}: {self.error_message(response)}); "
                f"check NEWSLETTER_DELIVERY__API_KEY"
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
