"""The providers' own behaviour (issue 14): each backend against a local stand-in that
speaks the provider's documented protocol (tests/providers.py), the request shapes
against published schemas (SES v2's botocore model, SendGrid's v3 Mail Send), and a
whole day through each backend ending with every reader's ledger row right."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import botocore.session
import dkim
import httpx
import jsonschema
import pytest
from botocore.exceptions import ClientError
from botocore.serialize import create_serializer
from botocore.validate import validate_parameters
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.config import SenderSettings, Settings, load_settings
from newsletter.delivery import make_backend
from newsletter.delivery.base import Backend, BackendOptions, RetryPolicy
from newsletter.delivery.http import HttpBackend
from newsletter.delivery.mailgun import MailgunBackend
from newsletter.delivery.postmark import PostmarkBackend
from newsletter.delivery.resend import ResendBackend
from newsletter.delivery.sendgrid import SendGridBackend
from newsletter.delivery.ses import SesBackend
from newsletter.errors import AuthError, ConfigError, DeliveryError
from newsletter.ledger import Ledger
from newsletter.message import DkimSigner, MessageTemplate, Recipient, build_template
from newsletter.models import DELIVERED, SendStatus, Subscriber
from newsletter.render import RenderedDigest
from newsletter.send import send_day, values_maker
from tests.doubles import deliver, dkim_key, hand_rendered, sample_rendered, send_collecting
from tests.providers import (
    KEY,
    SENDGRID_MAIL_SEND_SCHEMA,
    FakeMailgun,
    FakePostmark,
    FakeProvider,
    FakeResend,
    FakeSendGrid,
    garbled_after_sending,
    serve,
)

DATE = dt.date(2026, 11, 25)
NOW = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
SENDER = SenderSettings(
    from_="Daily Papers <digest@papers.example>",
    reply_to="editors@papers.example",
    list_id="Daily <daily.papers.example>",
)


def template(rendered: RenderedDigest | None = None) -> MessageTemplate:
    return build_template(rendered or sample_rendered(), sender=SENDER, date=DATE, now=NOW)


def recipients(tpl: MessageTemplate, n: int, *, domain: str = "example.org") -> list[Recipient]:
    return [
        tpl.recipient(
            f"u{i}@{domain}",
            f"User {i}",
            {
                "name": f"User {i}",
                "email": f"u{i}@{domain}",
                "unsubscribe_url": f"https://papers.example/unsubscribe?token=t{i}",
                "preferences_url": f"https://papers.example/preferences?token=p{i}",
                "feedback_url": "https://papers.example/f/" + "F" * 36,
            },
        )
        for i in range(n)
    ]


def options(sleeps: list[float] | None = None, attempts: int = 3) -> BackendOptions:
    return BackendOptions(
        retry=RetryPolicy(max_attempts=attempts, deadline=600),
        sleep=(sleeps if sleeps is not None else []).append,
    )


def sendgrid(fake: FakeProvider, sleeps: list[float] | None = None) -> SendGridBackend:
    return SendGridBackend(api_key=KEY, client=fake.client(), options=options(sleeps))


def mailgun(fake: FakeProvider, sleeps: list[float] | None = None, **kwargs: Any) -> MailgunBackend:
    kwargs.setdefault("domain", "mg.papers.example")
    return MailgunBackend(api_key=KEY, client=fake.client(), options=options(sleeps), **kwargs)


def postmark(
    fake: FakeProvider, sleeps: list[float] | None = None, **kwargs: Any
) -> PostmarkBackend:
    return PostmarkBackend(api_key=KEY, client=fake.client(), options=options(sleeps), **kwargs)


def resend(fake: FakeProvider, sleeps: list[float] | None = None) -> ResendBackend:
    return ResendBackend(api_key=KEY, client=fake.client(), options=options(sleeps))


def sent_bodies(fake: FakeProvider) -> list[Any]:
    return [json.loads(r.content) for r in fake.requests if r.method == "POST"]


# --------------------------------------------------------------------------- SES


class SesStub:
    """Takes send_email calls, checks each against botocore's SES v2 model (validation and
    the REST-JSON serialiser the real client uses) and answers like SES: a MessageId, or
    a scripted ClientError per address."""

    def __init__(self, script: dict[str, list[Exception]] | None = None) -> None:
        self.script = script or {}
        self.calls: list[dict[str, Any]] = []
        model = botocore.session.get_session().get_service_model("sesv2")
        self.operation = model.operation_model("SendEmail")
        self.serializer = create_serializer(model.metadata["protocol"])

    def send_email(self, **kwargs: Any) -> dict[str, Any]:
        validate_parameters(kwargs, self.operation.input_shape)  # ParamValidationError
        self.serializer.serialize_to_request(kwargs, self.operation)
        self.calls.append(kwargs)
        pending = self.script.get(kwargs["Destination"]["ToAddresses"][0])
        if pending:
            raise pending.pop(0)
        return {
            "MessageId": f"0102019a-{len(self.calls):04d}-ses",
            "ResponseMetadata": {"HTTPStatusCode": 200},
        }


def ses_error(code: str, message: str, status: int = 400) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "SendEmail",
    )


def ses_rewrites(raw: bytes, message_id: str) -> bytes:
    """What SES does to a raw message (its "header fields" page): new Message-ID and Date."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    lines = re.sub(rb"\r\n[ \t]", b" ", head).split(b"\r\n")
    out = []
    for line in lines:
        name = line.split(b":", 1)[0].lower()
        if name == b"message-id":
            line = b"Message-ID: <" + message_id.encode() + b"@eu-west-1.amazonses.com>"
        elif name == b"date":
            line = b"Date: Wed, 25 Nov 2026 08:00:07 +0000"
        out.append(line)
    return b"\r\n".join(out) + sep + body


