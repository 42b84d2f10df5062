"""Each provider webhook over HTTP, with real signatures made with keys made here."""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import hmac
import http.server
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from newsletter.bounces.parse import COMPLAINT, HARD, SOFT, Report
from newsletter.config import WebhookSettings
from newsletter.prefs import PrefsStore
from newsletter.web import WebApp
from newsletter.webhooks import Verifiers, handle, sns_string_to_sign, svix_signature
from tests.doubles import serving

NOW = 1_796_457_600.0  # 2026-12-05T08:00:00Z
MAILGUN_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
RESEND_SECRET = "whsec_" + base64.b64encode(b"resend-test-secret-32-bytes-long!").decode()


class RecordingSink:
    """The intake's side of the contract: takes each event once (by event id)."""

    def __init__(self) -> None:
        self.reports: list[Report] = []
        self.sources: list[str] = []
        self._seen: set[str] = set()

    def take(self, report: Report, *, source: str) -> bool:
        if report.event_id in self._seen:
            return False
        self._seen.add(report.event_id)
        self.reports.append(report)
        self.sources.append(source)
        return True


# --------------------------------------------------------------------------- keys


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@pytest.fixture(scope="module")
def sns_keys() -> tuple[rsa.RSAPrivateKey, bytes]:
    """A CA made here, and an SNS-like signing certificate it issued (PEM)."""
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    end = dt.datetime(2027, 12, 31, tzinfo=dt.UTC)
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Test Root CA"))
        .issuer_name(_name("Test Root CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("sns.us-east-1.amazonaws.com"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("sns.us-east-1.amazonaws.com")]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


class _Files(http.server.BaseHTTPRequestHandler):
    files: ClassVar[dict[str, bytes]] = {}
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        body = self.files.get(self.path.split("?")[0])
        self.send_response(200 if body is not None else 404)
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Local:
    url: str
    hits: list[str]


@pytest.fixture
def cert_server(sns_keys: tuple[rsa.RSAPrivateKey, bytes]) -> Iterator[Local]:
    """A local HTTP server standing in for sns.<region>.amazonaws.com."""
    handler = type("Files", (_Files,), {"files": {"/SimpleNotificationService-x.pem": sns_keys[1]}})
    handler.hits = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield Local(f"http://127.0.0.1:{httpd.server_address[1]}", handler.hits)
    finally:
        httpd.shutdown()
        httpd.server_close()


# --------------------------------------------------------------------------- the app


@pytest.fixture
def sendgrid_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def app_url(
    tmp_path: Path, sendgrid_key: ec.EllipticCurvePrivateKey, cert_server: Local
) -> Iterator[tuple[str, RecordingSink]]:
    public = sendgrid_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    settings = WebhookSettings(
        sendgrid_key=base64.b64encode(public).decode(),
        mailgun_key=MAILGUN_KEY,
        postmark_username="hooks",
        postmark_password="pm-pass-9",
        resend_secret=RESEND_SECRET,
        ses_topics=("arn:aws:sns:us-east-1:123456789012:bounces",),
    )
    sink = RecordingSink()
    verifiers = Verifiers(sns_url=re.compile(re.escape(cert_server.url) + "/"), now=lambda: NOW)
    hook = functools.partial(handle, settings=settings, sink=sink, verifiers=verifiers)
    app = WebApp(store=PrefsStore(f"sqlite:///{tmp_path}/s.db"), secret=b"k", webhooks=hook)
    with serving(app) as url:
        yield url, sink


def _post(url: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(url, content=body, headers=headers or {}, timeout=10)


# --------------------------------------------------------------------------- SES / SNS


def _sns(
    key: rsa.RSAPrivateKey, cert_url: str, kind: str, message: str, **extra: str
) -> dict[str, str]:
    body = {
        "Type": kind,
        "MessageId": extra.pop("MessageId", "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324"),
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:bounces",
        "Message": message,
        "Timestamp": "2026-12-05T08:00:00.000Z",
        "SignatureVersion": "2",
        "SigningCertURL": cert_url,
        **extra,
    }
    signature = key.sign(sns_string_to_sign(body), padding.PKCS1v15(), hashes.SHA256())
    body["Signature"] = base64.b64encode(signature).decode()
    return body


SES_BOUNCE = {
    "notificationType": "Bounce",
    "bounce": {
        "bounceType": "Permanent",
        "bounceSubType": "General",
        "bouncedRecipients": [
            {
                "emailAddress": "ada@example.net",
                "action": "failed",
                "status": "5.1.1",
                "diagnosticCode": "smtp; 550 5.1.1 user unknown",
            }
        ],
        "timestamp": "2026-12-05T08:00:05.000Z",
        "feedbackId": "0100017c-feedback-1",
    },
    "mail": {
        "messageId": "0100017c-ses-1",
        "source": "bounces+20261205-uflp3l5yitle5ytx@example.org",
        "headers": [{"name": "Message-ID", "value": "<048f@example.org>"}],
    },
}


def test_ses_bounce_verified_then_replay_changes_nothing(
    app_url: tuple[str, RecordingSink],
    sns_keys: tuple[rsa.RSAPrivateKey, bytes],
    cert_server: Local,
) -> None:
    url, sink = app_url
    cert_url = cert_server.url + "/SimpleNotificationService-x.pem"
    body = json.dumps(_sns(sns_keys[0], cert_url, "Notification", json.dumps(SES_BOUNCE)))
    answer = _post(url + "/webhooks/ses", body.encode())
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"events": 1, "new": 1}
    (report,) = sink.reports
    assert (report.email, report.kind, report.status) == ("ada@example.net", HARD, "5.1.1")
    assert report.message_id == "<048f@example.org>"
    assert report.return_path == "bounces+20261205-uflp3l5yitle5ytx@example.org"
    assert sink.sources == ["webhook:ses"]
    again = _post(url + "/webhooks/ses", body.encode())
    assert again.json() == {"events": 1, "new": 0}
    assert len(sink.reports) == 1


def test_ses_complaint_and_signature_version_1(
    app_url: tuple[str, RecordingSink],
    sns_keys: tuple[rsa.RSAPrivateKey, bytes],
    cert_server: Local,
) -> None:
    url, sink = app_url
    complaint = {
        "notificationType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": "frank@yahoo.com"}],
            "complaintFeedbackType": "abuse",
            "feedbackId": "0100017c-complaint-1",
            "timestamp": "2026-12-05T09:00:00.000Z",
        },
        "mail": {"messageId": "x", "headers": []},
    }
    body = {
        "Type": "Notification",
        "MessageId": "m-2",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:bounces",
        "Subject": "Amazon SES Email Event Notification",
        "Message": json.dumps(complaint),
        "Timestamp": "2026-12-05T09:00:01.000Z",
        "SignatureVersion": "1",
        "SigningCertURL": cert_server.url + "/SimpleNotificationService-x.pem",
    }
    signed = sns_keys[0].sign(sns_string_to_sign(body), padding.PKCS1v15(), hashes.SHA1())
    body["Signature"] = base64.b64encode(signed).decode()
    answer = _post(url + "/webhooks/ses", json.dumps(body).encode())
    assert answer.status_code == 200, answer.text
    assert [(r.email, r.kind) for r in sink.reports] == [("frank@yahoo.com", COMPLAINT)]


