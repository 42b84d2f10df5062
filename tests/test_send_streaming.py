"""send_day streams the list from the state database a batch at a time (as listmonk does):
with a small batch size every reader is claimed and sent exactly once, and nothing is
kept per reader once their batch went out."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import pytest

from newsletter.config import load_settings
from newsletter.delivery.memory import MemoryBackend
from newsletter.state import State
from tests.doubles import EXAMPLE_TOPICS

DATE = dt.date(2026, 11, 25)
NOW = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
READERS = 14
BATCH = 5
"""Rows read per query: three batches for READERS."""


class SmallBatches(MemoryBackend):
    """A backend batch of three: variants' groups go out while the list is still read."""

    batch_size: ClassVar[int] = 3


@pytest.mark.parametrize("buffered", [10_000, 4], ids=["buffers-fill", "fullest-goes-early"])
def test_a_list_read_in_three_batches_is_sent_to_everyone_exactly_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, buffered: int
) -> None:
    """``buffered``: most readers waiting for their variant's backend batch (beyond it the
    fullest variant's readers go out early)."""
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    settings = load_settings(
        None,
        env={
            "NEWSLETTER_STATE": state_url,
            "NEWSLETTER_SUBSCRIBERS": "state",
            "NEWSLETTER_SECRET_KEY": "k" * 32,
        },
    )
    entries: list[dict[str, Any]] = [
        {"email": f"r{i}@example.org", "name": f"R {i}", "topics": [EXAMPLE_TOPICS[i % 3]]}
        for i in range(READERS)
    ]
    entries.append({"email": "off@example.org", "active": False})
    with State(state_url) as state:
        state.add_subscribers(entries)
    reads: list[int] = []
    batch_of = State.subscriber_batch

    def counted(self: State, *, after: int = 0, limit: int = BATCH) -> list[Any]:
        rows = batch_of(self, after=after, limit=limit)
        reads.append(len(rows))
        return rows

    monkeypatch.setattr("newsletter.state.SUBSCRIBER_BATCH", BATCH)
    monkeypatch.setattr("newsletter.send.BUFFERED_READERS", buffered)
    monkeypatch.setattr(State, "subscriber_batch", counted)

    backend = SmallBatches()
    from newsletter.send import send_day

    report = send_day(settings, DATE, source="sample", backend=backend, now=lambda: NOW)
    # the census and the send pass each read the list in three batches (and one empty read)
    assert reads == [BATCH, BATCH, READERS + 1 - 2 * BATCH, 0] * 2
    copies = Counter(m.email for m in backend.outbox)
    assert set(copies) == {f"r{i}@example.org" for i in range(READERS)}
    assert set(copies.values()) == {1}
    assert report.counts == {"sent": READERS} and report.skipped_readers == {"inactive": 1}
    subjects = {m.raw.split(b"\r\nSubject: ", 1)[1].split(b"\r\n", 1)[0] for m in backend.outbox}
    assert len(subjects) == 3  # one variant per topic, each sent in groups of three
    with State(state_url) as state:
        assert state.counts(DATE) == {"sent": READERS}

    again = SmallBatches()
    rerun = send_day(settings, DATE, source="sample", backend=again, now=lambda: NOW)
    assert again.outbox == [] and rerun.already_sent == READERS


def test_a_report_counts_every_result_and_keeps_the_first_problems() -> None:
    from newsletter.models import SendResult, SendStatus
    from newsletter.send import MAX_KEPT_PROBLEMS, Tally

    tally = Tally()
    for i in range(MAX_KEPT_PROBLEMS + 50):
        tally.add(SendResult(f"bad{i}@example.org", SendStatus.INVALID, error="no"))
        tally.add(SendResult(f"later{i}@example.org", SendStatus.FAILED, transient=True))
        tally.add(SendResult(f"ok{i}@example.org", SendStatus.SENT))
    report = tally.report(DATE)
    n = MAX_KEPT_PROBLEMS + 50
    assert report.counts == {"invalid": n, "failed": n, "sent": n}
    assert report.delivered == n and report.failed == 2 * n and report.failed_permanently == n
    assert report.not_delivered == 2 * n
    assert len(report.problems) == MAX_KEPT_PROBLEMS
    assert report.problems[:2] == (
        SendResult("bad0@example.org", SendStatus.INVALID, error="no"),
        SendResult("later0@example.org", SendStatus.FAILED, transient=True),
    )
