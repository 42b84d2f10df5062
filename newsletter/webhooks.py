"""Provider webhooks: bounces and complaints reported over HTTP (framework-free).

:func:`handle` takes ``(provider, headers, body)`` and answers ``(status, body)``; the web
app mounts it at ``POST /webhooks/<provider>``. Each provider's call is verified first;
an unsigned or badly signed call is refused (401) and logged, and nothing is read from it.

Each provider, how a call is verified, and what makes a replay change nothing:

* ``ses``: the SNS message signature (RSA; SignatureVersion 1 = SHA1, 2 = SHA256) with the
  X.509 certificate from ``SigningCertURL``, which must be
  ``https://sns.<region>.amazonaws.com/….pem``; a SubscriptionConfirmation is confirmed by
  fetching its (equally checked) ``SubscribeURL``. Replays: the stored event ids.
* ``sendgrid``: ECDSA P-256 / SHA-256 over timestamp + body (``X-Twilio-Email-Event-Webhook-
  Signature`` / ``-Timestamp``). Replays: timestamp age, stored ``sg_event_id``.
* ``mailgun``: HMAC-SHA256 of timestamp + token with the signing key. Replays: timestamp age,
  stored event id.
* ``postmark``: HTTP basic auth (the credentials put in the webhook URL). Replays: the
  stored record ID.
* ``resend``: Svix, HMAC-SHA256 over ``id.timestamp.body`` with the ``whsec_`` secret, any
  ``v1,`` signature of ``svix-signature``. Replays: timestamp age, stored ``svix-id``.

Keys come from the environment only (``NEWSLETTER_WEBHOOKS__…``, see the config). Every
event becomes a :class:`~newsletter.bounces.parse.Report` handed to the ``sink`` (the
bounce intake), whose stored event ids make a replayed call change nothing.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from newsletter.bounces.parse import COMPLAINT, HARD, SOFT, Report, classify, status_in
from newsletter.config import Settings, WebhookSettings
from newsletter.state import State

log = logging.getLogger(__name__)

PROVIDERS = ("ses", "sendgrid", "mailgun", "postmark", "resend")

MAX_WEBHOOK_BYTES = 1024 * 1024
"""Larger bodies are refused (413) before any parsing (SendGrid batches stay well below)."""

SNS_URL = re.compile(r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/")
"""Where SNS certificates and subscription confirmations may be fetched from."""

CERT_CACHE_SIZE = 16
"""SNS signing certificates kept in memory (one per region and key rotation)."""

FETCH_TIMEOUT = 10.0
"""Seconds for fetching an SNS certificate or confirming a subscription."""

MAX_CERT_BYTES = 64 * 1024

Response = tuple[int, bytes]


class Sink(Protocol):
    """Where verified events go (the bounce intake)."""

    def take(self, report: Report, *, source: str) -> bool:
        """Store and act on one event; False when it was seen before (a replay)."""
        ...


class Refused(Exception):
    """A call that fails verification (its message is logged, never the secrets)."""


@dataclass
class Verifiers:
    """What verification needs besides the keys: the SNS fetch policy and a clock."""

    sns_url: re.Pattern[str] = SNS_URL
    """Allowed SNS certificate / SubscribeURL pattern (tests widen it to a local server)."""
    client: httpx.Client | None = None
    now: Callable[[], float] = time.time
    _certs: dict[str, x509.Certificate] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def http(self) -> httpx.Client:
        if self.client is None:
            self.client = httpx.Client(timeout=FETCH_TIMEOUT, follow_redirects=False)
        return self.client

    def certificate(self, url: str) -> x509.Certificate:
        if not self.sns_url.match(url) or not urlsplit(url).path.endswith(".pem"):
            raise Refused(f"SigningCertURL {url!r} is not an SNS certificate URL")
        with self._lock:
            cached = self._certs.get(url)
        if cached is not None:
            return cached
        try:
            answer = self.http().get(url)
        except httpx.HTTPError as exc:
            raise Refused(f"cannot fetch the SNS certificate: {exc}") from None
        if answer.status_code != 200 or len(answer.content) > MAX_CERT_BYTES:
            raise Refused(f"cannot fetch the SNS certificate: HTTP {answer.status_code}")
        try:
            cert = x509.load_pem_x509_certificate(answer.content)
        except ValueError:
            raise Refused("the SNS certificate is not a PEM certificate") from None
        now = dt.datetime.fromtimestamp(self.now(), dt.UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise Refused("the SNS certificate is expired or not yet valid")
        with self._lock:
            if len(self._certs) >= CERT_CACHE_SIZE:
                self._certs.pop(next(iter(self._certs)))
            self._certs[url] = cert
        return cert


def webhook_handler(
    settings: Settings, state: State
) -> Callable[[str, Mapping[str, str], bytes], Response]:
    """:func:`handle` for the web app: events go to the bounce intake on ``state``."""
    from newsletter.bounces.intake import Intake

    return functools.partial(
        handle,
        settings=settings.webhooks,
        sink=Intake.from_settings(state, settings),
        verifiers=Verifiers(),
    )


def handle(
    provider: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    settings: WebhookSettings,
    sink: Sink,
    verifiers: Verifiers,
) -> Response:
    """Verify and take one webhook call; (HTTP status, JSON body)."""
    if provider not in PROVIDERS:
        return _answer(404, error="no such webhook")
    if len(body) > MAX_WEBHOOK_BYTES:
        return _answer(413, error="too large")
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        reports = _HANDLERS[provider](lowered, body, settings, verifiers)
    except Refused as exc:
        log.warning("webhook %s: refused: %s", provider, exc)
        return _answer(401, error="refused")
    except NotConfigured as exc:
        log.error("webhook %s: %s", provider, exc)
        return _answer(503, error="not configured")
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("webhook %s: unreadable body: %s", provider, exc)
        return _answer(400, error="unreadable body")
    taken = sum(1 for report in reports if sink.take(report, source=f"webhook:{provider}"))
    log.info("webhook %s: %d event(s), %d new", provider, len(reports), taken)
    return _answer(200, events=len(reports), new=taken)


class NotConfigured(Exception):
    """The provider's key is not set: every call is refused until it is."""