def test_ses_forgeries_are_refused_and_logged(
    app_url: tuple[str, RecordingSink],
    sns_keys: tuple[rsa.RSAPrivateKey, bytes],
    cert_server: Local,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, sink = app_url
    cert_url = cert_server.url + "/SimpleNotificationService-x.pem"
    signed = _sns(sns_keys[0], cert_url, "Notification", json.dumps(SES_BOUNCE))
    tampered = dict(signed, Message=signed["Message"].replace("ada@", "eve@"))
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    wrong_key = _sns(other_key, cert_url, "Notification", json.dumps(SES_BOUNCE))
    foreign_cert = _sns(
        sns_keys[0], "https://evil.example/SimpleNotificationService-x.pem", "Notification", "{}"
    )
    unsigned = {k: v for k, v in signed.items() if k != "Signature"}
    caplog.set_level(logging.WARNING, logger="newsletter.webhooks")
    for forged in (tampered, wrong_key, foreign_cert, unsigned):
        answer = _post(url + "/webhooks/ses", json.dumps(forged).encode())
        assert answer.status_code == 401, forged
    assert sink.reports == []
    assert sum("refused" in r.getMessage() for r in caplog.records) == 4
    assert "evil.example" in caplog.text


def test_ses_subscription_confirmation_fetches_the_subscribe_url(
    app_url: tuple[str, RecordingSink],
    sns_keys: tuple[rsa.RSAPrivateKey, bytes],
    cert_server: Local,
) -> None:
    url, sink = app_url
    subscribe = cert_server.url + "/?Action=ConfirmSubscription&Token=2336412f37"
    body = _sns(
        sns_keys[0],
        cert_server.url + "/SimpleNotificationService-x.pem",
        "SubscriptionConfirmation",
        "You have chosen to subscribe to the topic ...",
        SubscribeURL=subscribe,
        Token="2336412f37",
    )
    answer = _post(url + "/webhooks/ses", json.dumps(body).encode())
    assert answer.status_code == 200, answer.text
    handler_hits = [h for h in cert_server.hits if "ConfirmSubscription" in h]
    assert handler_hits == ["/?Action=ConfirmSubscription&Token=2336412f37"]
    assert sink.reports == []


# --------------------------------------------------------------------------- SendGrid


def _sendgrid_headers(key: ec.EllipticCurvePrivateKey, body: bytes, ts: str) -> dict[str, str]:
    signature = key.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": ts,
    }


