"""Mailgun messages API: ``POST /v3/<domain>/messages``, form-encoded, batch sending.

Auth: HTTP basic with user ``api`` and the API key. One request names up to 1,000
recipients as repeated ``to`` fields; ``recipient-variables`` (JSON keyed by address)
makes Mailgun send each one their own copy and fills ``%recipient.<key>%`` in the
parts and in ``h:`` headers. Success is ``200 {"id": "<...>", "message": "Queued..."}``:
every recipient is ``queued`` with that id. Errors are ``{"message": "..."}`` (a plain
``Forbidden`` for a bad key). EU domains use ``delivery.region: eu``.

Not possible in a batch: a per-recipient Message-ID (Mailgun assigns its own).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import httpx

from newsletter.config import Settings
from newsletter.delivery.http import HttpBackend, HttpRequest
from newsletter.errors import ConfigError
from newsletter.message import (
    ONE_CLICK,
    SLOTS,
    MessageTemplate,
    Recipient,
    display_mailbox,
)
from newsletter.models import SendResult, SendStatus

MAILGUN_URL = "https://api.mailgun.net"
MAILGUN_EU_URL = "https://api.eu.mailgun.net"
MAILGUN_BATCH = 1000
"""Recipients per request (the documented batch-sending maximum)."""


def variable(kind: str, slot: str) -> str:
    """The recipient-variable name of a slot in one part (h: html, t: text)."""
    return f"{kind[0]}_{slot}"


class MailgunBackend(HttpBackend):
    name = "mailgun"
    batch_size = MAILGUN_BATCH
    default_base_url = MAILGUN_URL

    def __init__(self, *, domain: str | None, **kwargs: Any) -> None:
        if not domain:
            raise ConfigError("delivery.domain: the Mailgun sending domain is required")
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
            values["list_unsubscribe"] = template.headers(r)["List-Unsubscribe"]
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
        }
        if template.reply_to:
            data["h:Reply-To"] = template.reply_to
        return HttpRequest(
            "POST",
            f"{self.base_url}/v3/{self.domain}/messages",
            data=data,
            auth=("api", self._api_key),
        )

    def parse_response(
        self, response: httpx.Response, template: MessageTemplate, batch: Sequence[Recipient]
    ) -> Iterable[SendResult]:
        try:
            message_id = response.json().get("id")
        except (ValueError, AttributeError):
            message_id = None
        return [SendResult(r.email, SendStatus.QUEUED, message_id=message_id) for r in batch]