def _answer(status: int, **values: Any) -> Response:
    return status, json.dumps(values).encode()


def _need(value: str | None, var: str) -> str:
    if not value:
        raise NotConfigured(f"set the environment variable {var} to accept these calls")
    return value


def _signed_by(headers: Mapping[str, str], *names: str) -> list[str]:
    """The values of the signature headers ``names``; Refused when one is missing."""
    values = [headers.get(name, "") for name in names]
    if not all(values):
        raise Refused("unsigned call")
    return values


def _fresh(timestamp: str, settings: WebhookSettings, verifiers: Verifiers) -> None:
    try:
        when = float(timestamp)
    except ValueError:
        raise Refused("the signed timestamp is not a number") from None
    if abs(verifiers.now() - when) > settings.max_age:
        raise Refused(f"the signed timestamp is more than {settings.max_age}s away (a replay?)")


def _at(value: Any) -> dt.datetime | None:
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    if isinstance(value, str) and value:
        try:
            when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        return when.astimezone(dt.UTC)
    return None


def _report(
    provider: str,
    event_id: object,
    email: object,
    kind: str,
    status: str | None,
    diagnostic: str,
    *,
    at: Any,
    message_id: str | None = None,
    return_path: str | None = None,
) -> Report:
    """One provider event as a Report: ``format`` is the provider's name, the event id is
    prefixed with it, the time is read by :func:`_at`."""
    return Report(
        email=str(email),
        kind=kind,
        status=status,
        diagnostic=diagnostic,
        format=provider,
        event_id=f"{provider}:{event_id}",
        message_id=message_id,
        return_path=return_path,
        at=_at(at),
    )


def _angle(message_id: Any) -> str | None:
    if not isinstance(message_id, str) or not message_id.strip():
        return None
    text = message_id.strip()
    return text if text.startswith("<") else f"<{text}>"


# --------------------------------------------------------------------------- SES (SNS)

