"""newsletter.send.LedgerWriter: results committed as they come, bursts in one transaction."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterable
from pathlib import Path

import pytest

from newsletter.errors import LedgerError
from newsletter.ledger import Ledger
from newsletter.models import SendResult, SendStatus
from newsletter.send import LedgerWriter

DATE = dt.date(2026, 11, 25)


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
