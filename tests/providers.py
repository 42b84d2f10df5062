"""Local stand-ins for the mail providers, speaking each one's documented protocol.

Each fake is an ``httpx.MockTransport`` handler that checks a request the way the
provider documents it (auth, limits, body shape) and answers in the provider's own
reply and error shapes, with its rate-limit headers. They keep what they delivered
(``delivered``: address -> copies), so a test can check that nobody got two copies and
nobody was recorded as sent without a copy. Every shape here is written from the
providers' public API references (named on each class), not copied from a library.

``serve(fake)`` puts a fake behind a real HTTP server on loopback, in a thread, for the
tests that go through the CLI (which builds its own ``httpx.Client``).

``faults`` is a queue of one-off answers tried before the normal handling: each entry
is a function of the request returning a reply, or None to handle that request
normally (a fault can also deliver and then answer badly, like a garbled 200).
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs

import httpx
import jsonschema

Fault = Callable[[httpx.Request], httpx.Response] | None

KEY = "key-SECRET-1234567890"


class FakeProvider:
    """The shared part: the request log, the fault queue, the delivered count."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.faults: list[Fault] = []
        self.delivered: Counter[str] = Counter()
        self.sent_ids: dict[str, str] = {}
        self.max_bytes: int | None = None
        """The request body limit, answered with HTTP 413 (each provider documents one)."""

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.faults:
            fault = self.faults.pop(0)
            if fault is not None:
                return fault(request)
        if self.max_bytes is not None and len(request.content) > self.max_bytes:
            return httpx.Response(413, text="<html><title>413 Request Entity Too Large</title>")
        return self.handle(request)

    def handle(self, request: httpx.Request) -> httpx.Response:
        raise NotImplementedError

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self))

    def deliver(self, address: str, message_id: str) -> None:
        self.delivered[address.lower()] += 1
        self.sent_ids[address.lower()] = message_id


# --------------------------------------------------------------------------- SendGrid

SENDGRID_MAIL_SEND_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "SendGrid v3 POST /v3/mail/send request (the fields we use)",
    "type": "object",
    "required": ["personalizations", "from", "subject", "content"],
    "additionalProperties": False,
    "$defs": {
        "address": {
            "type": "object",
            "required": ["email"],
            "additionalProperties": False,
            "properties": {
                "email": {"type": "string", "pattern": "^[^@\\s]+@[^@\\s]+$"},
                "name": {"type": "string"},
            },
        },
        "headers": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "propertyNames": {
                "not": {
                    "enum": [
                        "x-sg-id",
                        "x-sg-eid",
                        "received",
                        "dkim-signature",
                        "Content-Type",
                        "Content-Transfer-Encoding",
                        "To",
                        "From",
                        "Subject",
                        "Reply-To",
                        "CC",
                        "BCC",
                    ]
                }
            },
        },
        "enable": {
            "type": "object",
            "required": ["enable"],
            "properties": {"enable": {"type": "boolean"}},
        },
    },
    "properties": {
        "personalizations": {
            "type": "array",
            "minItems": 1,
            "maxItems": 1000,
            "items": {
                "type": "object",
                "required": ["to"],
                "additionalProperties": False,
                "properties": {
                    "to": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 1000,
                        "items": {"$ref": "#/$defs/address"},
                    },
                    "subject": {"type": "string"},
                    "headers": {"$ref": "#/$defs/headers"},
                    "substitutions": {
                        "type": "object",
                        "additionalProperties": {"type": "string"},
                    },
                    "custom_args": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            },
        },
        "from": {"$ref": "#/$defs/address"},
        "reply_to": {"$ref": "#/$defs/address"},
        "subject": {"type": "string", "minLength": 1},
        "content": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["type", "value"],
                "additionalProperties": False,
                "properties": {
                    "type": {"type": "string", "minLength": 1},
                    "value": {"type": "string", "minLength": 1},
                },
            },
            # text/plain must come first, then text/html
            "prefixItems": [{"properties": {"type": {"const": "text/plain"}}}],
        },
        "headers": {"$ref": "#/$defs/headers"},
        "tracking_settings": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "click_tracking": {
                    "type": "object",
                    "required": ["enable"],
                    "additionalProperties": False,
                    "properties": {
                        "enable": {"type": "boolean"},
                        "enable_text": {"type": "boolean"},
                    },
                },
                "open_tracking": {"$ref": "#/$defs/enable"},
                "subscription_tracking": {"$ref": "#/$defs/enable"},
                "ganalytics": {"$ref": "#/$defs/enable"},
            },
        },
    },
}
"""The v3 Mail Send body as SendGrid's API reference describes it, for the fields we
send: limits (1,000 personalizations), reserved header names, tracking settings."""