_SNS_NOTIFICATION_KEYS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_SNS_SUBSCRIPTION_KEYS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)


def sns_string_to_sign(message: Mapping[str, Any]) -> bytes:
    """The canonical text SNS signs (AWS's documented key order)."""
    kind = message.get("Type")
    keys = _SNS_NOTIFICATION_KEYS if kind == "Notification" else _SNS_SUBSCRIPTION_KEYS
    out = ""
    for key in keys:
        if key in message and message[key] is not None:
            out += f"{key}\n{message[key]}\n"
    return out.encode("utf-8")


def _ses(
    headers: Mapping[str, str], body: bytes, settings: WebhookSettings, verifiers: Verifiers
) -> list[Report]:
    try:
        message = json.loads(body)
    except ValueError:
        raise Refused("not an SNS message") from None
    if not isinstance(message, dict) or "Signature" not in message:
        raise Refused("unsigned call")
    kind = message.get("Type")
    if kind not in ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"):
        raise Refused(f"unknown SNS message type {kind!r}")
    cert = verifiers.certificate(str(message.get("SigningCertURL", "")))
    algorithm: hashes.HashAlgorithm = (
        hashes.SHA256() if str(message.get("SignatureVersion")) == "2" else hashes.SHA1()
    )
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise Refused("the SNS certificate does not hold an RSA key")
    try:
        signature = base64.b64decode(str(message["Signature"]), validate=True)
        key.verify(signature, sns_string_to_sign(message), padding.PKCS1v15(), algorithm)
    except (InvalidSignature, binascii.Error):
        raise Refused("bad SNS signature") from None
    topic = str(message.get("TopicArn", ""))
    if settings.ses_topics and topic not in settings.ses_topics:
        raise Refused(f"topic {topic} is not in webhooks.ses_topics")
    if kind == "SubscriptionConfirmation":
        url = str(message.get("SubscribeURL", ""))
        if not verifiers.sns_url.match(url):
            raise Refused(f"SubscribeURL {url!r} is not an SNS URL")
        try:
            answer = verifiers.http().get(url)
        except httpx.HTTPError as exc:
            raise Refused(f"cannot confirm the subscription: {exc}") from None
        log.info("webhook ses: subscription to %s confirmed (HTTP %s)", topic, answer.status_code)
        return []
    if kind == "UnsubscribeConfirmation":
        return []
    return ses_reports(json.loads(str(message["Message"])), str(message.get("MessageId", "")))


def ses_reports(event: Mapping[str, Any], sns_id: str) -> list[Report]:
    """Reports of one SES notification (``notificationType``) or event (``eventType``)."""
    kind = event.get("notificationType") or event.get("eventType")
    mail = event.get("mail") or {}
    message_id = None
    for header in mail.get("headers") or []:
        if str(header.get("name", "")).lower() == "message-id":
            message_id = _angle(header.get("value"))
    return_path = mail.get("source") if "+" in str(mail.get("source", "")) else None
    if kind == "Bounce":
        section = event.get("bounce") or {}
        recipients = section.get("bouncedRecipients") or []
    elif kind == "Complaint":
        section = event.get("complaint") or {}
        feedback = str(section.get("complaintFeedbackType") or "abuse")
        recipients = section.get("complainedRecipients") or [] if feedback != "not-spam" else []
    else:
        return []
    reports: list[Report] = []
    for rcpt in recipients:
        if kind == "Bounce":
            found, status, diagnostic = _ses_bounce(section, rcpt)
        else:
            found, status, diagnostic = COMPLAINT, None, f"feedback-type={feedback}"
        address = rcpt.get("emailAddress", "")
        event_id = f"{section.get('feedbackId') or sns_id}:{address}"
        reports.append(
            _report(
                "ses",
                event_id,
                address,
                found,
                status,
                diagnostic,
                at=section.get("timestamp"),
                message_id=message_id,
                return_path=return_path,
            )
        )
    return reports


