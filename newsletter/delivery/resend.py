"""Resend batch API: ``POST /emails/batch``, up to 100 emails per request.

Auth: ``Authorization: Bearer <API key>``. The body is a JSON array of emails
(``from``, ``to``, ``subject``, ``html``, ``text``, ``reply_to``, ``headers``). We ask
for ``x-batch-validation: permissive``, so one invalid email does not sink the batch:
the answer is ``{"data": [{"id"}...], "errors": [{"index", "message"}]}`` with the
accepted emails' ids in order. An ``Idempotency-Key`` derived from the batch's
Message-IDs makes Resend drop a replay of the same batch (the crash window).
Errors are ``{"statusCode", "name", "message"}``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import httpx

from newsletter.delivery.http import MAX_ERROR_CHARS, HttpBackend, HttpRequest
from newsletter.errors import TransientError
from newsletter.message import MessageTemplate, Recipient, display_mailbox
from newsletter.models import SendResult, SendStatus

RESEND_URL = "https://api.resend.com"
RESEND_BATCH = 100
"""Emails per request (the documented maximum)."""


class ResendBackend(HttpBackend):
    name = "resend"
    batch_size = RESEND_BATCH
    default_base_url = RESEND_URL

    def build_request(self, template: MessageTemplate, batch: Sequence[Recipient]) -> HttpRequest:
        emails: list[dict[str, Any]] = []
        sender = display_mailbox(template.sender_name, template.sender_address)
        for r in batch:
            html, text = template.parts(r)
            email: dict[str, Any] = {
                "from": sender,
                "to": [display_mailbox(r.name, r.email)],
                "subject": template.subject,
                "html": html,
                "text": text,
                "headers": template.headers(r),
            }
            if template.reply_to:
                email["reply_to"] = [template.reply_to]
            emails.append(email)
        key = hashlib.sha256("\n".join(r.message_id for r in batch).encode()).hexdigest()
        return HttpRequest(
            "POST",
            f"{self.base_url}/emails/batch",
            headers={
                "Authorization": f"Bearer {self._api_key}",
                "x-batch-validation": "permissive",
                "Idempotency-Key": f"nl-{key[:48]}",
            },
            json=emails,
        )

    def parse_response(
        self, response: httpx.Response, template: MessageTemplate, batch: Sequence[Recipient]
    ) -> Iterable[SendResult]:
        try:
            body = response.json()
            data = list(body.get("data") or [])
            errors = {
                int(e["index"]): str(e.get("message", ""))[:MAX_ERROR_CHARS]
                for e in body.get("errors") or []
            }
        except (ValueError, AttributeError, KeyError, TypeError):
            raise TransientError(
                "resend: HTTP 200 with an answer that is not a batch result"
            ) from None
        ids = iter(data)
        results: list[SendResult] = []
        for index, r in enumerate(batch):
            if index in errors:
                results.append(SendResult(r.email, SendStatus.INVALID, error=errors[index]))
                continue
            item = next(ids, None)
            message_id = item.get("id") if isinstance(item, dict) else None
            results.append(SendResult(r.email, SendStatus.QUEUED, message_id=message_id))
        return results