class FakeSendGrid(FakeProvider):
    """``POST /v3/mail/send`` (SendGrid v3 API reference: Mail Send, Errors, Rate Limits)."""

    def __init__(
        self,
        *,
        verified: tuple[str, ...] = ("digest@papers.example",),
        max_bytes: int = 30_000_000,
        rate_limit: int = 0,
        reset_at: float = 0.0,
    ) -> None:
        super().__init__()
        self.verified = verified
        self.max_bytes = max_bytes
        self.rate_limit = rate_limit
        """Requests accepted before a 429 (0: no limit); after one 429 the count restarts."""
        self.reset_at = reset_at
        self._count = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return _sg_error(
                401, "The provided authorization grant is invalid, expired, or revoked"
            )
        if request.url.path != "/v3/mail/send" or request.method != "POST":
            return _sg_error(404, "not found")
        self._count += 1
        if self.rate_limit and self._count > self.rate_limit:
            self._count = 0
            return httpx.Response(
                429,
                headers={
                    "X-RateLimit-Limit": str(self.rate_limit),
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": str(int(self.reset_at)),
                },
                json={"errors": [{"field": None, "message": "too many requests"}]},
            )
        body = json.loads(request.content)
        problems = sorted(
            jsonschema.Draft202012Validator(SENDGRID_MAIL_SEND_SCHEMA).iter_errors(body),
            key=lambda e: list(e.path),
        )
        if problems:
            first = problems[0]
            field = ".".join(str(p) for p in first.absolute_path) or None
            return _sg_error(400, first.message, field=field)
        if body["from"]["email"] not in self.verified:
            return _sg_error(
                403,
                "The from address does not match a verified Sender Identity. Mail cannot be "
                "sent until this error is resolved.",
                field="from",
            )
        x_message_id = "sg" + hashlib.sha256(request.content).hexdigest()[:20]
        for personalization in body["personalizations"]:
            for to in personalization["to"]:
                self.deliver(to["email"], x_message_id)
        return httpx.Response(202, headers={"X-Message-Id": x_message_id})


def _sg_error(status: int, message: str, *, field: str | None = None) -> httpx.Response:
    return httpx.Response(
        status, json={"errors": [{"message": message, "field": field, "help": None}]}
    )


# --------------------------------------------------------------------------- Mailgun


class FakeMailgun(FakeProvider):
    """``POST /v3/<domain>/messages`` (Mailgun API reference: Messages, batch sending)."""

    def __init__(self, *, domains: tuple[str, ...] = ("mg.papers.example",)) -> None:
        super().__init__()
        self.domains = domains

    def handle(self, request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("Authorization", "")
        if auth != "Basic " + base64.b64encode(f"api:{KEY}".encode()).decode():
            return httpx.Response(401, text="Forbidden")
        parts = request.url.path.split("/")
        if len(parts) != 4 or parts[1] != "v3" or parts[3] != "messages":
            # what Mailgun answers for a path that is not an API endpoint
            return httpx.Response(200, text="Mailgun Magnificent API")
        if parts[2] not in self.domains:
            return httpx.Response(404, json={"message": f"Domain not found: {parts[2]}"})
        form = parse_qs(request.content.decode(), keep_blank_values=True)
        to = form.get("to", [])
        if len(to) > 1000:
            return httpx.Response(400, json={"message": "Too many recipients"})
        variables = json.loads(form.get("recipient-variables", ["{}"])[0])
        mailgun_id = f"<{hashlib.sha256(request.content).hexdigest()[:16]}@{parts[2]}>"
        for mailbox in to:
            address = mailbox.rsplit("<", 1)[-1].rstrip(">")
            if address not in variables:
                return httpx.Response(400, json={"message": f"no recipient variables: {address}"})
            self.deliver(address, mailgun_id)
        return httpx.Response(200, json={"id": mailgun_id, "message": "Queued. Thank you."})


# --------------------------------------------------------------------------- Postmark


class FakePostmark(FakeProvider):
    """``POST /email/batch`` and ``GET /message-streams/{id}`` (Postmark: Email API,
    Message Streams API, API error codes)."""

    def __init__(
        self,
        *,
        streams: dict[str, str] | None = None,
        inactive: tuple[str, ...] = (),
        max_bytes: int = 50_000_000,
        delayed: bool = False,
    ) -> None:
        super().__init__()
        self.streams = {"broadcast": "Custom"} if streams is None else streams
        """Stream id -> UnsubscribeHandlingType."""
        self.inactive = inactive
        self.max_bytes = max_bytes
        self.delayed = delayed
        """Answer "Message accepted, but delivery may be delayed." (no ErrorCode)."""

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("X-Postmark-Server-Token") != KEY:
            return _pm_error(401, 10, "The Server Token you provided in the request was invalid.")
        path = request.url.path
        if request.method == "GET" and path.startswith("/message-streams/"):
            stream = path.rsplit("/", 1)[-1]
            if stream not in self.streams:
                return _pm_error(
                    422, 1226, "The message stream for the provided 'ID' was not found."
                )
            return httpx.Response(
                200,
                json={
                    "ID": stream,
                    "ServerID": 1,
                    "Name": stream,
                    "MessageStreamType": "Broadcasts",
                    "SubscriptionManagementConfiguration": {
                        "UnsubscribeHandlingType": self.streams[stream]
                    },
                },
            )
        if path != "/email/batch" or request.method != "POST":
            return _pm_error(404, 0, "not found")
        messages = json.loads(request.content)
        if len(messages) > 500:
            return _pm_error(422, 410, "Too many batch messages.")
        out: list[dict[str, Any]] = []
        for m in messages:
            address = m["To"].rsplit("<", 1)[-1].rstrip(">")
            if m.get("MessageStream") not in self.streams:
                out.append(
                    {
                        "ErrorCode": 1235,
                        "Message": "The 'MessageStream' provided does not exist on this server.",
                    }
                )
            elif address in self.inactive:
                out.append(
                    {
                        "ErrorCode": 406,
                        "Message": "You tried to send to recipient(s) that have been marked "
                        "as inactive.",
                    }
                )
            else:
                message_id = hashlib.sha256(json.dumps(m).encode()).hexdigest()[:32]
                self.deliver(address, message_id)
                item = {"To": m["To"], "MessageID": message_id}
                if self.delayed:
                    item["Message"] = "Message accepted, but delivery may be delayed."
                else:
                    item |= {"SubmittedAt": "2026-11-25T08:00:00Z", "ErrorCode": 0, "Message": "OK"}
                out.append(item)
        return httpx.Response(200, json=out)


def _pm_error(status: int, code: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"ErrorCode": code, "Message": message})


