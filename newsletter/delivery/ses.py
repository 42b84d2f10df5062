"""Amazon SES v2 ``SendEmail`` with the raw MIME message (boto3, an optional extra).

One API call per subscriber (``Content.Raw.Data`` is our message, DKIM header and
List-Unsubscribe included), ``Destination.ToAddresses`` the one address. Credentials
come from boto3's usual chain (environment, profile, instance role); ``delivery.region``
picks the AWS region. boto3 is imported only when this backend is built.

Error codes (``ClientError.response["Error"]["Code"]``) map to results:
throttling / 5xx -> transient; ``MessageRejected`` and other 4xx -> permanent;
credential errors -> :class:`AuthError`; account-wide errors -> DeliveryError, which
stops the run with one line instead of failing every reader: a paused or suspended
account, ``MailFromDomainNotVerifiedException`` (the custom MAIL FROM domain's MX/SPF
records are missing), ``NotFoundException`` (an identity or configuration set that does
not exist), and ``MessageRejected`` "Email address is not verified" naming our sender.

DKIM and Message-ID, following Amazon SES's "Amazon SES header fields" and "Manual DKIM
signing" pages: SES replaces the ``Message-ID`` and ``Date`` headers of every message
(the new Message-ID is ``<MessageId@region.amazonses.com>``), so a signature over them
fails; :attr:`dkim_unsigned` leaves them out of our signature when ``delivery.dkim_key``
is set (SES's Easy DKIM, if set up for the domain, adds its own signature anyway). The
``MessageId`` SES returns is the result's ``message_id``, so the ledger keeps it as
``provider_id`` and SES bounce and complaint notifications (which carry it as
``mail.messageId``) map back to the reader. Our stable Message-ID does not survive SES,
so a resend after a crash is a new message to the receiver.

Tracking: SES adds open/click tracking and List-Unsubscribe only through a
configuration set (event destinations with tracking, or ``ListManagementOptions``); we
send with neither, so nothing is added (a default configuration set attached to the
identity in SES would still apply: leave tracking off there).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from newsletter.config import Settings
from newsletter.delivery.base import Backend, BackendOptions
from newsletter.errors import AuthError, ConfigError, DeliveryError
from newsletter.headers import split_mailbox
from newsletter.message import MessageTemplate, Recipient
from newsletter.models import SendResult, SendStatus

SES_BATCH = 50
"""Recipients per base-flow batch (each is still its own API call)."""

_AUTH_CODES = frozenset(
    {
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "ExpiredTokenException",
        "InvalidSignatureException",
        "MissingAuthenticationTokenException",
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "TooManyRequestsException",
        "LimitExceededException",
        "Throttling",
        "ThrottlingException",
        "ServiceUnavailable",
    }
)
_STOP_CODES = frozenset(
    {
        "AccountSuspendedException",
        "SendingPausedException",
        "MailFromDomainNotVerifiedException",
        "NotFoundException",
    }
)
"""Account-wide: nothing in the run can be sent."""
_INVALID_CODES = frozenset({"BadRequestException"})


class SesBackend(Backend):
    name = "ses"
    batch_size = SES_BATCH
    dkim_unsigned = frozenset({"message-id", "date"})

    def __init__(
        self, *, client: Any, from_address: str, options: BackendOptions | None = None
    ) -> None:
        super().__init__(options=options)
        self.client = client
        self.from_address = from_address

    @classmethod
    def from_settings(
        cls, settings: Settings, *, client: Any = None, options: BackendOptions | None = None
    ) -> SesBackend:
        if client is None:
            try:
                import boto3
            except ImportError:
                raise ConfigError(
                    "delivery.backend ses needs boto3: pip install 'newsletter[ses]'"
                ) from None
            client = boto3.client("sesv2", region_name=settings.delivery.region)
        return cls(
            client=client,
            from_address=split_mailbox(settings.sender.from_)[1],
            options=options or BackendOptions.from_settings(settings),
        )

    def send_batch(
        self, template: MessageTemplate, batch: Sequence[Recipient]
    ) -> Iterator[SendResult]:
        return self.send_each(template, batch, self._send_one)

    def _send_one(self, recipient: Recipient, raw: bytes) -> SendResult:
        self.limiter.acquire()
        email = recipient.email
        try:
            answer = self.client.send_email(
                FromEmailAddress=self.from_address,
                Destination={"ToAddresses": [email]},
                Content={"Raw": {"Data": raw}},
            )
        except Exception as exc:  # botocore's errors, without importing botocore
            return self._failure(email, exc)
        message_id = answer.get("MessageId") if isinstance(answer, dict) else None
        return SendResult(
            email, SendStatus.QUEUED, message_id=str(message_id) if message_id else None
        )

    def _failure(self, email: str, exc: Exception) -> SendResult:
        response = getattr(exc, "response", None)
        if not isinstance(response, dict):
            name = type(exc).__name__
            if name in {
                "EndpointConnectionError",
                "ConnectTimeoutError",
                "ReadTimeoutError",
                "ConnectionClosedError",
            }:
                return SendResult(email, SendStatus.FAILED, error=f"ses: {name}", transient=True)
            raise exc
        error = response.get("Error", {})
        code = str(error.get("Code", ""))
        message = f"ses: {code}: {error.get('Message', '')}"
        status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _AUTH_CODES:
            raise AuthError(
                f"SES refused the AWS credentials ({code}); check AWS_ACCESS_KEY_ID / AWS_PROFILE"
            )
        if code in _STOP_CODES:
            raise DeliveryError(message)
        if code in _TRANSIENT_CODES or status == 429 or status >= 500:
            return SendResult(email, SendStatus.FAILED, error=message, transient=True)
        if code == "MessageRejected":
            if self._sender_unverified(str(error.get("Message", ""))):
                raise DeliveryError(f"{message} (the sender {self.from_address} is not verified)")
            return SendResult(email, SendStatus.REJECTED, error=message)
        if code in _INVALID_CODES:
            return SendResult(email, SendStatus.INVALID, error=message)
        return SendResult(email, SendStatus.FAILED, error=message)

    def _sender_unverified(self, text: str) -> bool:
        """SES's "Email address is not verified" names the identities that failed the
        check: our From address or its domain there means nobody can be sent to."""
        if "not verified" not in text:
            return False
        sender = self.from_address.lower()
        named = {word.strip(".") for word in re.split(r"[\s,:;]+", text.lower())}
        return sender in named or sender.rsplit("@", 1)[-1] in named
