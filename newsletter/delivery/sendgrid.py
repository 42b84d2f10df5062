"""SendGrid v3 Mail Send: ``POST /v3/mail/send`` with one personalization per subscriber.

Auth: ``Authorization: Bearer <API key>``. One request carries up to 1,000
personalizations; the content is sent once with substitution tags for the slots and
each personalization carries that subscriber's values and headers (List-Unsubscribe,
Message-ID). Success is ``202 Accepted`` with an ``X-Message-Id`` header: every
recipient is then ``queued``. Errors are ``{"errors": [{"message", "field", "help"}]}``.

Following SendGrid's "Mail Send" v3 reference (and django-anymail's SendGrid backend):

* ``tracking_settings`` switch click, open, subscription and Google Analytics tracking
  off for every message: subscription tracking would add SendGrid's own
  List-Unsubscribe and footer, click tracking would rewrite our signed links.
* 403 with ``field: from`` ("does not match a verified Sender Identity") stops the run
  with one line saying the sender is not verified; any other 403 ("access forbidden":
  the key lacks the Mail Send permission) and 401 stop it as an AuthError that quotes
  SendGrid.
* 429 carries ``X-RateLimit-Reset`` (a Unix time, per "Rate Limits" in the v3 docs):
  we wait until then, or for ``Retry-After`` if that is longer.
* 413 ("content size limit exceeded") splits the batch (the base flow), and a batch is
  kept under the documented 30 MB total message size before sending.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import httpx

from newsletter.delivery.http import (
    MAX_ERROR_CHARS,
    HttpBackend,
    HttpRequest,
    reset_seconds,
    retry_after_seconds,
)
from newsletter.errors import DeliveryError
from newsletter.message import ONE_CLICK, SLOTS, MessageTemplate, Recipient
from newsletter.models import SendResult, SendStatus

SENDGRID_URL = "https://api.sendgrid.com"
"""The API root (``delivery.base_url`` overrides it)."""

SENDGRID_BATCH = 1000
"""Personalizations per request (the documented maximum)."""

SENDGRID_MAX_BYTES = 30_000_000
"""The documented limit on the total size of one Mail Send request (30 MB)."""

TRACKING_OFF: dict[str, dict[str, bool]] = {
    "click_tracking": {"enable": False, "enable_text": False},
    "open_tracking": {"enable": False},
    "subscription_tracking": {"enable": False},
    "ganalytics": {"enable": False},
}
"""``tracking_settings``: SendGrid adds nothing to our messages and rewrites no link."""


def tag(kind: str, slot: str) -> str:
    """The substitution tag of a slot in the html or the text part."""
    return f"-nl{kind}-{slot}-"


def _address(name: str, email: str) -> dict[str, str]:
    return {"email": email, "name": name} if name else {"email": email}


class SendGridBackend(HttpBackend):
    name = "sendgrid"
    batch_size = SENDGRID_BATCH
    default_base_url = SENDGRID_URL
    max_request_bytes = SENDGRID_MAX_BYTES

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
            "tracking_settings": TRACKING_OFF,
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

    def read_error(self, response: httpx.Response) -> DeliveryError | None:
        if response.status_code == 403 and _sender_refused(response):
            return DeliveryError(
                f"sendgrid: the sender is not verified: {self.error_message(response)}"
            )
        return None

    def retry_after(self, response: httpx.Response) -> float | None:
        waits = [
            retry_after_seconds(response.headers.get("Retry-After")),
            reset_seconds(response.headers.get("X-RateLimit-Reset")),
        ]
        known = [w for w in waits if w is not None]
        return max(known) if known else None

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


def _sender_refused(response: httpx.Response) -> bool:
    """A 403 about the From address (an unverified Sender Identity), not the key."""
    try:
        errors = response.json().get("errors") or []
        return any(
            e.get("field") == "from" or "Sender Identity" in str(e.get("message")) for e in errors
        )
    except (ValueError, AttributeError, TypeError):
        return False