# --------------------------------------------------------------------------- Resend


class FakeResend(FakeProvider):
    """``POST /emails/batch`` (Resend API reference: Send Batch Emails, Idempotency
    keys, Errors): a key seen with the same body answers from the record without
    sending; with another body it is a 409 ``invalid_idempotent_request``."""

    def __init__(self, *, verified_domains: tuple[str, ...] = ("papers.example",)) -> None:
        super().__init__()
        self.verified_domains = verified_domains
        self.keys: dict[str, tuple[bytes, httpx.Response]] = {}
        self.in_flight: set[str] = set()

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return _re_error(403, "invalid_api_key", "API key is invalid")
        key = request.headers.get("Idempotency-Key")
        if key is not None:
            if len(key) > 256:
                return _re_error(400, "validation_error", "Idempotency key is too long")
            if key in self.in_flight:
                return _re_error(
                    409,
                    "concurrent_idempotent_requests",
                    "Same idempotency key used while original request is still in progress. "
                    "Try the request again later.",
                )
            if key in self.keys:
                content, answer = self.keys[key]
                if content != request.content:
                    return _re_error(
                        409,
                        "invalid_idempotent_request",
                        "Same idempotency key used with a different request payload. Change "
                        "your idempotency key or payload.",
                    )
                return httpx.Response(answer.status_code, content=answer.content)
        emails = json.loads(request.content)
        if len(emails) > 100:
            return _re_error(422, "validation_error", "Too many emails in batch, maximum is 100")
        data: list[dict[str, str]] = []
        errors: list[dict[str, Any]] = []
        for index, e in enumerate(emails):
            domain = e["from"].rsplit("@", 1)[-1].rstrip(">")
            if domain not in self.verified_domains:
                return _re_error(
                    403,
                    "validation_error",
                    f"The {domain} domain is not verified. Please, add and verify your domain "
                    "on https://resend.com/domains",
                )
            address = e["to"][0].rsplit("<", 1)[-1].rstrip(">")
            if address.endswith(".invalid"):
                errors.append({"index": index, "message": "Invalid `to` field."})
                continue
            email_id = hashlib.sha256(json.dumps(e).encode()).hexdigest()[:36]
            self.deliver(address, email_id)
            data.append({"id": email_id})
        answer = httpx.Response(200, json={"data": data, "errors": errors})
        if key is not None:
            self.keys[key] = (request.content, answer)
        return answer


def _re_error(status: int, name: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"statusCode": status, "name": name, "message": message})


def garbled_after_sending(provider: FakeProvider) -> Fault:
    """A fault: the provider handles (and delivers) the request, then the answer is cut."""

    def fault(request: httpx.Request) -> httpx.Response:
        provider.handle(request)
        return httpx.Response(200, text='[{"ErrorCode": 0, "Mess')

    return fault


@contextmanager
def serve(provider: FakeProvider) -> Iterator[str]:
    """The provider on a real socket: its base URL for the block."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request = httpx.Request(
                self.command,
                f"http://{self.headers['Host']}{self.path}",
                headers=list(self.headers.items()),
                content=self.rfile.read(length),
            )
            response = provider(request)
            body = response.content
            self.send_response(response.status_code)
            for name, value in response.headers.items():
                if name.lower() not in {"content-length", "transfer-encoding"}:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