def test_ses_dkim_signature_survives_ses_rewriting_message_id_and_date(tmp_path: Path) -> None:
    private, public = dkim_key()
    (tmp_path / "dkim.pem").write_bytes(private)
    settings = load_settings(
        None,
        env={
            "NEWSLETTER_STATE": f"sqlite:///{tmp_path / 'state.db'}",
            "NEWSLETTER_SECRET_KEY": "test-secret-0123456789abcdef0123456",
            "NEWSLETTER_SENDER__FROM": "Daily Papers <digest@papers.example>",
            "NEWSLETTER_DELIVERY__BACKEND": "ses",
            "NEWSLETTER_DELIVERY__DKIM_KEY": str(tmp_path / "dkim.pem"),
            "NEWSLETTER_DELIVERY__DKIM_SELECTOR": "s1",
            "NEWSLETTER_DIGEST__BASE_URL": "https://papers.example",
            "NEWSLETTER_SENDER__LIST_ID": "Daily Papers <daily.papers.example>",
        },
    )
    stub = SesStub()
    backend = SesBackend.from_settings(settings, client=stub, options=options())
    _, results = send_collecting(
        settings,
        DATE,
        backend=backend,
        subscribers=[Subscriber(email="reader@example.org", name="Reader")],
        now=lambda: NOW,
    )
    assert [r.status for r in results] == [SendStatus.QUEUED]
    raw = stub.calls[0]["Content"]["Raw"]["Data"]

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s1._domainkey.papers.example."
        return b"v=DKIM1; k=rsa; p=" + public

    signature = email.message_from_bytes(raw, policy=email.policy.default)["DKIM-Signature"]
    covered = re.search(r"h=([^;]+)", " ".join(str(signature).split()))
    assert covered is not None
    headers = covered.group(1).replace(" ", "").lower().split(":")
    assert "message-id" not in headers and "date" not in headers
    assert "list-unsubscribe" in headers and "from" in headers
    # as SES delivers it: its own Message-ID and Date, our signature still good
    assert dkim.verify(ses_rewrites(raw, "0102019a-0001-ses"), dnsfunc=dnsfunc)
    # and the ledger keeps SES's MessageId, which its bounce/complaint notices carry
    with Ledger(settings.state) as ledger:
        row = ledger.deliveries(DATE)["reader@example.org"]
    assert row.status == "sent" and row.provider_id == "0102019a-0001-ses"


