"""Postmark batch API: ``POST /email/batch``, up to 500 messages and 50 MB per request.

Auth: ``X-Postmark-Server-Token``. The body is a JSON array of full messages
(``From``, ``To``, ``Subject``, ``HtmlBody``, ``TextBody``, ``Headers``,
``MessageStream``, ``TrackOpens``, ``TrackLinks``). The answer is HTTP 200 even when
some messages failed: an array in request order of ``{"ErrorCode", "Message",
"MessageID", "To"}``, ``ErrorCode`` 0 meaning accepted. A whole-request error is
``{"ErrorCode", "Message"}`` (401 for a bad token, 422 for an invalid request).

Following Postmark's "Email API" / "API error codes" pages and django-anymail's
Postmark backend:

* an item with a ``MessageID`` and ``ErrorCode`` 0 *or absent* is accepted:
  "Message accepted, but delivery may be delayed." comes without an ErrorCode during
  Postmark service delays (anymail issue #392); it is ``queued``;
* account-wide codes (400/401 sender signature not found / not confirmed, 300 naming
  the From address as not a verified sender signature, 405 not allowed to send, 412
  account pending, 413 account may not send, 1235 message stream not found, 1236
  stream cannot send), in an item or a whole-request 422, stop the run with one line
  instead of failing every reader; 406 (inactive recipient) stays per reader
  (``rejected``);
* batches are sized by bytes as well as count: a request over 50 MB is split before it
  is sent, and a 413 or ErrorCode 410 (too many batch messages) splits it too (the
  base flow);
* an answer we cannot read (not JSON, not one item per message) is an unknown
  outcome: Postmark has no idempotency key, so the batch is not resent blindly (see
  :meth:`HttpBackend.unknown_outcome`);
* ``TrackOpens: false`` and ``TrackLinks: "None"`` on every message: no pixel, and our
  signed links are not rewritten;
* unsubscribes (``delivery.postmark_unsubscribe``): on a broadcast stream Postmark
  replaces our List-Unsubscribe with its own unless the stream's unsubscribe handling
  is "Custom". With ``ours`` (the default) the first batch of a run reads the stream
  (``GET /message-streams/{id}``) and stops the run with one line if Postmark would
  manage unsubscribes (or the stream does not exist); with ``postmark`` we accept
  Postmark's link and suppressions (unsubscribed readers then come back as 406).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from newsletter.config import Settings
from newsletter.delivery.base import BatchTooLarge
from newsletter.delivery.http import MAX_ERROR_CHARS, HttpBackend, HttpRequest
from newsletter.errors import AuthError, ConfigError, DeliveryError, TransientError
from newsletter.headers import display_mailbox
from newsletter.message import MessageTemplate, Recipient
from newsletter.models import SendResult, SendStatus

POSTMARK_URL = "https://api.postmarkapp.com"
POSTMARK_BATCH = 500
"""Messages per request (the documented maximum)."""

POSTMARK_MAX_BYTES = 50_000_000
"""The documented limit of one batch request (50 MB)."""

POSTMARK_STREAM = "broadcast"
"""The default of ``delivery.message_stream`` (the id of the server's broadcast stream)."""

UNSUBSCRIBE_CHOICES = ("ours", "postmark")

_INVALID_CODES = frozenset({300, 302})
"""Invalid request / email: the message itself is wrong."""
_REJECTED_CODES = frozenset({406})
"""Inactive recipient (bounced, unsubscribed or complained)."""
_TRANSIENT_CODES = frozenset({100, 429})
"""Maintenance, rate limit."""
_AUTH_CODES = frozenset({10})
"""Bad or missing server token."""
_ACCOUNT_CODES = frozenset({400, 401, 405, 412, 413, 1235, 1236})
"""Sender signature not found / not confirmed, not allowed to send, account pending,
account may not send, message stream not found, stream cannot send: nothing in the
run can be sent."""
_TOO_MANY_CODE = 410
"""Too many batch messages."""


class PostmarkBackend(HttpBackend):
    name = "postmark"
    batch_size = POSTMARK_BATCH
    default_base_url = POSTMARK_URL
    max_request_bytes = POSTMARK_MAX_BYTES

    def __init__(
        self,
        *,
        message_stream: str = POSTMARK_STREAM,
        unsubscribe: str = "ours",
        **kwargs: Any,
    ) -> None:
        if unsubscribe not in UNSUBSCRIBE_CHOICES:
            raise ConfigError(
                f"delivery.postmark_unsubscribe: {unsubscribe!r} is not one of ours | postmark"
            )
        super().__init__(**kwargs)
        self.message_stream = message_stream
        self.unsubscribe = unsubscribe
        self._stream_checked = unsubscribe != "ours"

    @classmethod
    def settings_kwargs(cls, settings: Settings) -> dict[str, Any]:
        d = settings.delivery
        return {
            **super().settings_kwargs(settings),
            "message_stream": d.message_stream,
            "unsubscribe": d.postmark_unsubscribe,
        }

    def _headers(self) -> dict[str, str]:
        return {"Accept": "application/json", "X-Postmark-Server-Token": self._api_key}

    def check_stream(self) -> None:
        """Stop unless the stream exists and leaves unsubscribes to us (see module doc)."""
        try:
            response = self.client.get(
                f"{self.base_url}/message-streams/{self.message_stream}", headers=self._headers()
            )
        except httpx.TransportError as exc:
            raise TransientError(f"postmark: connection failed ({type(exc).__name__})") from None
        if response.status_code in (401, 403):
            raise AuthError(
                f"postmark refused the server token (HTTP {response.status_code}: "
                f"{self.error_message(response)}); check NEWSLETTER_DELIVERY__API_KEY"
            )
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientError(f"postmark: HTTP {response.status_code} reading the stream")
        try:
            if response.status_code != 200:
                raise ValueError(response.status_code)
            config = response.json()["SubscriptionManagementConfiguration"]
            handling = config["UnsubscribeHandlingType"]
        except (ValueError, KeyError, TypeError):
            raise DeliveryError(
                f"postmark: message stream {self.message_stream!r} not found on this server "
                f"({self.error_message(response)}); check delivery.message_stream"
            ) from None
        if handling == "Postmark":
            raise DeliveryError(
                f"postmark: stream {self.message_stream!r} lets Postmark manage unsubscribes, "
                "which replaces our List-Unsubscribe link: set the stream's unsubscribe "
                "handling to 'Custom' in Postmark, or set delivery.postmark_unsubscribe: postmark"
            )
        self._stream_checked = True

    def build_request(self, template: MessageTemplate, batch: Sequence[Recipient]) -> HttpRequest:
        if not self._stream_checked:
            self.check_stream()
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
                "TrackOpens": False,
                "TrackLinks": "None",
            }
            if template.reply_to:
                message["ReplyTo"] = template.reply_to
            messages.append(message)
        return HttpRequest(
            "POST", f"{self.base_url}/email/batch", headers=self._headers(), json=messages
        )

    def read_error(self, response: httpx.Response) -> DeliveryError | None:
        code = _error_code(response)
        if code in _ACCOUNT_CODES or _sender_refused(code, self.error_message(response)):
            return DeliveryError(f"postmark: {self.error_message(response)}")
        if code == _TOO_MANY_CODE:
            return BatchTooLarge(f"postmark: {self.error_message(response)}", sent=True)
        return None

    def parse_response(
        self, response: httpx.Response, template: MessageTemplate, batch: Sequence[Recipient]
    ) -> Iterator[SendResult]:
        try:
            items = response.json()
        except ValueError:
            yield from self.unknown_outcome(batch, "HTTP 200 with a body that is not JSON")
            return
        if (
            not isinstance(items, list)
            or len(items) != len(batch)
            or not all(
                isinstance(item, dict)
                and isinstance(item.get("ErrorCode", 0), int)
                and not isinstance(item.get("ErrorCode"), bool)
                for item in items
            )
        ):
            yield from self.unknown_outcome(batch, "the batch answer does not match the request")
            return
        # the results first, then the stop: accepted readers are recorded as sent, the
        # ones an account-wide code refused stay pending for the next run
        results: list[SendResult] = []
        stop: DeliveryError | None = None
        for r, item in zip(batch, items, strict=True):
            # ErrorCode is absent on "Message accepted, but delivery may be delayed."
            code = int(item.get("ErrorCode", 0))
            text = str(item.get("Message", ""))[:MAX_ERROR_CHARS]
            if code == 0 and item.get("MessageID"):
                results.append(
                    SendResult(r.email, SendStatus.QUEUED, message_id=str(item["MessageID"]))
                )
            elif code == 0:
                results.extend(self.unknown_outcome([r], f"accepted without a MessageID: {text}"))
            elif code in _AUTH_CODES:
                stop = stop or AuthError(f"postmark refused the server token: {text}")
            elif code in _ACCOUNT_CODES or _sender_refused(code, text):
                stop = stop or DeliveryError(f"postmark: {code}: {text}")
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
        yield from results
        if stop is not None:
            raise stop

    def error_message(self, response: httpx.Response) -> str:
        try:
            body = response.json()
            return f"{body['ErrorCode']}: {body['Message']}"[:MAX_ERROR_CHARS]
        except (ValueError, KeyError, TypeError):
            return super().error_message(response)


def _error_code(response: httpx.Response) -> int | None:
    try:
        code = response.json().get("ErrorCode")
    except (ValueError, AttributeError):
        return None
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def _sender_refused(code: int | None, text: str) -> bool:
    """ErrorCode 300 about our From address ("Invalid 'From' address: ... is not a verified
    sender signature", Postmark's "Troubleshooting 422" article): no message can go."""
    lowered = text.lower()
    return code == 300 and ("'from'" in lowered or "sender signature" in lowered)
