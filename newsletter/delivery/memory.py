"""The memory backend: keeps every message in a list (tests), or makes each and keeps none
(``--dry-run``)."""

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
    """Takes every message and keeps it in :attr:`outbox`, in send order; with ``keep``
    False, makes each one (a message that cannot be made still fails) and keeps none, so
    a dry run's memory stays flat whatever the list (kept, 100,000 digests of 65 KB
    would be 6.5 GB)."""

    name = "memory"
    batch_size = 1000

    def __init__(self, *, options: BackendOptions | None = None, keep: bool = True) -> None:
        super().__init__(options=options)
        self.keep = keep
        self.outbox: list[SentMessage] = []

    @classmethod
    def from_settings(
        cls, settings: Settings, *, options: BackendOptions | None = None, keep: bool = True
    ) -> MemoryBackend:
        return cls(options=options or BackendOptions.from_settings(settings), keep=keep)

    def send_batch(
        self, template: MessageTemplate, batch: Sequence[Recipient]
    ) -> Iterator[SendResult]:
        return self.send_each(template, batch, self._keep)

    def _keep(self, recipient: Recipient, raw: bytes) -> SendResult:
        if self.keep:
            self.outbox.append(SentMessage(recipient.email, recipient.message_id, raw))
        return SendResult(recipient.email, SendStatus.SENT, message_id=recipient.message_id)