def test_ses_keeps_every_header_signed_for_backends_that_do_not_rewrite() -> None:
    signer = DkimSigner(private_key=b"k", selector="s", domain="papers.example")
    assert SesBackend(client=SesStub(), from_address="d@papers.example").dkim_signer(
        signer
    ).headers == tuple(h for h in signer.headers if h not in {"message-id", "date"})
    from newsletter.delivery.memory import MemoryBackend

    assert MemoryBackend().dkim_signer(signer) is signer


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (
            "MailFromDomainNotVerifiedException",
            "MAIL FROM domain mail.papers.example is not verified",
        ),
        (
            "MessageRejected",
            "Email address is not verified. The following identities failed the check in "
            "region EU-WEST-1: digest@papers.example",
        ),
        ("NotFoundException", "Configuration set <news> does not exist."),
    ],
)
def test_ses_account_wide_errors_stop_the_run_at_the_first_reader(code: str, message: str) -> None:
    tpl = template()
    people = recipients(tpl, 3)
    stub = SesStub({people[0].email: [ses_error(code, message)]})
    backend = SesBackend(client=stub, from_address="digest@papers.example", options=options())
    with pytest.raises(DeliveryError, match=code):
        backend.send(tpl, people)
    assert len(stub.calls) == 1


def test_ses_unverified_recipient_in_the_sandbox_is_that_reader_only() -> None:
    tpl = template()
    people = recipients(tpl, 2)
    text = (
        "Email address is not verified. The following identities failed the check in "
        "region EU-WEST-1: u0@example.org"
    )
    stub = SesStub({people[0].email: [ses_error("MessageRejected", text)]})
    backend = SesBackend(client=stub, from_address="digest@papers.example", options=options())
    results = {r.email: r for r in backend.send(tpl, people)}
    assert results["u0@example.org"].status == SendStatus.REJECTED
    assert results["u1@example.org"].status == SendStatus.QUEUED


def test_ses_requests_match_the_botocore_model() -> None:
    """The stub validates and serialises every call with botocore's SES v2 model, and a
    wrong call is caught by it (the check can fail)."""
    tpl = template()
    stub = SesStub()
    SesBackend(client=stub, from_address="digest@papers.example").send(tpl, recipients(tpl, 2))
    assert len(stub.calls) == 2
    from botocore.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        stub.send_email(FromEmailAddress="a@b", Destination={"To": ["x@y"]}, Content={})


# --------------------------------------------------------------------------- Postmark


def test_postmark_delivery_may_be_delayed_is_accepted() -> None:
    fake = FakePostmark(delayed=True)
    tpl = template()
    results = postmark(fake).send(tpl, recipients(tpl, 3))
    assert all(r.status == SendStatus.QUEUED and r.message_id for r in results)
    assert sum(fake.delivered.values()) == 3


def test_postmark_message_stream_setting_and_tracking_off() -> None:
    settings = load_settings(
        None,
        env={
            "NEWSLETTER_DELIVERY__BACKEND": "postmark",
            "NEWSLETTER_DELIVERY__API_KEY": KEY,
            "NEWSLETTER_DELIVERY__MESSAGE_STREAM": "daily-digest",
        },
    )
    fake = FakePostmark(streams={"daily-digest": "Custom"})
    backend = make_backend(settings, client=fake.client(), options=options())
    tpl = template()
    results = backend.send(tpl, recipients(tpl, 2))
    assert all(r.status == SendStatus.QUEUED for r in results)
    assert [r.url.path for r in fake.requests] == ["/message-streams/daily-digest", "/email/batch"]
    (batch,) = sent_bodies(fake)
    assert {m["MessageStream"] for m in batch} == {"daily-digest"}
    assert {(m["TrackOpens"], m["TrackLinks"]) for m in batch} == {(False, "None")}


def test_postmark_managed_unsubscribes_stop_the_run_unless_chosen() -> None:
    tpl = template()
    fake = FakePostmark(streams={"broadcast": "Postmark"})
    with pytest.raises(DeliveryError, match=r"'Custom'.*postmark_unsubscribe: postmark"):
        postmark(fake).send(tpl, recipients(tpl, 2))
    assert sum(fake.delivered.values()) == 0
    # the other documented choice: Postmark's link and suppressions, no stream check
    results = postmark(fake, unsubscribe="postmark").send(tpl, recipients(tpl, 2))
    assert all(r.status == SendStatus.QUEUED for r in results)
    with pytest.raises(DeliveryError, match=r"stream 'nope' not found"):
        postmark(FakePostmark(), message_stream="nope").send(tpl, recipients(tpl, 1))