def test_sendgrid_signed_batch(
    app_url: tuple[str, RecordingSink], sendgrid_key: ec.EllipticCurvePrivateKey
) -> None:
    url, sink = app_url
    events = [
        {"email": "gina@example.com", "event": "delivered", "sg_event_id": "e0", "timestamp": 1},
        {
            "email": "bob@gmail.com",
            "event": "bounce",
            "type": "bounce",
            "status": "5.1.1",
            "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
            "sg_event_id": "e1",
            "smtp-id": "<52c2@example.org>",
            "timestamp": int(NOW),
        },
        {"email": "erin@yahoo.com", "event": "spamreport", "sg_event_id": "e2", "timestamp": 2},
        {
            "email": "ivy@example.org",
            "event": "bounce",
            "type": "blocked",
            "reason": "554 5.7.1 blocked",
            "sg_event_id": "e3",
            "timestamp": 3,
        },
    ]
    body = json.dumps(events).encode()
    headers = _sendgrid_headers(sendgrid_key, body, str(int(NOW)))
    answer = _post(url + "/webhooks/sendgrid", body, headers)
    assert answer.status_code == 200, answer.text
    assert [(r.email, r.kind) for r in sink.reports] == [
        ("bob@gmail.com", HARD),
        ("erin@yahoo.com", COMPLAINT),
        ("ivy@example.org", SOFT),
    ]
    assert _post(url + "/webhooks/sendgrid", body, headers).json() == {"events": 3, "new": 0}

    forged = body.replace(b"bob@gmail.com", b"eve@gmail.com")
    assert _post(url + "/webhooks/sendgrid", forged, headers).status_code == 401
    stale = _sendgrid_headers(sendgrid_key, body, str(int(NOW) - 3600))
    assert _post(url + "/webhooks/sendgrid", body, stale).status_code == 401
    assert _post(url + "/webhooks/sendgrid", body).status_code == 401
    assert len(sink.reports) == 3


# --------------------------------------------------------------------------- Mailgun