def _ses_bounce(bounce: Mapping[str, Any], rcpt: Mapping[str, Any]) -> tuple[str, str | None, str]:
    """(kind, status, diagnostic) of one bounced recipient of an SES bounce."""
    permanent = bounce.get("bounceType") == "Permanent"
    subtype = str(bounce.get("bounceSubType", ""))
    diagnostic = str(rcpt.get("diagnosticCode") or subtype)[:500]
    status = rcpt.get("status") or status_in(diagnostic)
    found = SOFT if subtype == "MailboxFull" or not permanent else classify(status, diagnostic)
    return found, status, f"{bounce.get('bounceType')}/{subtype}: {diagnostic}"


# --------------------------------------------------------------------------- SendGrid


def _sendgrid(
    headers: Mapping[str, str], body: bytes, settings: WebhookSettings, verifiers: Verifiers
) -> list[Report]:
    key_text = _need(settings.sendgrid_key, "NEWSLETTER_WEBHOOKS__SENDGRID_KEY")
    signature, timestamp = _signed_by(
        headers,
        "x-twilio-email-event-webhook-signature",
        "x-twilio-email-event-webhook-timestamp",
    )
    key = _ec_key(key_text)
    try:
        key.verify(
            base64.b64decode(signature, validate=True),
            timestamp.encode() + body,
            ec.ECDSA(hashes.SHA256()),
        )
    except (InvalidSignature, binascii.Error):
        raise Refused("bad SendGrid signature") from None
    _fresh(timestamp, settings, verifiers)
    events = json.loads(body)
    if not isinstance(events, list):
        raise ValueError("a SendGrid batch is a JSON array")
    reports: list[Report] = []
    for event in events:
        name = event.get("event")
        if name not in ("bounce", "spamreport"):
            continue  # delivered, deferred, dropped, opens...: no bounce
        reason = str(event.get("reason") or "")[:500]
        status = event.get("status") or status_in(reason)
        if name == "spamreport":
            kind = COMPLAINT
        elif event.get("type") == "blocked":
            kind = SOFT
        else:
            kind = classify(status, reason)
        reports.append(
            _report(
                "sendgrid",
                event.get("sg_event_id"),
                event.get("email", ""),
                kind,
                status,
                reason or name,
                at=event.get("timestamp"),
                message_id=_angle(event.get("smtp-id")),
            )
        )
    return reports