def big_rendered(html_bytes: int) -> RenderedDigest:
    base = sample_rendered()
    line = "abstract text " * 50  # lines the renderer would keep (under 900 bytes)
    filler = "<p>" + "\n".join([line] * max(1, html_bytes // len(line))) + "</p>\n"
    return hand_rendered(
        base.subject, base.html.replace("<p>Hello", filler + "<p>Hello"), base.text
    )


def test_postmark_batches_stay_under_50_mb() -> None:
    """500 readers at a 100 KB digest are ~60 MB of JSON: split before sending, not
    refused whole."""
    fake = FakePostmark()
    tpl = template(big_rendered(100_000))
    people = recipients(tpl, 500)
    results = postmark(fake).send(tpl, people)
    sizes = [len(r.content) for r in fake.requests if r.method == "POST"]
    assert len(sizes) >= 2 and max(sizes) <= 50_000_000
    assert all(r.status == SendStatus.QUEUED for r in results) and len(results) == 500
    assert all(n == 1 for n in fake.delivered.values()) and len(fake.delivered) == 500


def test_postmark_garbled_200_is_not_resent_blindly() -> None:
    fake = FakePostmark()
    fake.faults = [None, garbled_after_sending(fake)]  # the stream check, then the batch
    tpl = template()
    results = postmark(fake).send(tpl, recipients(tpl, 3))
    assert len([r for r in fake.requests if r.method == "POST"]) == 1
    assert all(n == 1 for n in fake.delivered.values())
    assert all(
        r.status == SendStatus.FAILED and not r.transient and "outcome unknown" in (r.error or "")
        for r in results
    )


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (400, "The 'From' address you supplied is not a Sender Signature on your account."),
        (401, "Sender signature not confirmed."),
        (
            300,
            "Invalid 'From' address: 'digest@papers.example' is not a verified sender signature.",
        ),
        (412, "Account is pending approval."),
        (1235, "The 'MessageStream' provided does not exist on this server."),
    ],
)
def test_postmark_account_wide_codes_stop_the_run(code: int, message: str) -> None:
    tpl = template()
    whole = FakePostmark()
    whole.faults = [
        None,
        lambda r: httpx.Response(422, json={"ErrorCode": code, "Message": message}),
    ]
    with pytest.raises(DeliveryError, match=str(code)) as info:
        postmark(whole).send(tpl, recipients(tpl, 600))
    assert not isinstance(info.value, AuthError)
    assert len([r for r in whole.requests if r.method == "POST"]) == 1  # not batch after batch

    def per_item(request: httpx.Request) -> httpx.Response:
        items = json.loads(request.content)
        answer = [{"ErrorCode": 0, "Message": "OK", "MessageID": "pm-0", "To": items[0]["To"]}]
        answer += [{"ErrorCode": code, "Message": message} for _ in items[1:]]
        return httpx.Response(200, json=answer)

    item = FakePostmark()
    item.faults = [None, per_item]
    seen: list[Any] = []
    with pytest.raises(DeliveryError, match=str(code)):
        postmark(item).send(tpl, recipients(tpl, 3), on_result=seen.append)
    # the reader Postmark took is reported before the stop; the others stay to do
    assert [(r.email, r.status) for r in seen] == [("u0@example.org", SendStatus.QUEUED)]


# --------------------------------------------------------------------------- 413 everywhere


@pytest.mark.parametrize("which", ["sendgrid", "mailgun", "postmark", "resend"])
def test_413_splits_the_batch_for_every_batching_provider(which: str) -> None:
    fakes: dict[str, tuple[FakeProvider, Callable[[FakeProvider], HttpBackend]]] = {
        "sendgrid": (FakeSendGrid(), sendgrid),
        "mailgun": (FakeMailgun(), mailgun),
        "postmark": (FakePostmark(), postmark),
        "resend": (FakeResend(), resend),
    }
    fake, make = fakes[which]
    tpl = template()
    people = recipients(tpl, 40)
    with make(fake) as backend:
        one = len(backend.client.build_request(**_shape(backend, tpl, people[:1])).content)
        full = len(backend.client.build_request(**_shape(backend, tpl, people)).content)
        fake.max_bytes = full // 3
        assert one < fake.max_bytes
        results = backend.send(tpl, people)
    assert any(r for r in fake.requests if len(r.content) > fake.max_bytes)  # a 413 came
    assert all(r.status in DELIVERED for r in results) and len(results) == 40
    assert sorted(fake.delivered) == sorted(p.email for p in people)
    assert set(fake.delivered.values()) == {1}


def _shape(backend: HttpBackend, tpl: MessageTemplate, batch: Sequence[Recipient]) -> Any:
    spec = backend.build_request(tpl, batch)
    return {"method": spec.method, "url": spec.url, "json": spec.json, "data": spec.data}


