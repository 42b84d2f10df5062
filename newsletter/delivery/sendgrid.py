"""SendGrid v3 Mail Send: ``POST /v3/mail/send`` with one personalization per subscriber.

Auth: ``Authorization: Bearer <API key>``. One request carries up to 1,000
personalizations; the content is sent once with substitution tags for the slots and
each personalization carries that subscriber's values and headers (List-Unsubscribe,
Message-ID). Success is ``202 Accepted`` with an ``X-Message-Id`` header: every
recipient is then ``queued``. Errors are ``{"errors": [{"message", "field", "help"}]}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import httpx

from newsletter.delivery.http import MAX_ERROR_CHARS, HttpBackend, HttpRequest
from newsletter.message import ONE_CLICK, SLOTS, MessageTemplate, Recipient
from newsletter.models import SendResult, SendStatus

SENDGRID_URL = "https://api.sendgrid.com"
"""The API root (``delivery.base_url`` overrides it)."""

SENDGRID_BATCH = 1000
"""Personalizations per request (the documented maximum)."""


def tag(kind: str, slot: str) -> str:
    """The substitution tag of a slot in the html or the text part."""
    return f"-nl{kind}-{slot}-"


def _address(name: str, email: str) -> dict[str, str]:
    return {"email": email, "name": name} if name else {"email": email}


class SendGridBackend(HttpBackend):
    name = "sendgrid"
    batch_size = SENDGRID_BATCH
    default_base_url = SENDGRID_URL

    def build_request(self, template: MessageTemplate, batch: Sequence[Recipient]) -> HttpRequest:
        html, text = template.parts_with_tags(tag)
        personalizations: list[dict[str, Any]] = []
        for r in batch:
            substitutions = {}
            for slot in SLOTS:
                substitutions[tag("html", slot)] = r.html_values[slot]
                substitutions[tag("text", slot)] = r.values[slot]
            headers = template.headers(r)
            personalizations.append(
                {
                    "to": [_address(r.name, r.email)],
                    "substitutions": substitutions,
                    "headers": {
                        "Message-ID": headers["Message-ID"],
                        "List-Unsubscribe": headers["List-Unsubscribe"],
                    },
                }
            )
        body: dict[str, Any] = {
            "personalizations": personalizations,
            "from": _address(template.sender_name, template.sender_address),
            "subject": template.subject,
            "content": [
                {"type": "text/plain", "value": text},
                {"type": "text/html", "value": html},
            ],
            "headers": {
                "List-Id": template.list_id,
                "List-Unsubscribe-Post": ONE_CLICK,
            },
        }
        if template.reply_to:
            body["reply_to"] = {"email": _reply_address(template.reply_to)}
        return HttpRequest(
            "POST",
            f"{self.base_url}/v3/mail/send",
            headers={"Authorization": f"Bearer {self._api_key}"},
            json=body,
        )

    def parse_response(
        self, response: httpx.Response, template: MessageTemplate, batch: Sequence[Recipient]
    ) -> Iterable[SendResult]:
        message_id = response.headers.get("X-Message-Id")
        return [SendResult(r.email, SendStatus.QUEUED, message_id=message_id) for r in batch]

    def error_message(self, response: httpx.Response) -> str:
        try:
            errors = response.json().get("errors")
            text = "; ".join(
                f"{e.get('field')}: {e.get('message')}" if e.get("field") else str(e.get("message"))
                for e in errors
            )
            return text[:MAX_ERROR_CHARS]
        except (ValueError, AttributeError, TypeError):
            return super().error_message(response)


def _reply_address(header: str) -> str:
    return header.rsplit("<", 1)[-1].rstrip(">") if "<" in header else header
