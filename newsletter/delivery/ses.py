"""Amazon SES v2 ``SendEmail`` with the raw MIME message (boto3, an optional extra).

One API call per subscriber (``Content.Raw.Data`` is our message, DKIM header and
List-Unsubscribe included), ``Destination.ToAddresses`` the one address. Credentials
come from boto3's usual chain (environment, profile, instance role); ``delivery.region``
picks the AWS region. boto3 is imported only when this backend is built.

Error codes (``ClientError.response["Error"]["Code"]``) map to results:
throttling / 5xx -> transient; ``MessageRejected`` and other 4xx -> permanent;
credential errors -> :class:`AuthError`; a paused or suspended account -> DeliveryError.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from newsletter.config import Settings
from newsletter.delivery.base import Backend, BackendOptions
from newsletter.errors import AuthError, ConfigError, DeliveryError
from newsletter.message import MessageTemplate, Recipient, split_mailbox
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
_STOP_CODES = frozenset({"AccountSuspendedException", "SendingPausedException"})
_TRANSIENT_CODES = frozenset(
    {
        "TooManyRequestsException",
        "LimitExceededException",
        "Throttling",
        "ThrottlingException",
        "ServiceUnavailable",
    }
)
_INVALID_CODES = frozenset(
    {"BadRequestException", "MailFromDomainNotVerifiedException", "NotFoundException"}
)


class SesBackend(Backend):
    name = "ses"
    batch_size = SES_BATCH

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
        for recipient in batch:
            raw = self.fill(template, recipient)
            if isinstance(raw, SendResult):
                yield raw
                continue
            self.limiter.acquire()
            yield self._send_one(recipient.email, raw)

    def _send_one(self, email: str, raw: bytes) -> SendResult:
        try:
            answer = self.client.send_email(
                FromEmailAddress=self.from_address,
                Destination={"ToAddresses": [email]},
                Content={"Raw": {"Data": raw}},
            )
        except Exception as exc:  # botocore's errors, without importing botocore
            return self._failure(email, exc)
        return SendResult(email, SendStatus.QUEUED, message_id=str(answer.get("MessageId")))

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
            return SendResult(email, SendStatus.REJECTED, error=message)
        if code in _INVALID_CODES:
            return SendResult(email, SendStatus.INVALID, error=message)
        return SendResult(email, SendStatus.FAILED, error=message)