def test_the_size_that_fitted_is_kept_for_the_rest_of_the_run() -> None:
    fake = FakeResend()
    tpl = template()
    people = recipients(tpl, 300)
    with resend(fake) as backend:
        full = len(backend.client.build_request(**_shape(backend, tpl, people[:100])).content)
        fake.max_bytes = int(full * 0.6)  # 50 fit, 100 do not
        results = backend.send(tpl, people)
    assert [len(json.loads(r.content)) for r in fake.requests] == [100, 50, 50, 50, 50, 50, 50]
    assert len(results) == 300 and set(fake.delivered.values()) == {1}


def test_a_single_message_over_the_limit_fails_alone() -> None:
    fake = FakeResend()
    fake.max_bytes = 10
    tpl = template()
    results = resend(fake).send(tpl, recipients(tpl, 3))
    assert all(r.status == SendStatus.FAILED and not r.transient for r in results)
    assert "413" in (results[0].error or "")
    assert len(fake.requests) == 1 + 2 + 2  # the batch, its halves, the halves' halves


# --------------------------------------------------------------------------- Resend


def test_resend_concurrent_idempotent_request_is_retried() -> None:
    fake = FakeResend()
    fake.faults = [
        lambda r: httpx.Response(
            409,
            json={
                "statusCode": 409,
                "name": "concurrent_idempotent_requests",
                "message": "Same idempotency key used while original request is still in "
                "progress. Try the request again later.",
            },
        )
    ]
    sleeps: list[float] = []
    tpl = template()
    results = resend(fake, sleeps).send(tpl, recipients(tpl, 100))
    assert len(sleeps) == 1
    assert all(r.status == SendStatus.QUEUED and r.attempts == 2 for r in results)


def test_resend_key_covers_the_content() -> None:
    fake = FakeResend()
    tpl = template()
    first = resend(fake).send(tpl, recipients(tpl, 2))
    changed = template(sample_rendered(subject="Daily Papers — 2026-11-25: corrected"))
    second = resend(fake).send(changed, recipients(changed, 2))
    assert all(r.status == SendStatus.QUEUED for r in first + second)
    keys = [r.headers["Idempotency-Key"] for r in fake.requests]
    assert keys[0] != keys[1] and all(len(k) <= 256 for k in keys)
    # the same content again is answered from Resend's record, not sent twice
    again = resend(fake).send(tpl, recipients(tpl, 2))
    assert all(r.status == SendStatus.QUEUED for r in again)
    assert set(fake.delivered.values()) == {2}


def test_resend_garbled_200_retries_under_the_same_key() -> None:
    fake = FakeResend()
    fake.faults = [garbled_after_sending(fake)]
    tpl = template()
    results = resend(fake).send(tpl, recipients(tpl, 3))
    assert len(fake.requests) == 2
    assert all(r.status == SendStatus.QUEUED for r in results)
    assert set(fake.delivered.values()) == {1}


def test_resend_unverified_domain_stops_with_what_resend_said() -> None:
    fake = FakeResend(verified_domains=("other.example",))
    tpl = template()
    with pytest.raises(DeliveryError, match=r"papers\.example domain is not verified") as info:
        resend(fake).send(tpl, recipients(tpl, 150))
    assert not isinstance(info.value, AuthError) and len(fake.requests) == 1


# --------------------------------------------------------------------------- Mailgun


def test_mailgun_magnificent_api_200_is_not_success() -> None:
    fake = FakeMailgun()
    backend = MailgunBackend(
        api_key=KEY,
        domain="mg.papers.example",
        base_url="https://api.mailgun.net/v2",  # a wrong URL: Mailgun answers with its page
        client=fake.client(),
        options=options(),
    )
    tpl = template()
    with pytest.raises(DeliveryError, match="Magnificent"):
        backend.send(tpl, recipients(tpl, 2))
    assert len(fake.requests) == 1
    with pytest.raises(ConfigError, match="not a bare domain"):
        mailgun(fake, domain="mg.papers.example/")


def test_mailgun_other_200_is_an_unknown_outcome_not_sent() -> None:
    fake = FakeMailgun()
    fake.faults = [lambda r: httpx.Response(200, json={"message": "ok?"})]
    tpl = template()
    results = mailgun(fake).send(tpl, recipients(tpl, 2))
    assert all(
        r.status == SendStatus.FAILED and "outcome unknown" in (r.error or "") for r in results
    )


