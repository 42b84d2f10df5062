"""Resend batch API: ``POST /emails/batch``, up to 100 emails per request.

Auth: ``Authorization: Bearer <API key>``. The body is a JSON array of emails
(``from``, ``to``, ``subject``, ``html``, ``text``, ``reply_to``, ``headers``). We ask
for ``x-batch-validation: permissive``, so one invalid email does not sink the batch:
the answer is ``{"data": [{"id"}...], "errors": [{"index", "message"}]}`` with the
accepted emails' ids in order. Errors are ``{"statusCode", "name", "message"}``.

Following Resend's "Send Batch Emails", "Idempotency keys" and "Errors" pages:

* the ``Idempotency-Key`` is a hash of the request body (the batch's content, Message-IDs
  included): Resend answers a replay of the same batch within 24 hours from its record
  instead of sending again (the crash window, a garbled 200), while a same-day resend
  of changed content has a new key instead of a 409 ``invalid_idempotent_request``;
* 409 ``concurrent_idempotent_requests`` (the first request with this key is still
  being processed: "try the request again later") is transient; the retry gets the
  first request's answer;
* account-wide refusals stop the run with one line: 403 ``validation_error`` (the
  sending domain is not verified, or a test key sending to others), 422
  ``invalid_from_address``, 429 ``daily_quota_exceeded`` / ``monthly_quota_exceeded``;
  a 401/403 about the key is an AuthError quoting Resend;
* open and click tracking are settings of the Resend domain, with no per-email switch:
  keep them off for the sending domain (click tracking rewrites our signed links).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

import httpx

from newsletter.delivery.http import MAX_ERROR_CHARS, HttpBackend, HttpRequest
from newsletter.errors import AuthError, DeliveryError, TransientError
from newsletter.headers import display_mailbox
from newsletter.message import MessageTemplate, Recipient
from newsletter.models import SendResult, SendStatus

RESEND_URL = "https://api.resend.com"
RESEND_BATCH = 100
"""Emails per request (the documented maximum)."""


class ResendBackend(HttpBackend):
    name = "resend"
    batch_size = RESEND_BATCH
    default_base_url = RESEND_URL
    idempotent = True

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
        content = json.dumps(emails, ensure_ascii=False, sort_keys=True).encode("utf-8")
        key = hashlib.sha256(content).hexdigest()
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

    def read_error(self, response: httpx.Response) -> DeliveryError | None:
        name = _error_name(response)
        text = self.error_message(response)
        if response.status_code == 409 and name == "concurrent_idempotent_requests":
            return TransientError(f"resend: HTTP 409: {text}")
        if name in {"missing_api_key", "invalid_api_key", "restricted_api_key"}:
            return AuthError(f"resend refused the API key (HTTP {response.status_code}: {text})")
        if (response.status_code == 403 and name == "validation_error") or name in {
            "invalid_from_address",
            "daily_quota_exceeded",
            "monthly_quota_exceeded",
        }:
            return DeliveryError(f"resend: HTTP {response.status_code}: {name}: {text}")
        return None

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
        except (ValueError, AttributeError, KeyError, TypeError):  # retried: idempotent
            return self.unknown_outcome(batch, "HTTP 200 with an answer that is not a batch result")
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


def _error_name(response: httpx.Response) -> str | None:
    try:
        name = response.json().get("name")
    except (ValueError, AttributeError):
        return None
    return name if isinstance(name, str) else None