def _mailgun_body(ts: str, token: str, event: dict[str, Any], key: str = MAILGUN_KEY) -> bytes:
    signature = hmac.new(key.encode(), (ts + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps(
        {
            "signature": {"timestamp": ts, "token": token, "signature": signature},
            "event-data": event,
        }
    ).encode()


def test_mailgun_hmac(app_url: tuple[str, RecordingSink]) -> None:
    url, sink = app_url
    failed = {
        "event": "failed",
        "severity": "permanent",
        "id": "G9Bn5sl1TC6nu79C8C0bwg",
        "recipient": "dan@example.org",
        "timestamp": NOW,
        "delivery-status": {"code": 550, "message": "5.1.1 No such user", "enhanced-code": "5.1.1"},
        "message": {"headers": {"message-id": "ca12@example.org"}},
    }
    ts = str(int(NOW))
    body = _mailgun_body(ts, "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0", failed)
    answer = _post(url + "/webhooks/mailgun", body, {"Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text
    (report,) = sink.reports
    assert (report.email, report.kind, report.status) == ("dan@example.org", HARD, "5.1.1")
    assert report.message_id == "<ca12@example.org>"
    assert _post(url + "/webhooks/mailgun", body).json()["new"] == 0

    wrong = _mailgun_body(ts, "b" * 50, dict(failed, id="x2"), key="key-not-the-right-one")
    assert _post(url + "/webhooks/mailgun", wrong).status_code == 401
    old = _mailgun_body(str(int(NOW) - 86400), "c" * 50, dict(failed, id="x3"))
    assert _post(url + "/webhooks/mailgun", old).status_code == 401
    complained = _mailgun_body(
        ts, "d" * 50, {"event": "complained", "id": "x4", "recipient": "frank@yahoo.com"}
    )
    assert _post(url + "/webhooks/mailgun", complained).status_code == 200
    assert [(r.email, r.kind) for r in sink.reports][1:] == [("frank@yahoo.com", COMPLAINT)]


# --------------------------------------------------------------------------- Postmark


def test_postmark_basic_auth(app_url: tuple[str, RecordingSink]) -> None:
    url, sink = app_url
    record = {
        "RecordType": "Bounce",
        "ID": 4323372036854775807,
        "Type": "HardBounce",
        "TypeCode": 1,
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Email": "erin@yahoo.com",
        "BouncedAt": "2026-12-05T08:01:44.9070259Z",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
    }
    body = json.dumps(record).encode()
    good = "Basic " + base64.b64encode(b"hooks:pm-pass-9").decode()
    bad = "Basic " + base64.b64encode(b"hooks:guess").decode()
    assert _post(url + "/webhooks/postmark", body, {"Authorization": bad}).status_code == 401
    assert _post(url + "/webhooks/postmark", body).status_code == 401
    answer = _post(url + "/webhooks/postmark", body, {"Authorization": good})
    assert answer.status_code == 200, answer.text
    assert _post(url + "/webhooks/postmark", body, {"Authorization": good}).json()["new"] == 0
    auto = dict(record, ID=5, Type="AutoResponder")
    auto_body = json.dumps(auto).encode()
    assert _post(url + "/webhooks/postmark", auto_body, {"Authorization": good}).json() == {
        "events": 0,
        "new": 0,
    }
    (report,) = sink.reports
    assert (report.email, report.kind, report.status) == ("erin@yahoo.com", HARD, "5.1.1")


# --------------------------------------------------------------------------- Resend


def test_resend_svix_signature(app_url: tuple[str, RecordingSink]) -> None:
    url, sink = app_url
    event = {
        "type": "email.bounced",
        "created_at": "2026-12-05T08:01:00.000Z",
        "data": {
            "email_id": "56761188-7520-42d8-8898-ff6fc54ce618",
            "to": ["carol@contoso.com"],
            "bounce": {
                "type": "Permanent",
                "subType": "General",
                "message": "550 5.1.10 RESOLVER.ADR.RecipientNotFound",
            },
        },
    }
    body = json.dumps(event).encode()
    ts = str(int(NOW))
    signature = svix_signature(RESEND_SECRET, "msg_2Lh9KRb0pzN4LePd3XiA", ts, body)
    headers = {
        "svix-id": "msg_2Lh9KRb0pzN4LePd3XiA",
        "svix-timestamp": ts,
        "svix-signature": "v1,bm90LXRoaXMtb25l " + signature,
    }
    answer = _post(url + "/webhooks/resend", body, headers)
    assert answer.status_code == 200, answer.text
    assert _post(url + "/webhooks/resend", body, headers).json()["new"] == 0
    forged = dict(headers, **{"svix-signature": "v1," + base64.b64encode(b"x" * 32).decode()})
    assert _post(url + "/webhooks/resend", body, forged).status_code == 401
    old_ts = str(int(NOW) - 600)
    stale = dict(
        headers,
        **{
            "svix-timestamp": old_ts,
            "svix-signature": svix_signature(RESEND_SECRET, headers["svix-id"], old_ts, body),
        },
    )
    assert _post(url + "/webhooks/resend", body, stale).status_code == 401
    (report,) = sink.reports
    assert (report.email, report.kind, report.status) == ("carol@contoso.com", HARD, "5.1.10")


def test_unknown_provider_get_and_oversized(app_url: tuple[str, RecordingSink]) -> None:
    url, _sink = app_url
    assert _post(url + "/webhooks/nope", b"{}").status_code == 404
    assert httpx.get(url + "/webhooks/ses", timeout=10).status_code == 405
    big = b"[" + b" " * (1024 * 1024) + b"]"
    assert _post(url + "/webhooks/sendgrid", big).status_code == 413


def test_unconfigured_key_refuses_every_call(tmp_path: Path) -> None:
    sink = RecordingSink()
    status, _ = handle(
        "mailgun",
        {},
        _mailgun_body("1", "t", {"event": "failed"}),
        settings=WebhookSettings(),
        sink=sink,
        verifiers=Verifiers(now=time.time),
    )
    assert status == 503
    assert sink.reports == []
