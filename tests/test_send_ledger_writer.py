"""How send records results: bursts in one transaction, SMTP acceptances at once."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from newsletter.config import SenderSettings
from newsletter.errors import LedgerError
from newsletter.ledger import Ledger
from newsletter.models import SendResult, SendStatus, Subscriber
from newsletter.render import RenderedDigest
from newsletter.send import LedgerWriter, subscriber_values
from tests.doubles import deliver, plain_smtp_backend, sample_rendered, smtp_server
from tests.scale_helpers import RecordingSink

DATE = dt.date(2026, 11, 25)
NOW = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)


class CountingLedger(Ledger):
    """A real ledger that counts record() calls and can hold the writer back."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.calls: list[int] = []
        self.gate = threading.Event()
        self.gate.set()

    def record(self, day: dt.date, results: Iterable[SendResult]) -> None:
        self.gate.wait(10)
        batch = list(results)
        self.calls.append(len(batch))
        super().record(day, batch)


def test_a_burst_queued_behind_a_write_goes_in_one_transaction(tmp_path: Path) -> None:
    emails = [f"r{i}@example.org" for i in range(1001)]
    with CountingLedger(f"sqlite:///{tmp_path / 'state.db'}") as ledger:
        ledger.mark_pending(DATE, dict.fromkeys(emails))
        writer = LedgerWriter(ledger, DATE)
        ledger.gate.clear()
        writer.put(SendResult(emails[0], SendStatus.SENT))
        for email in emails[1:]:
            writer.put(SendResult(email, SendStatus.QUEUED, message_id="x"))
        ledger.gate.set()
        writer.close()
        assert sum(ledger.calls) == 1001
        assert len(ledger.calls) <= 3
        assert ledger.counts(DATE) == {"sent": 1001}


def test_close_writes_the_rest_and_reraises_a_ledger_error(tmp_path: Path) -> None:
    class Broken(Ledger):
        def record(self, day: dt.date, results: Iterable[SendResult]) -> None:
            raise LedgerError("state database: disk I/O error")

    with Broken(f"sqlite:///{tmp_path / 'state.db'}") as ledger:
        writer = LedgerWriter(ledger, DATE)
        writer.put(SendResult("a@example.org", SendStatus.SENT))
        with pytest.raises(LedgerError, match="disk I/O error"):
            writer.close()


@dataclass(frozen=True)
class OneVariant:
    rendered: RenderedDigest
    subscribers: tuple[Subscriber, ...]


def test_smtp_results_are_recorded_before_the_next_message_goes_out(tmp_path: Path) -> None:
    """The at-least-once window: a message the server took is 'sent' in the ledger
    before the same connection starts the next one."""
    state = tmp_path / "state.db"
    people = tuple(Subscriber(f"r{i}@example.org", name=f"R {i}") for i in range(12))
    behind: list[tuple[int, str]] = []

    def check(count: int) -> None:
        # called while message ``count`` is being accepted: every earlier one is recorded
        with sqlite3.connect(state) as db:
            rows = dict(db.execute("SELECT email, status FROM deliveries").fetchall())
        for earlier in people[: count - 1]:
            if rows.get(earlier.email) != "sent":
                behind.append((count, earlier.email))

    sink = RecordingSink(on_message=check)
    with smtp_server(sink) as port:
        backend = plain_smtp_backend(port)
        with backend, Ledger(f"sqlite:///{state}") as ledger:
            report, _ = deliver(
                [OneVariant(sample_rendered(), people)],
                date=DATE,
                backend=backend,
                sender=SenderSettings(from_="Daily <digest@papers.example>"),
                values_for=lambda s: subscriber_values(
                    s, base_url="https://papers.example", secret=b"k", list_id="L", date=DATE
                ),
                now=lambda: NOW,
                ledger=ledger,
            )
            assert ledger.counts(DATE) == {"sent": 12}
    assert report.delivered == 12
    assert len(sink.snapshot()) == 12
    assert behind == []
