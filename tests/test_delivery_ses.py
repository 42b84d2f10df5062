"""The SES v2 backend: an injected client stub for the error mapping, moto for the real call."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from newsletter.config import SenderSettings, load_settings
from newsletter.delivery import make_backend
from newsletter.delivery.base import BackendOptions, RetryPolicy
from newsletter.delivery.ses import SesBackend
from newsletter.errors import AuthError, DeliveryError
from newsletter.message import MessageTemplate, Recipient, build_template
from newsletter.models import SendStatus
from tests.doubles import sample_rendered, slot_values

DATE = dt.date(2026, 11, 25)
NOW = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
SENDER = SenderSettings(from_="Daily Papers <digest@papers.example>")


def template() -> MessageTemplate:
    return build_template(sample_rendered(), sender=SENDER, date=DATE, now=NOW)


def people(tpl: MessageTemplate, *addresses: str) -> list[Recipient]:
    return [tpl.recipient(a, "", slot_values(a)) for a in addresses]


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"{code} happened"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "SendEmail",
    )


class StubClient:
    """Records send_email calls; answers from a per-address script of exceptions."""

    def __init__(self, script: dict[str, list[Exception]] | None = None) -> None:
        self.script = script or {}
        self.calls: list[dict[str, Any]] = []

    def send_email(self, **kwargs: Any) -> dict[str, str]:
        self.calls.append(kwargs)
        address = kwargs["Destination"]["ToAddresses"][0]
        pending = self.script.get(address)
        if pending:
            raise pending.pop(0)
        return {"MessageId": f"ses-{len(self.calls)}"}


def backend(client: StubClient, sleeps: list[float] | None = None) -> SesBackend:
    options = BackendOptions(
        retry=RetryPolicy(max_attempts=3), sleep=(sleeps if sleeps is not None else []).append
    )
    return SesBackend(client=client, from_address="digest@papers.example", options=options)


def test_raw_message_call_and_error_mapping() -> None:
    client = StubClient(
        {
            "throttled@x.org": [client_error("TooManyRequestsException", 429)],
            "rejected@x.org": [client_error("MessageRejected", 400)],
            "net@x.org": [
                EndpointConnectionError(endpoint_url="https://email.eu-west-1.amazonaws.com")
            ],
        }
    )
    sleeps: list[float] = []
    tpl = template()
    results = backend(client, sleeps).send(
        tpl, people(tpl, "ok@x.org", "throttled@x.org", "rejected@x.org", "net@x.org")
    )
    first = client.calls[0]
    assert first["FromEmailAddress"] == "digest@papers.example"
    assert first["Destination"] == {"ToAddresses": ["ok@x.org"]}
    msg = email.message_from_bytes(first["Content"]["Raw"]["Data"], policy=email.policy.default)
    assert msg["To"] == "ok@x.org" and msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    by_email = {r.email: r for r in results}
    assert (
        by_email["ok@x.org"].status == SendStatus.QUEUED
        and by_email["ok@x.org"].message_id == "ses-1"
    )
    assert (
        by_email["throttled@x.org"].status == SendStatus.QUEUED
        and by_email["throttled@x.org"].attempts == 2
    )
    assert by_email["net@x.org"].status == SendStatus.QUEUED
    assert by_email["rejected@x.org"].status == SendStatus.REJECTED
    assert "MessageRejected" in (by_email["rejected@x.org"].error or "")
    assert len(sleeps) == 1


@pytest.mark.parametrize(
    "code", ["InvalidClientTokenId", "SignatureDoesNotMatch", "AccessDeniedException"]
)
def test_credential_errors_stop_the_run(code: str) -> None:
    client = StubClient({"a@x.org": [client_error(code, 403)]})
    tpl = template()
    with pytest.raises(AuthError, match=code):
        backend(client).send(tpl, people(tpl, "a@x.org", "b@x.org"))
    assert len(client.calls) == 1


def test_paused_account_stops_the_run() -> None:
    client = StubClient({"a@x.org": [client_error("SendingPausedException", 400)]})
    tpl = template()
    with pytest.raises(DeliveryError, match="SendingPaused"):
        backend(client).send(tpl, people(tpl, "a@x.org"))


def test_through_boto3_and_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    moto = pytest.importorskip("moto")
    import boto3

    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(var, "testing")
    with moto.mock_aws():
        boto3.client("sesv2", region_name="eu-west-1").create_email_identity(
            EmailIdentity="papers.example"
        )
        settings = load_settings(
            None,
            env={
                "NEWSLETTER_DELIVERY__BACKEND": "ses",
                "NEWSLETTER_DELIVERY__REGION": "eu-west-1",
                "NEWSLETTER_SENDER__FROM": "Daily Papers <digest@papers.example>",
            },
        )
        ses = make_backend(settings)
        tpl = template()
        results = ses.send(tpl, people(tpl, "reader@example.org"))
    assert results[0].status == SendStatus.QUEUED and results[0].message_id