def test_mailgun_wrong_region_stops_the_run_with_one_line() -> None:
    fake = FakeMailgun(domains=("mg.other.example",))  # the domain lives in the EU region
    tpl = template()
    with pytest.raises(DeliveryError, match=r"delivery\.region") as info:
        mailgun(fake).send(tpl, recipients(tpl, 1500))
    assert "\n" not in str(info.value)
    assert len(fake.requests) == 1


def test_mailgun_message_id_and_tracking() -> None:
    fake = FakeMailgun()
    tpl = template()
    people = recipients(tpl, 2)
    mailgun(fake).send(tpl, people)
    form = parse_qs(fake.requests[0].content.decode())
    variables = json.loads(form["recipient-variables"][0])
    assert form["h:Message-Id"] == ["%recipient.message_id%"]
    assert [variables[p.email]["message_id"] for p in people] == [p.message_id for p in people]
    assert form["o:tracking"] == form["o:tracking-clicks"] == form["o:tracking-opens"] == ["no"]


# --------------------------------------------------------------------------- SendGrid


def test_sendgrid_requests_match_the_mail_send_schema_and_turn_tracking_off() -> None:
    fake = FakeSendGrid()
    tpl = template()
    results = sendgrid(fake).send(tpl, recipients(tpl, 3))
    assert all(r.status == SendStatus.QUEUED for r in results)
    (payload,) = sent_bodies(fake)
    jsonschema.validate(payload, SENDGRID_MAIL_SEND_SCHEMA)
    assert all(not setting["enable"] for setting in payload["tracking_settings"].values())
    assert {"click_tracking", "open_tracking", "subscription_tracking"} <= set(
        payload["tracking_settings"]
    )
    with pytest.raises(jsonschema.ValidationError):  # the schema can fail
        jsonschema.validate({**payload, "headers": {"To": "x"}}, SENDGRID_MAIL_SEND_SCHEMA)


def test_sendgrid_429_waits_for_x_ratelimit_reset() -> None:
    fake = FakeSendGrid(rate_limit=1, reset_at=time.time() + 45)
    sleeps: list[float] = []
    tpl = template()
    results = sendgrid(fake, sleeps).send(tpl, recipients(tpl, 1001))
    assert len(sleeps) == 1 and 40 <= sleeps[0] <= 120
    assert all(r.status == SendStatus.QUEUED for r in results)
    assert set(fake.delivered.values()) == {1}


def test_sendgrid_403_says_unverified_sender_or_refused_key() -> None:
    tpl = template()
    fake = FakeSendGrid(verified=("someone@else.example",))
    with pytest.raises(DeliveryError, match=r"sender is not verified.*Sender Identity") as info:
        sendgrid(fake).send(tpl, recipients(tpl, 1500))
    assert not isinstance(info.value, AuthError) and len(fake.requests) == 1
    forbidden = FakeSendGrid()
    forbidden.faults = [
        lambda r: httpx.Response(
            403, json={"errors": [{"field": None, "message": "access forbidden"}]}
        )
    ]
    with pytest.raises(AuthError, match=r"refused the request.*access forbidden") as auth:
        sendgrid(forbidden).send(tpl, recipients(tpl, 1))
    assert "API key" not in str(auth.value)


# --------------------------------------------------------------------------- DKIM key


@pytest.mark.parametrize("name", ["sendgrid", "mailgun", "postmark", "resend"])
def test_http_backends_refuse_our_dkim_key(name: str, tmp_path: Path) -> None:
    private, _ = dkim_key()
    (tmp_path / "k.pem").write_bytes(private)
    settings: Settings = load_settings(
        None,
        env={
            "NEWSLETTER_STATE": f"sqlite:///{tmp_path / 'state.db'}",
            "NEWSLETTER_SECRET_KEY": "test-secret-0123456789abcdef0123456",
            "NEWSLETTER_DELIVERY__BACKEND": name,
            "NEWSLETTER_DELIVERY__API_KEY": KEY,
            "NEWSLETTER_DELIVERY__DOMAIN": "mg.papers.example",
            "NEWSLETTER_DELIVERY__DKIM_KEY": str(tmp_path / "k.pem"),
            "NEWSLETTER_DELIVERY__DKIM_SELECTOR": "s1",
        },
    )
    fake = FakeSendGrid()
    backend = make_backend(settings, client=fake.client())
    with pytest.raises(ConfigError, match=r"delivery\.dkim_key: the .* backend sends through"):
        send_day(
            settings,
            DATE,
            backend=backend,
            subscribers=[Subscriber(email="reader@example.org")],
            now=lambda: NOW,
        )
    assert fake.requests == []


