"""The memory backend: keeps every message in a list (tests and ``--dry-run``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from newsletter.config import Settings
from newsletter.delivery.base import Backend, BackendOptions
from newsletter.message import MessageTemplate, Recipient
from newsletter.models import SendResult, SendStatus


@dataclass(frozen=True, slots=True)
class SentMessage:
    """One message the memory backend took."""

    email: str
    message_id: str
    raw: bytes


class MemoryBackend(Backend):
    """Takes every message and keeps it in :attr:`outbox`, in send order."""

    name = "memory"
    batch_size = 1000

    def __init__(self, *, options: BackendOptions | None = None) -> None:
        super().__init__(options=options)
        self.outbox: list[SentMessage] = []

    @classmethod
    def from_settings(
        cls, settings: Settings, *, options: BackendOptions | None = None
    ) -> MemoryBackend:
        return cls(options=options or BackendOptions.from_settings(settings))

    def send_batch(
        self, template: MessageTemplate, batch: Sequence[Recipient]
    ) -> Iterator[SendResult]:
        return self.send_each(template, batch, self._keep)

    def _keep(self, recipient: Recipient, raw: bytes) -> SendResult:
        self.outbox.append(SentMessage(recipient.email, recipient.message_id, raw))
        return SendResult(recipient.email, SendStatus.SENT, message_id=recipient.message_id)
