"""Mailgun messages API: ``POST /v3/<domain>/messages``, form-encoded, batch sending.

Auth: HTTP basic with user ``api`` and the API key. One request names up to 1,000
recipients as repeated ``to`` fields; ``recipient-variables`` (JSON keyed by address)
makes Mailgun send each one their own copy and fills ``%recipient.<key>%`` in the
parts and in ``h:`` headers. Success is ``200 {"id": "<...>", "message": "Queued..."}``:
every recipient is ``queued`` with that id. Errors are ``{"message": "..."}`` (a plain
``Forbidden`` for a bad key). EU domains use ``delivery.region: eu``.

Following Mailgun's "Messages" API reference and django-anymail's Mailgun backend:

* success is only the documented ``{"id", "message": "Queued. Thank you."}``; a 200
  "Mailgun Magnificent API" page (the answer of a wrong URL, e.g. a domain holding a
  ``/``) stops the run, any other 200 is an unknown outcome (not resent: no
  idempotency key); a ``/`` in ``delivery.domain`` is refused up front (anymail too);
* 404 "Domain not found" stops the run with one line: the domain is not set up at
  Mailgun, or it lives in the other region (``delivery.region: eu`` for EU domains);
* ``h:Message-Id`` from a recipient variable gives each reader's copy our stable
  Message-ID (so a resend after a crash is the same message to the receiver);
* ``o:tracking``, ``o:tracking-clicks`` and ``o:tracking-opens`` are ``no`` on every
  message, so Mailgun rewrites no link and adds no pixel. Mailgun's unsubscribe
  tracking is a domain setting with no per-message switch: keep it off for the domain
  (it would add Mailgun's own footer link).
* 413 splits the batch (the base flow); a request is kept under the documented 25 MB
  message size.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import httpx

from newsletter.config import Settings
from newsletter.delivery.http import MAX_ERROR_CHARS, HttpBackend, HttpRequest
from newsletter.errors import ConfigError, DeliveryError
from newsletter.headers import display_mailbox
from newsletter.message import ONE_CLICK, SLOTS, MessageTemplate, Recipient
from newsletter.models import SendResult, SendStatus

MAILGUN_URL = "https://api.mailgun.net"
MAILGUN_EU_URL = "https://api.eu.mailgun.net"
MAILGUN_BATCH = 1000
"""Recipients per request (the documented batch-sending maximum)."""

MAILGUN_MAX_BYTES = 25_000_000
"""The documented maximum message size (25 MB), for the whole form."""


def variable(kind: str, slot: str) -> str:
    """The recipient-variable name of a slot in one part (h: html, t: text)."""
    return f"{kind[0]}_{slot}"


class MailgunBackend(HttpBackend):
    name = "mailgun"
    batch_size = MAILGUN_BATCH
    default_base_url = MAILGUN_URL
    max_request_bytes = MAILGUN_MAX_BYTES

    def __init__(self, *, domain: str | None, **kwargs: Any) -> None:
        if not domain:
            raise ConfigError("delivery.domain: the Mailgun sending domain is required")
        if "/" in domain or "%2f" in domain.lower():
            raise ConfigError(
                f"delivery.domain: {domain!r} is not a bare domain (Mailgun answers a URL "
                "with a '/' in it with a page, not an error)"
            )
        super().__init__(**kwargs)
        self.domain = domain

    @classmethod
    def settings_kwargs(cls, settings: Settings) -> dict[str, Any]:
        kwargs = super().settings_kwargs(settings)
        if not kwargs["base_url"] and (settings.delivery.region or "").lower() == "eu":
            kwargs["base_url"] = MAILGUN_EU_URL
        return {**kwargs, "domain": settings.delivery.domain}

    def build_request(self, template: MessageTemplate, batch: Sequence[Recipient]) -> HttpRequest:
        html, text = template.parts_with_tags(
            lambda kind, slot: f"%recipient.{variable(kind, slot)}%"
        )
        variables: dict[str, dict[str, str]] = {}
        for r in batch:
            values: dict[str, str] = {}
            for slot in SLOTS:
                values[variable("html", slot)] = r.html_values[slot]
                values[variable("text", slot)] = r.values[slot]
            headers = template.headers(r)
            values["list_unsubscribe"] = headers["List-Unsubscribe"]
            values["message_id"] = headers["Message-ID"]
            variables[r.email] = values
        data: dict[str, Any] = {
            "from": display_mailbox(template.sender_name, template.sender_address),
            "to": [display_mailbox(r.name, r.email) for r in batch],
            "subject": template.subject,
            "text": text,
            "html": html,
            "recipient-variables": json.dumps(variables, ensure_ascii=False),
            "h:List-Id": template.list_id,
            "h:List-Unsubscribe": "%recipient.list_unsubscribe%",
            "h:List-Unsubscribe-Post": ONE_CLICK,
            "h:Message-Id": "%recipient.message_id%",
            "o:tracking": "no",
            "o:tracking-clicks": "no",
            "o:tracking-opens": "no",
        }
        if template.reply_to:
            data["h:Reply-To"] = template.reply_to
        return HttpRequest(
            "POST",
            f"{self.base_url}/v3/{self.domain}/messages",
            data=data,
            auth=("api", self._api_key),
        )

    def read_error(self, response: httpx.Response) -> DeliveryError | None:
        if response.status_code == 404 and "domain not found" in response.text.lower():
            return DeliveryError(
                f"mailgun: domain {self.domain!r} not found at {self.base_url}: check that it "
                "is set up in Mailgun and that delivery.region (us or eu) is the domain's region"
            )
        return None

    def parse_response(
        self, response: httpx.Response, template: MessageTemplate, batch: Sequence[Recipient]
    ) -> Iterable[SendResult]:
        if "Mailgun Magnificent API" in response.text:
            raise DeliveryError(
                f"mailgun: {response.url} is not the messages API (it answered 'Mailgun "
                "Magnificent API'): check delivery.domain and delivery.base_url"
            )
        try:
            body = response.json()
            message_id, message = body["id"], body["message"]
        except (ValueError, KeyError, TypeError):
            return self.unknown_outcome(batch, f"HTTP {response.status_code} without an id")
        if not (isinstance(message, str) and message.startswith("Queued")):
            said = str(message)[:MAX_ERROR_CHARS]
            return self.unknown_outcome(batch, f"HTTP {response.status_code}: {said!r}")
        return [SendResult(r.email, SendStatus.QUEUED, message_id=str(message_id)) for r in batch]
