"""HTTP providers against httpx.MockTransport: method, URL, auth, body, errors."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from newsletter.config import SenderSettings, Settings, load_settings
from newsletter.delivery import make_backend
from newsletter.delivery.base import BackendOptions, RetryPolicy
from newsletter.delivery.http import HttpBackend, retry_after_seconds
from newsletter.delivery.mailgun import MailgunBackend
from newsletter.delivery.postmark import PostmarkBackend
from newsletter.delivery.resend import ResendBackend
from newsletter.delivery.sendgrid import SendGridBackend
from newsletter.errors import AuthError, ConfigError
from newsletter.message import MessageTemplate, Recipient, build_template
from newsletter.models import SendStatus
from tests.doubles import sample_rendered

DATE = dt.date(2026, 11, 25)
NOW = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
SENDER = SenderSettings(
    from_="Daily Papers <digest@papers.example>",
    reply_to="editors@papers.example",
    list_id="Daily <daily.papers.example>",
)
KEY = "key-SECRET-1234567890"

Handler = Callable[[httpx.Request], httpx.Response]


def template() -> MessageTemplate:
    return build_template(sample_rendered(), sender=SENDER, date=DATE, now=NOW)


def recipients(tpl: MessageTemplate, n: int) -> list[Recipient]:
    out = []
    for i in range(n):
        address = f"u{i}@example.org"
        name = "José" if i == 0 else f"User {i}"
        out.append(
            tpl.recipient(
                address,
                name,
                {
                    "name": name,
                    "email": address,
                    "unsubscribe_url": f"https://papers.example/unsubscribe?token=t{i}&a=1",
                    "preferences_url": f"https://papers.example/preferences?token=p{i}",
                    "feedback_url": "https://papers.example/f/" + "F" * 36,
                },
            )
        )
    return out


class Recorder:
    """A MockTransport handler answering from a script and keeping the requests."""

    def __init__(self, *answers: httpx.Response | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return answer(request) if callable(answer) else answer


def build(cls: type[HttpBackend], recorder: Recorder, sleeps: list[float], **kwargs: Any) -> Any:
    options = BackendOptions(retry=RetryPolicy(max_attempts=3, deadline=600), sleep=sleeps.append)
    client = httpx.Client(transport=httpx.MockTransport(recorder))
    return cls(api_key=KEY, client=client, options=options, **kwargs)


def body(request: httpx.Request) -> Any:
    return json.loads(request.content)


# --------------------------------------------------------------------------- SendGrid


def test_sendgrid_wire_format_and_batching() -> None:
    rec = Recorder(httpx.Response(202, headers={"X-Message-Id": "sg-1"}))
    sleeps: list[float] = []
    tpl = template()
    people = recipients(tpl, 1001)
    with build(SendGridBackend, rec, sleeps) as backend:
        results = backend.send(tpl, people)
    assert [len(body(r)["personalizations"]) for r in rec.requests] == [1000, 1]
    request = rec.requests[0]
    assert request.method == "POST"
    assert str(request.url) == "https://api.sendgrid.com/v3/mail/send"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["Content-Type"] == "application/json"
    payload = body(request)
    assert payload["from"] == {"email": "digest@papers.example", "name": "Daily Papers"}
    assert payload["reply_to"] == {"email": "editors@papers.example"}
    assert payload["subject"] == "Daily Papers — 2026-11-25: Robotics"
    assert [c["type"] for c in payload["content"]] == ["text/plain", "text/html"]
    assert payload["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    first = payload["personalizations"][0]
    assert first["to"] == [{"email": "u0@example.org", "name": "José"}]
    assert first["headers"]["List-Unsubscribe"].startswith(
        "<https://papers.example/unsubscribe?token=t0&a=1>, <mailto:"
    )
    assert first["headers"]["Message-ID"] == people[0].message_id
    # substituting the tags gives exactly each subscriber's own parts
    html, text = payload["content"][1]["value"], payload["content"][0]["value"]
    for tag, value in first["substitutions"].items():
        html, text = html.replace(tag, value), text.replace(tag, value)
    assert (html, text) == tpl.parts(people[0])
    assert "Hello Jos&#233;," in html
    assert len(results) == 1001 and all(r.status == SendStatus.QUEUED for r in results)
    assert results[0].message_id == "sg-1"


def test_sendgrid_429_retry_after_then_ok() -> None:
    rec = Recorder(
        httpx.Response(
            429, headers={"Retry-After": "7"}, json={"errors": [{"message": "too many"}]}
        ),
        httpx.Response(202, headers={"X-Message-Id": "sg-2"}),
    )
    sleeps: list[float] = []
    tpl = template()
    with build(SendGridBackend, rec, sleeps) as backend:
        results = backend.send(tpl, recipients(tpl, 3))
    assert len(rec.requests) == 2
    assert sleeps and sleeps[0] >= 7.0
    assert all(r.status == SendStatus.QUEUED and r.attempts == 2 for r in results)


def test_sendgrid_400_is_permanent_for_the_batch() -> None:
    error = {
        "errors": [
            {
                "message": "Does not contain a valid address.",
                "field": "personalizations.0.to.0.email",
            }
        ]
    }
    rec = Recorder(httpx.Response(400, json=error))
    sleeps: list[float] = []
    tpl = template()
    with build(SendGridBackend, rec, sleeps) as backend:
        results = backend.send(tpl, recipients(tpl, 2))
    assert len(rec.requests) == 1 and sleeps == []
    assert all(r.status == SendStatus.INVALID and not r.transient for r in results)
    assert "personalizations.0.to.0.email: Does not contain a valid address." in (
        results[0].error or ""
    )


@pytest.mark.parametrize("status", [401, 403])
def test_sendgrid_bad_key_stops_with_auth_error(status: int) -> None:
    rec = Recorder(
        httpx.Response(
            status, json={"errors": [{"message": "The provided authorization grant is invalid"}]}
        )
    )
    tpl = template()
    with build(SendGridBackend, rec, []) as backend, pytest.raises(AuthError) as info:
        backend.send(tpl, recipients(tpl, 2))
    assert KEY not in str(info.value) and KEY not in repr(backend)
    assert str(status) in str(info.value)


# --------------------------------------------------------------------------- Mailgun


def test_mailgun_wire_format() -> None:
    rec = Recorder(
        httpx.Response(
            200, json={"id": "<20261125.1@mg.papers.example>", "message": "Queued. Thank you."}
        )
    )
    tpl = template()
    people = recipients(tpl, 3)
    with build(MailgunBackend, rec, [], domain="mg.papers.example") as backend:
        results = backend.send(tpl, people)
    (request,) = rec.requests
    assert request.method == "POST"
    assert str(request.url) == "https://api.mailgun.net/v3/mg.papers.example/messages"
    assert (
        request.headers["Authorization"]
        == "Basic " + base64.b64encode(f"api:{KEY}".encode()).decode()
    )
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = parse_qs(request.content.decode(), keep_blank_values=True)
    assert form["to"] == [
        "José <u0@example.org>",
        "User 1 <u1@example.org>",
        "User 2 <u2@example.org>",
    ]
    assert form["from"] == ["Daily Papers <digest@papers.example>"]
    assert form["h:List-Unsubscribe"] == ["%recipient.list_unsubscribe%"]
    assert form["h:List-Unsubscribe-Post"] == ["List-Unsubscribe=One-Click"]
    assert form["h:Reply-To"] == ["editors@papers.example"]
    variables = json.loads(form["recipient-variables"][0])
    assert set(variables) == {"u0@example.org", "u1@example.org", "u2@example.org"}
    html, text = form["html"][0], form["text"][0]
    for key, value in variables["u0@example.org"].items():
        html = html.replace(f"%recipient.{key}%", value)
        text = text.replace(f"%recipient.{key}%", value)
    assert (html, text) == tpl.parts(people[0])
    assert variables["u1@example.org"]["list_unsubscribe"].startswith(
        "<https://papers.example/unsubscribe?token=t1"
    )
    assert all(r.status == SendStatus.QUEUED for r in results)
    assert results[0].message_id == "<20261125.1@mg.papers.example>"


def test_mailgun_eu_region_and_500_retry(tmp_path: Any) -> None:
    settings = load_settings(
        None,
        env={
            "NEWSLETTER_DELIVERY__BACKEND": "mailgun",
            "NEWSLETTER_DELIVERY__DOMAIN": "mg.papers.example",
            "NEWSLETTER_DELIVERY__REGION": "eu",
            "NEWSLETTER_DELIVERY__API_KEY": KEY,
        },
    )
    rec = Recorder(
        httpx.Response(500, text="Internal Server Error"),
        httpx.Response(200, json={"id": "<x>", "message": "Queued. Thank you."}),
    )
    sleeps: list[float] = []
    client = httpx.Client(transport=httpx.MockTransport(rec))
    backend = make_backend(settings, client=client, options=BackendOptions(sleep=sleeps.append))
    tpl = template()
    results = backend.send(tpl, recipients(tpl, 1))
    assert str(rec.requests[0].url) == "https://api.eu.mailgun.net/v3/mg.papers.example/messages"
    assert len(rec.requests) == 2 and len(sleeps) == 1
    assert results[0].status == SendStatus.QUEUED


def test_mailgun_needs_a_domain() -> None:
    with pytest.raises(ConfigError, match=r"delivery\.domain"):
        MailgunBackend(api_key=KEY, domain=None)


def test_mailgun_forbidden_plain_text() -> None:
    rec = Recorder(httpx.Response(401, text="Forbidden"))
    tpl = template()
    with (
        build(MailgunBackend, rec, [], domain="mg.example") as backend,
        pytest.raises(AuthError, match="Forbidden"),
    ):
        backend.send(tpl, recipients(tpl, 1))


# --------------------------------------------------------------------------- Postmark


def test_postmark_wire_format_and_per_message_errors_on_200() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        messages = body(request)
        out = []
        for i, m in enumerate(messages):
            if i == 1:
                out.append(
                    {
                        "ErrorCode": 406,
                        "Message": "You tried to send to an inactive recipient.",
                        "To": m["To"],
                    }
                )
            elif i == 2:
                out.append({"ErrorCode": 300, "Message": "Invalid 'To' address.", "To": m["To"]})
            else:
                out.append({"ErrorCode": 0, "Message": "OK", "MessageID": f"pm-{i}", "To": m["To"]})
        return httpx.Response(200, json=out)

    rec = Recorder(answer)
    tpl = template()
    people = recipients(tpl, 4)
    with build(PostmarkBackend, rec, [], unsubscribe="postmark") as backend:
        results = backend.send(tpl, people)
    (request,) = rec.requests
    assert str(request.url) == "https://api.postmarkapp.com/email/batch"
    assert request.headers["X-Postmark-Server-Token"] == KEY
    assert request.headers["Accept"] == "application/json"
    first = body(request)[0]
    assert first["From"] == "Daily Papers <digest@papers.example>"
    assert first["To"] == "José <u0@example.org>"
    assert first["MessageStream"] == "broadcast"
    assert (first["HtmlBody"], first["TextBody"]) == tpl.parts(people[0])
    headers = {h["Name"]: h["Value"] for h in first["Headers"]}
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["Message-ID"] == people[0].message_id
    statuses = [r.status for r in sorted(results, key=lambda r: r.email)]
    assert statuses == [
        SendStatus.QUEUED,
        SendStatus.REJECTED,
        SendStatus.INVALID,
        SendStatus.QUEUED,
    ]
    assert all(not r.transient for r in results)


def test_postmark_batches_of_500_and_per_message_rate_limit_retried() -> None:
    calls = {"n": 0}

    def answer(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        messages = body(request)
        out = []
        for i, m in enumerate(messages):
            if calls["n"] == 1 and i == 0:
                out.append({"ErrorCode": 429, "Message": "Rate limit exceeded", "To": m["To"]})
            else:
                out.append(
                    {
                        "ErrorCode": 0,
                        "Message": "OK",
                        "MessageID": f"pm-{calls['n']}-{i}",
                        "To": m["To"],
                    }
                )
        return httpx.Response(200, json=out)

    rec = Recorder(answer)
    sleeps: list[float] = []
    tpl = template()
    with build(PostmarkBackend, rec, sleeps, unsubscribe="postmark") as backend:
        results = backend.send(tpl, recipients(tpl, 501))
    assert [len(body(r)) for r in rec.requests] == [500, 1, 1]
    assert len(sleeps) == 1
    assert len(results) == 501 and all(r.status == SendStatus.QUEUED for r in results)
    assert next(r for r in results if r.email == "u0@example.org").attempts == 2


def test_postmark_422_whole_request() -> None:
    rec = Recorder(httpx.Response(422, json={"ErrorCode": 300, "Message": "Invalid email request"}))
    tpl = template()
    with build(PostmarkBackend, rec, [], unsubscribe="postmark") as backend:
        results = backend.send(tpl, recipients(tpl, 2))
    assert all(
        r.status == SendStatus.INVALID and r.error == "HTTP 422: 300: Invalid email request"
        for r in results
    )


def test_postmark_bad_token() -> None:
    rec = Recorder(
        httpx.Response(401, json={"ErrorCode": 10, "Message": "Bad or missing Server API token"})
    )
    tpl = template()
    with (
        build(PostmarkBackend, rec, [], unsubscribe="postmark") as backend,
        pytest.raises(AuthError, match="Bad or missing"),
    ):
        backend.send(tpl, recipients(tpl, 1))


# --------------------------------------------------------------------------- Resend


def test_resend_wire_format_batches_and_permissive_errors() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        emails = body(request)
        errors = [{"index": 1, "message": "Invalid `to` field."}] if len(emails) > 1 else []
        data = [{"id": f"re-{i}"} for i in range(len(emails)) if i != 1 or not errors]
        return httpx.Response(200, json={"data": data, "errors": errors})

    rec = Recorder(answer)
    tpl = template()
    people = recipients(tpl, 101)
    with build(ResendBackend, rec, []) as backend:
        results = backend.send(tpl, people)
    assert [len(body(r)) for r in rec.requests] == [100, 1]
    request = rec.requests[0]
    assert str(request.url) == "https://api.resend.com/emails/batch"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["x-batch-validation"] == "permissive"
    assert request.headers["Idempotency-Key"].startswith("nl-")
    first = body(request)[0]
    assert first["from"] == "Daily Papers <digest@papers.example>"
    assert first["to"] == ["José <u0@example.org>"]
    assert first["reply_to"] == ["editors@papers.example"]
    assert (first["html"], first["text"]) == tpl.parts(people[0])
    assert first["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    by_email = {r.email: r for r in results}
    assert by_email["u1@example.org"].status == SendStatus.INVALID
    assert by_email["u0@example.org"].message_id == "re-0"
    assert by_email["u2@example.org"].message_id == "re-2"
    assert by_email["u100@example.org"].message_id == "re-0"


def test_resend_rate_limit_then_timeout_then_ok() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    rec = Recorder(
        httpx.Response(
            429,
            headers={"retry-after": "2"},
            json={"statusCode": 429, "name": "rate_limit_exceeded", "message": "Too many requests"},
        ),
        timeout,
        httpx.Response(200, json={"data": [{"id": "re-x"}]}),
    )
    sleeps: list[float] = []
    tpl = template()
    with build(ResendBackend, rec, sleeps) as backend:
        results = backend.send(tpl, recipients(tpl, 1))
    assert len(rec.requests) == 3 and len(sleeps) == 2 and sleeps[0] >= 2.0
    assert results[0].status == SendStatus.QUEUED and results[0].attempts == 3


def test_persistent_5xx_gives_up_transient() -> None:
    rec = Recorder(httpx.Response(503, text="unavailable"))
    sleeps: list[float] = []
    tpl = template()
    with build(ResendBackend, rec, sleeps) as backend:
        results = backend.send(tpl, recipients(tpl, 2))
    assert len(rec.requests) == 3  # max_attempts
    assert all(r.status == SendStatus.FAILED and r.transient for r in results)
    assert "gave up after 3 attempt(s)" in (results[0].error or "")


def test_deadline_stops_retrying() -> None:
    rec = Recorder(httpx.Response(503, text="unavailable"))
    tpl = template()
    fake = [0.0]

    def sleep(seconds: float) -> None:
        fake[0] += seconds

    options = BackendOptions(
        retry=RetryPolicy(max_attempts=50, deadline=10.0), clock=lambda: fake[0], sleep=sleep
    )
    backend = ResendBackend(
        api_key=KEY, client=httpx.Client(transport=httpx.MockTransport(rec)), options=options
    )
    results = backend.send(tpl, recipients(tpl, 1))
    assert len(rec.requests) <= 4 and fake[0] <= 10.0
    assert results[0].status == SendStatus.FAILED and results[0].transient


def test_retry_after_http_date() -> None:
    now = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
    assert retry_after_seconds("Wed, 25 Nov 2026 08:00:30 GMT", now=now) == 30.0
    assert retry_after_seconds("12", now=now) == 12.0
    assert retry_after_seconds("soon", now=now) is None


def test_missing_api_key_names_the_variable() -> None:
    settings: Settings = load_settings(None, env={"NEWSLETTER_DELIVERY__BACKEND": "resend"})
    with pytest.raises(ConfigError, match="NEWSLETTER_DELIVERY__API_KEY"):
        make_backend(settings)


def test_api_key_stays_out_of_errors_and_logs_over_a_real_socket(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import http.server
    import threading

    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.headers.get("Authorization", ""))
            self.rfile.read(int(self.headers["Content-Length"]))
            payload = b'{"errors": [{"message": "The provided authorization grant is invalid"}]}'
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    caplog.set_level("DEBUG")
    try:
        backend = SendGridBackend(
            api_key=KEY, base_url=f"http://127.0.0.1:{server.server_address[1]}"
        )
        tpl = template()
        with backend, pytest.raises(AuthError) as info:
            backend.send(tpl, recipients(tpl, 1))
    finally:
        server.shutdown()
        server.server_close()
    assert seen == [f"Bearer {KEY}"]
    assert KEY not in str(info.value) and KEY not in repr(backend)
    assert "HTTP Request: POST" in caplog.text and "401" in caplog.text  # logs were captured
    assert KEY not in caplog.text