# --------------------------------------------------------------------------- a whole day


@dataclass(frozen=True)
class Variant:
    rendered: RenderedDigest
    subscribers: tuple[Subscriber, ...]


def send_a_day(backend: Backend, people: list[Subscriber], ledger: Ledger) -> None:
    deliver(
        [Variant(sample_rendered(), tuple(people))],
        date=DATE,
        backend=backend,
        sender=SENDER,
        values_for=values_maker(
            base_url="https://papers.example", secret=b"k" * 32, list_id="L", date=DATE
        ),
        now=lambda: NOW,
        ledger=ledger,
    )


def check_day(ledger: Ledger, fake: FakeProvider, people: list[Subscriber]) -> dict[str, str]:
    """Every reader's row is final and agrees with what the provider delivered."""
    rows = ledger.deliveries(DATE)
    assert set(rows) == {p.email for p in people}  # nobody silently dropped
    assert all(n == 1 for n in fake.delivered.values())  # nobody twice
    for address, row in rows.items():
        assert row.status != "pending", address
        assert (row.status == "sent") == (address in fake.delivered), address
        if row.status == "sent":
            assert row.provider_id == fake.sent_ids[address]
    return {
        a: "sent" if r.status == "sent" else ("permanent" if r.permanent else "transient")
        for a, r in rows.items()
    }


def readers(n: int, *odd: str) -> list[Subscriber]:
    return [Subscriber(email=f"r{i}@example.org", name=f"R {i}") for i in range(n)] + [
        Subscriber(email=address) for address in odd
    ]


def test_a_day_through_sendgrid(tmp_path: Path) -> None:
    fake = FakeSendGrid(rate_limit=1, reset_at=time.time() + 5)
    fake.faults = [None, lambda r: httpx.Response(503, text="Service Unavailable")]
    people = readers(2100)
    with Ledger(f"sqlite:///{tmp_path / 's.db'}") as ledger:
        send_a_day(sendgrid(fake), people, ledger)
        outcome = check_day(ledger, fake, people)
    assert set(outcome.values()) == {"sent"}


def test_a_day_through_mailgun(tmp_path: Path) -> None:
    fake = FakeMailgun()
    fake.max_bytes = 400_000
    fake.faults = [lambda r: httpx.Response(429, headers={"Retry-After": "3"}, text="busy")]
    people = readers(1200)
    with Ledger(f"sqlite:///{tmp_path / 'm.db'}") as ledger:
        send_a_day(mailgun(fake), people, ledger)
        outcome = check_day(ledger, fake, people)
    assert set(outcome.values()) == {"sent"}


def test_a_day_through_postmark(tmp_path: Path) -> None:
    fake = FakePostmark(inactive=("r7@example.org",))
    always_busy = [lambda r: httpx.Response(503, text="down")] * 3
    # stream check; batch 1 fine; batch 2 down for every attempt (given up: transient)
    fake.faults = [None, None, *always_busy]
    people = readers(1100)
    with Ledger(f"sqlite:///{tmp_path / 'p.db'}") as ledger:
        send_a_day(postmark(fake), people, ledger)
        outcome = check_day(ledger, fake, people)
        assert outcome["r7@example.org"] == "permanent"
        transient = {a for a, o in outcome.items() if o == "transient"}
        assert len(transient) == 500
        # the next run sends exactly those, once
        due = ledger.to_send(DATE, [p.email for p in people])
        assert set(due) == transient
        send_a_day(postmark(fake), [p for p in people if p.email in transient], ledger)
        outcome = check_day(ledger, fake, people)
    assert {a for a, o in outcome.items() if o != "sent"} == {"r7@example.org"}


def test_a_day_through_resend(tmp_path: Path) -> None:
    fake = FakeResend()
    fake.faults = [None, garbled_after_sending(fake)]
    people = readers(250, "bad@example.invalid")
    with Ledger(f"sqlite:///{tmp_path / 'r.db'}") as ledger:
        send_a_day(resend(fake), people, ledger)
        outcome = check_day(ledger, fake, people)
    assert outcome.pop("bad@example.invalid") == "permanent"
    assert set(outcome.values()) == {"sent"}


