"""The outbox backend: one ``.eml`` file per message in a folder (the offline default).

File names are ``<date>-<hash of the address>.eml``: a rerun for the same day and
subscriber replaces the file instead of adding a second one. Each file is written
to a temporary name in the same folder and renamed into place, so a reader never
sees half a message.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from newsletter.config import Settings
from newsletter.delivery.base import Backend, BackendOptions
from newsletter.errors import DeliveryError
from newsletter.files import atomic_write
from newsletter.message import MessageTemplate, Recipient
from newsletter.models import SendResult, SendStatus


def eml_name(date_iso: str, email: str) -> str:
    """The outbox file name of one subscriber's message for one day."""
    digest = hashlib.sha256(email.lower().encode("utf-8")).hexdigest()[:16]
    return f"{date_iso}-{digest}.eml"


class OutboxBackend(Backend):
    """Writes each message as an ``.eml`` file into :attr:`folder`."""

    name = "outbox"
    batch_size = 1000

    def __init__(
        self, folder: str | os.PathLike[str], *, options: BackendOptions | None = None
    ) -> None:
        super().__init__(options=options)
        self.folder = Path(folder)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, options: BackendOptions | None = None
    ) -> OutboxBackend:
        return cls(
            settings.delivery.outbox, options=options or BackendOptions.from_settings(settings)
        )

    def send_batch(
        self, template: MessageTemplate, batch: Sequence[Recipient]
    ) -> Iterator[SendResult]:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeliveryError(f"outbox folder {self.folder}: {exc.strerror}") from None
        day = template.date.isoformat()

        def write(recipient: Recipient, raw: bytes) -> SendResult:
            path = self.folder / eml_name(day, recipient.email)
            try:
                atomic_write(path, raw)  # 0600: a message holds its address
            except OSError as exc:
                raise DeliveryError(f"outbox folder {self.folder}: {exc.strerror}") from None
            return SendResult(
                recipient.email,
                SendStatus.SENT,
                message_id=recipient.message_id,
                extra={"path": str(path)},
            )

        return self.send_each(template, batch, write)