def _ec_key(text: str) -> ec.EllipticCurvePublicKey:
    try:
        if "BEGIN PUBLIC KEY" in text:
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(text.strip()))
    except (ValueError, binascii.Error):
        raise NotConfigured("webhooks.sendgrid_key is not an ECDSA public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise NotConfigured("webhooks.sendgrid_key is not an ECDSA public key")
    return key


# --------------------------------------------------------------------------- Mailgun


def _mailgun(
    headers: Mapping[str, str], body: bytes, settings: WebhookSettings, verifiers: Verifiers
) -> list[Report]:
    key = _need(settings.mailgun_key, "NEWSLETTER_WEBHOOKS__MAILGUN_KEY")
    payload = json.loads(body)
    if not isinstance(payload, dict):
        raise Refused("unsigned call")
    sig = payload.get("signature") or {}
    timestamp, token, signature = (
        str(sig.get("timestamp", "")),
        str(sig.get("token", "")),
        str(sig.get("signature", "")),
    )
    if not (timestamp and token and signature):
        raise Refused("unsigned call")
    expected = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise Refused("bad Mailgun signature")
    _fresh(timestamp, settings, verifiers)
    event = payload.get("event-data") or {}
    name = event.get("event")
    if name == "complained":
        kind, status, diagnostic = COMPLAINT, None, "complained"
    elif name == "failed":
        delivery = event.get("delivery-status") or {}
        diagnostic = str(
            delivery.get("message") or delivery.get("description") or event.get("reason") or ""
        )[:500]
        code = delivery.get("enhanced-code") or delivery.get("code")
        status = str(code) if code else status_in(diagnostic)
        kind = SOFT if event.get("severity") == "temporary" else classify(status, diagnostic)
    else:
        return []
    headers_ = (event.get("message") or {}).get("headers") or {}
    return [
        _report(
            "mailgun",
            event.get("id") or token,
            event.get("recipient", ""),
            kind,
            status,
            diagnostic or str(name),
            at=event.get("timestamp"),
            message_id=_angle(headers_.get("message-id")),
        )
    ]


# --------------------------------------------------------------------------- Postmark

_POSTMARK_HARD = frozenset({"HardBounce", "BadEmailAddress", "ManuallyDeactivated"})
_POSTMARK_NONE = frozenset({"AutoResponder", "Subscribe", "Unsubscribe", "OpenRelayTest"})


def _postmark(
    headers: Mapping[str, str], body: bytes, settings: WebhookSettings, verifiers: Verifiers
) -> list[Report]:
    user = _need(settings.postmark_username, "NEWSLETTER_WEBHOOKS__POSTMARK_USERNAME")
    password = _need(settings.postmark_password, "NEWSLETTER_WEBHOOKS__POSTMARK_PASSWORD")
    auth = headers.get("authorization", "")
    scheme, _, encoded = auth.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise Refused("no basic auth")
    try:
        given = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error:
        raise Refused("malformed basic auth") from None
    expected = f"{user}:{password}".encode()
    if not hmac.compare_digest(given, expected):
        raise Refused("wrong basic-auth credentials")
    record = json.loads(body)
    if not isinstance(record, dict):
        raise ValueError("a Postmark record is a JSON object")
    record_type = record.get("RecordType")
    kind_name = str(record.get("Type", ""))
    if record_type == "SpamComplaint" or kind_name == "SpamComplaint":
        kind = COMPLAINT
    elif record_type == "Bounce" and kind_name not in _POSTMARK_NONE:
        kind = HARD if kind_name in _POSTMARK_HARD else SOFT
    else:
        return []
    details = str(record.get("Details") or record.get("Description") or kind_name)[:500]
    return [
        _report(
            "postmark",
            record.get("ID"),
            record.get("Email", ""),
            kind,
            status_in(details),
            f"{kind_name}: {details}",
            at=record.get("BouncedAt"),
        )
    ]


# --------------------------------------------------------------------------- Resend (Svix)


def svix_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """The ``v1,…`` signature Svix (Resend) sends for this call."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def _resend(
    headers: Mapping[str, str], body: bytes, settings: WebhookSettings, verifiers: Verifiers
) -> list[Report]:
    secret = _need(settings.resend_secret, "NEWSLETTER_WEBHOOKS__RESEND_SECRET")
    msg_id, timestamp, given = _signed_by(headers, "svix-id", "svix-timestamp", "svix-signature")
    try:
        expected = svix_signature(secret, msg_id, timestamp, body)
    except (binascii.Error, ValueError):
        raise NotConfigured("webhooks.resend_secret is not a whsec_ base64 secret") from None
    if not any(hmac.compare_digest(expected, part) for part in given.split()):
        raise Refused("bad Resend signature")
    _fresh(timestamp, settings, verifiers)
    event = json.loads(body)
    if not isinstance(event, dict):
        raise ValueError("a Resend event is a JSON object")
    name = event.get("type")
    data = event.get("data") or {}
    if name == "email.complained":
        kind, status, diagnostic = COMPLAINT, None, "complained"
    elif name == "email.bounced":
        bounce = data.get("bounce") or {}
        diagnostic = str(bounce.get("message") or "")[:500]
        status = status_in(diagnostic)
        kind = classify(status, diagnostic) if bounce.get("type") == "Permanent" else SOFT
    else:
        return []
    recipients = data.get("to") or []
    if isinstance(recipients, str):
        recipients = [recipients]
    return [
        _report(
            "resend",
            f"{msg_id}:{address}",
            address,
            kind,
            status,
            diagnostic or str(name),
            at=event.get("created_at"),
        )
        for address in recipients
    ]


_HANDLERS: dict[
    str, Callable[[Mapping[str, str], bytes, WebhookSettings, Verifiers], list[Report]]
] = {
    "ses": _ses,
    "sendgrid": _sendgrid,
    "mailgun": _mailgun,
    "postmark": _postmark,
    "resend": _resend,
}