def test_a_day_through_ses(tmp_path: Path) -> None:
    people = readers(120)
    stub = SesStub(
        {
            "r3@example.org": [ses_error("TooManyRequestsException", "Maximum sending rate", 429)],
            "r4@example.org": [ses_error("MessageRejected", "Illegal address")],
        }
    )
    backend = SesBackend(client=stub, from_address="digest@papers.example", options=options())
    with Ledger(f"sqlite:///{tmp_path / 'ses.db'}") as ledger:
        send_a_day(backend, people, ledger)
        rows = ledger.deliveries(DATE)
    took = [c["Destination"]["ToAddresses"][0] for c in stub.calls]
    assert sorted(set(took)) == sorted(p.email for p in people)
    assert took.count("r3@example.org") == 2 and len(took) == 121
    assert rows["r4@example.org"].status == "failed" and rows["r4@example.org"].permanent
    sent = {a for a, r in rows.items() if r.status == "sent"}
    assert sent == {p.email for p in people} - {"r4@example.org"}
    assert len({rows[a].provider_id for a in sent}) == len(sent)


# --------------------------------------------------------------------------- the CLI


@pytest.mark.parametrize(
    ("backend", "fake", "fix", "said"),
    [
        (
            "sendgrid",
            FakeSendGrid(verified=()),
            lambda f: setattr(f, "verified", ("digest@papers.example",)),
            "error: sendgrid: the sender is not verified: from: The from address does not "
            "match a verified Sender Identity.",
        ),
        (
            "postmark",
            FakePostmark(streams={"broadcast": "Postmark"}),
            lambda f: f.streams.update(broadcast="Custom"),
            "error: postmark: stream 'broadcast' lets Postmark manage unsubscribes",
        ),
        (
            "mailgun",
            FakeMailgun(domains=()),
            lambda f: setattr(f, "domains", ("mg.papers.example",)),
            "error: mailgun: domain 'mg.papers.example' not found at http://127.0.0.1:",
        ),
        (
            "resend",
            FakeResend(verified_domains=()),
            lambda f: setattr(f, "verified_domains", ("papers.example",)),
            "error: resend: HTTP 403: validation_error: The papers.example domain is not verified.",
        ),
    ],
)
def test_cli_account_wide_error_is_one_line_then_the_rerun_sends_everyone_once(
    backend: str,
    fake: FakeProvider,
    fix: Callable[[FakeProvider], None],
    said: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in list(__import__("os").environ):
        if name.startswith("NEWSLETTER_"):
            monkeypatch.delenv(name)
    people = readers(150)
    listing = "".join(f"  - email: {p.email}\n    name: {p.name}\n" for p in people)
    (tmp_path / "subscribers.yaml").write_text(f"subscribers:\n{listing}", encoding="utf-8")
    with serve(fake) as url:
        for name, value in {
            "BACKEND": backend,
            "BASE_URL": url,
            "API_KEY": KEY,
            "DOMAIN": "mg.papers.example",
            "MAX_ATTEMPTS": "2",
        }.items():
            monkeypatch.setenv(f"NEWSLETTER_DELIVERY__{name}", value)
        monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "test-secret-0123456789abcdef0123456")
        monkeypatch.setenv("NEWSLETTER_SENDER__FROM", "Daily Papers <digest@papers.example>")
        monkeypatch.setenv("NEWSLETTER_SENDER__LIST_ID", "Daily Papers <daily.papers.example>")
        monkeypatch.setenv("NEWSLETTER_DIGEST__BASE_URL", "https://papers.example")
        monkeypatch.setenv("NEWSLETTER_STATE", f"sqlite:///{tmp_path / 'state.db'}")
        first = CliRunner().invoke(cli, ["send", "--date", "2026-11-25"])
        assert first.exit_code == 2, first.output
        errors = [line for line in first.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and errors[0].startswith(said), first.output
        assert "Traceback" not in first.output
        assert KEY not in first.output
        fix(fake)
        second = CliRunner().invoke(cli, ["send", "--date", "2026-11-25"])
    assert second.exit_code == 0, second.output
    assert "sent=150" in second.output or "queued=150" in second.output, second.output
    assert sorted(fake.delivered) == sorted(p.email for p in people)
    assert set(fake.delivered.values()) == {1}
