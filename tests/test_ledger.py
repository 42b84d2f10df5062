from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from pathlib import Path

import pytest

from newsletter.errors import LedgerError
from newsletter.ledger import Ledger
from newsletter.models import SendResult, SendStatus
from newsletter.state import parse_state_url

DAY = dt.date(2026, 11, 25)


def test_tables_are_created_with_wal(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "state.db"
    with Ledger(f"sqlite:///{db}"):
        pass
    con = sqlite3.connect(db)
    tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"deliveries", "sent_papers"} <= tables
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_pending_then_outcome(tmp_path: Path) -> None:
    stamps = iter(dt.datetime(2026, 11, 25, 8, m, tzinfo=dt.UTC) for m in range(10))
    with Ledger(f"sqlite:///{tmp_path / 's.db'}", now=lambda: next(stamps)) as ledger:
        ledger.mark_pending(DAY, {"a@x.org": "<1@d>", "b@x.org": "<2@d>", "c@x.org": "<3@d>"})
        rows = ledger.deliveries(DAY)
        assert {r.status for r in rows.values()} == {"pending"} and rows["a@x.org"].attempts == 1
        ledger.record(
            DAY,
            [
                SendResult("a@x.org", SendStatus.SENT, message_id="250 ok"),
                SendResult("b@x.org", SendStatus.REJECTED, error="550 no such user"),
                SendResult("c@x.org", SendStatus.FAILED, error="451 later", transient=True),
            ],
        )
        rows = ledger.deliveries(DAY)
        assert rows["a@x.org"].status == "sent" and rows["a@x.org"].provider_id == "250 ok"
        assert rows["a@x.org"].message_id == "<1@d>"
        assert rows["b@x.org"].status == "failed" and rows["b@x.org"].permanent
        assert rows["c@x.org"].status == "failed" and not rows["c@x.org"].permanent
        assert rows["a@x.org"].created_at == "2026-11-25T08:00:00+00:00"
        assert rows["a@x.org"].updated_at == "2026-11-25T08:01:00+00:00"
        everyone = ["a@x.org", "b@x.org", "c@x.org", "d@x.org"]
        assert ledger.to_send(DAY, everyone) == ["c@x.org", "d@x.org"]
        assert ledger.to_send(DAY, everyone, retry_failed=True) == ["b@x.org", "c@x.org", "d@x.org"]
        assert ledger.to_send(DAY + dt.timedelta(days=1), everyone) == everyone
        ledger.mark_pending(DAY, {"c@x.org": "<3@d>"})
        assert ledger.deliveries(DAY)["c@x.org"].attempts == 2
        assert ledger.counts(DAY) == {"sent": 1, "failed": 1, "pending": 1}


def test_a_pending_row_is_due_again(tmp_path: Path) -> None:
    with Ledger(f"sqlite:///{tmp_path / 's.db'}") as ledger:
        ledger.mark_pending(DAY, {"a@x.org": "<1@d>"})
    with Ledger(f"sqlite:///{tmp_path / 's.db'}") as ledger:  # the process died; a new run
        assert ledger.to_send(DAY, ["a@x.org"]) == ["a@x.org"]


def test_paper_keys_for_dedupe(tmp_path: Path) -> None:
    with Ledger(f"sqlite:///{tmp_path / 's.db'}") as ledger:
        ledger.record_papers(DAY - dt.timedelta(days=3), ["2511.00001", "2511.00002"])
        ledger.record_papers(DAY - dt.timedelta(days=1), ["2511.00003"])
        ledger.record_papers(DAY - dt.timedelta(days=1), ["2511.00003"])
        ledger.record_papers(DAY, ["2511.00004"])
        assert ledger.recent_paper_keys(DAY, 2) == {"2511.00003"}
        assert ledger.recent_paper_keys(DAY, 3) == {"2511.00001", "2511.00002", "2511.00003"}
        assert ledger.recent_paper_keys(DAY, 0) == set()


def test_threads_share_one_ledger(tmp_path: Path) -> None:
    with Ledger(f"sqlite:///{tmp_path / 's.db'}") as ledger:

        def work(k: int) -> None:
            for i in range(25):
                email = f"t{k}-{i}@x.org"
                ledger.mark_pending(DAY, {email: None})
                ledger.record(DAY, [SendResult(email, SendStatus.SENT)])

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert ledger.counts(DAY) == {"sent": 100}


@pytest.mark.parametrize("url", ["mysql://x/y", "sqlite:///", "sqlite:///a.db?mode=ro", " "])
def test_bad_state_urls(url: str) -> None:
    with pytest.raises(LedgerError):
        parse_state_url(url)


def test_unusable_database_is_a_ledger_error(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LedgerError, match="state database"):
        Ledger(f"sqlite:///{bad}")
