"""Postmark batch API: ``POST /email/batch``, up to 500 messages per request.

Auth: ``X-Postmark-Server-Token``. The body is a JSON array of full messages
(``From``, ``To``, ``Subject``, ``HtmlBody``, ``TextBody``, ``Headers``,
``MessageStream``). The answer is HTTP 200 even when some messages failed: an array
in request order of ``{"ErrorCode", "Message", "MessageID", "To"}``, ``ErrorCode``
0 meaning accepted. A whole-request error is ``{"ErrorCode", "Message"}`` (401 for a
bad token, 422 for an invalid request).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import httpx

from newsletter.delivery.http import MAX_ERROR_CHARS, HttpBackend, HttpRequest
from newsletter.errors import AuthError, TransientError
from newsletter.message import MessageTemplate, Recipient, display_mailbox
from newsletter.models import SendResult, SendStatus

POSTMARK_URL = "https://api.postmarkapp.com"
POSTMARK_BATCH = 500
"""Messages per request (the documented maximum)."""

POSTMARK_STREAM = "broadcast"
"""The message stream: Postmark's default broadcast stream (newsletters are broadcasts)."""

_INVALID_CODES = frozenset({300, 302})
"""Invalid request / email: the message itself is wrong."""
_REJECTED_CODES = frozenset({406})
"""Inactive recipient (bounced, unsubscribed or complained)."""
_TRANSIENT_CODES = frozenset({100, 429})
"""Maintenance, rate limit."""
_AUTH_CODES = frozenset({10})
"""Bad or missing server token."""


class PostmarkBackend(HttpBackend):
    name = "postmark"
    batch_size = POSTMARK_BATCH
    default_base_url = POSTMARK_URL

    def __init__(self, *, message_stream: str = POSTMARK_STREAM, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.message_stream = message_stream

    def build_request(self, template: MessageTemplate, batch: Sequence[Recipient]) -> HttpRequest:
        messages: list[dict[str, Any]] = []
        sender = display_mailbox(template.sender_name, template.sender_address)
        for r in batch:
            html, text = template.parts(r)
            message: dict[str, Any] = {
                "From": sender,
                "To": display_mailbox(r.name, r.email),
                "Subject": template.subject,
                "HtmlBody": html,
                "TextBody": text,
                "Headers": [{"Name": k, "Value": v} for k, v in template.headers(r).items()],
                "MessageStream": self.message_stream,
            }
            if template.reply_to:
                message["ReplyTo"] = template.reply_to
            messages.append(message)
        return HttpRequest(
            "POST",
            f"{self.base_url}/email/batch",
            headers={"Accept": "application/json", "X-Postmark-Server-Token": self._api_key},
            json=messages,
        )

    def parse_response(
        self, response: httpx.Response, template: MessageTemplate, batch: Sequence[Recipient]
    ) -> Iterable[SendResult]:
        try:
            items = response.json()
        except ValueError:
            raise TransientError("postmark: HTTP 200 with a body that is not JSON") from None
        if (
            not isinstance(items, list)
            or len(items) != len(batch)
            or not all(
                isinstance(item, dict)
                and isinstance(item.get("ErrorCode", -1), int)
                and not isinstance(item.get("ErrorCode"), bool)
                for item in items
            )
        ):
            raise TransientError("postmark: batch answer does not match the request")
        results: list[SendResult] = []
        for r, item in zip(batch, items, strict=True):
            code = int(item.get("ErrorCode", -1))
            text = str(item.get("Message", ""))[:MAX_ERROR_CHARS]
            if code == 0:
                results.append(
                    SendResult(r.email, SendStatus.QUEUED, message_id=item.get("MessageID"))
                )
            elif code in _AUTH_CODES:
                raise AuthError(f"postmark refused the server token: {text}")
            elif code in _TRANSIENT_CODES:
                results.append(
                    SendResult(r.email, SendStatus.FAILED, error=f"{code}: {text}", transient=True)
                )
            elif code in _REJECTED_CODES:
                results.append(SendResult(r.email, SendStatus.REJECTED, error=f"{code}: {text}"))
            elif code in _INVALID_CODES:
                results.append(SendResult(r.email, SendStatus.INVALID, error=f"{code}: {text}"))
            else:
                results.append(SendResult(r.email, SendStatus.FAILED, error=f"{code}: {text}"))
        return results

    def error_message(self, response: httpx.Response) -> str:
        try:
            body = response.json()
            return f"{body['ErrorCode']}: {body['Message']}"[:MAX_ERROR_CHARS]
        except (ValueError, KeyError, TypeError):
            return super().error_message(response)
