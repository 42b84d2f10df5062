"""The delivery ledger: what was sent to whom, per day (SQLite at the ``state`` URL).

One row per (day, subscriber address) in ``deliveries``:

============  ============================================================
status        ``pending`` (handed to the backend, outcome not yet known),
              ``sent`` (the server or API took it), ``failed``
permanent     1 when the failure will not go away by retrying (a 5xx, an
              invalid address); 0 for a transient failure given up on
attempts      how many times it was handed to the backend
provider_id   the provider's message id (or the SMTP server's reply)
message_id    our Message-ID (stable per subscriber and day)
last_error    the last error text
created_at, updated_at
============  ============================================================

A row is written ``pending`` (attempts + 1) before every attempt and updated with the
outcome right after it, so a rerun of a day sends to everyone whose row is not
``sent`` (and, unless asked, not permanently ``failed``).

The crash window: if the process dies after the server accepted a message but before
its row became ``sent``, the row stays ``pending`` and a rerun sends that subscriber
again. The window is at most the messages in flight when the process died (one per
SMTP connection, one API batch for HTTP providers). Such a resend carries the same
``Message-ID`` as the first copy, so mail clients thread the two as one and systems
that de-duplicate by Message-ID (Gmail among them) drop it; Resend batches also carry
an ``Idempotency-Key`` built from the Message-IDs, so Resend itself drops the replay.

``sent_papers`` keeps which paper keys went out each day, so a digest can leave out
papers already sent in the last ``digest.dedupe_days`` days.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from newsletter.errors import LedgerError
from newsletter.models import DELIVERED, SendResult, SendStatus

SQLITE_PREFIX = "sqlite:///"
"""The one state URL scheme: ``sqlite:///relative/path.db`` or ``sqlite:////abs/path.db``."""

BUSY_TIMEOUT_SECONDS = 30.0
"""How long a write waits for another process holding the database."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    day TEXT NOT NULL,
    email TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    permanent INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    provider_id TEXT,
    message_id TEXT,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (day, email)
);
CREATE TABLE IF NOT EXISTS sent_papers (
    day TEXT NOT NULL,
    paper_key TEXT NOT NULL,
    PRIMARY KEY (day, paper_key)
);
"""

PENDING = "pending"
SENT = "sent"
FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One ledger row."""

    day: dt.date
    email: str
    status: str
    permanent: bool
    attempts: int
    provider_id: str | None
    message_id: str | None
    last_error: str | None
    created_at: str
    updated_at: str


def sqlite_path(state_url: str) -> str:
    """The file path of a ``sqlite:///`` URL (``:memory:`` allowed); LedgerError otherwise."""
    if not state_url.startswith(SQLITE_PREFIX):
        raise LedgerError(f"state: {state_url!r} is not a sqlite:/// URL")
    path = state_url[len(SQLITE_PREFIX) :]
    if not path:
        raise LedgerError(f"state: {state_url!r} names no file")
    return path


class Ledger:
    """The delivery ledger; safe to use from several threads (one connection, a lock)."""

    def __init__(self, state_url: str, *, now: Callable[[], dt.datetime] | None = None) -> None:
        path = sqlite_path(state_url)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._now = now or (lambda: dt.datetime.now(dt.UTC))
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_SECONDS, check_same_thread=False, isolation_level=None
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise LedgerError(f"state database {path}: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _stamp(self) -> str:
        return self._now().astimezone(dt.UTC).isoformat(timespec="seconds")

    def _write(self, sql: str, rows: Iterable[tuple[object, ...]]) -> None:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(sql, rows)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise LedgerError(f"state database: {exc}") from None

    # -- deliveries ----------------------------------------------------------------

    def deliveries(self, day: dt.date) -> dict[str, Delivery]:
        """Every row of ``day``, by address."""
        with self._lock:
            rows = self._db.execute(
                "SELECT day, email, status, permanent, attempts, provider_id, message_id,"
                " last_error, created_at, updated_at FROM deliveries WHERE day = ?",
                (day.isoformat(),),
            ).fetchall()
        return {
            row[1]: Delivery(
                dt.date.fromisoformat(row[0]),
                row[1],
                row[2],
                bool(row[3]),
                row[4],
                row[5],
                row[6],
                row[7],
                row[8],
                row[9],
            )
            for row in rows
        }

    def to_send(
        self, day: dt.date, emails: Iterable[str], *, retry_failed: bool = False
    ) -> list[str]:
        """Those of ``emails`` still to deliver on ``day``: not sent, not permanently failed.

        ``retry_failed`` includes the permanently failed ones too.
        """
        with self._lock:  # only the two columns that decide (a rerun reads 100k rows)
            rows = self._db.execute(
                "SELECT email, status, permanent FROM deliveries WHERE day = ?",
                (day.isoformat(),),
            ).fetchall()
        state = {email: (status, bool(permanent)) for email, status, permanent in rows}
        out: list[str] = []
        for email in emails:
            found = state.get(email)
            if (
                found is None
                or found[0] == PENDING
                or (found[0] == FAILED and (retry_failed or not found[1]))
            ):
                out.append(email)
        return out

    def mark_pending(self, day: dt.date, items: Mapping[str, str | None]) -> None:
        """Before an attempt: rows for ``items`` (address -> Message-ID) become pending."""
        stamp = self._stamp()
        self._write(
            "INSERT INTO deliveries"
            " (day, email, status, attempts, message_id, created_at, updated_at)"
            " VALUES (?, ?, 'pending', 1, ?, ?, ?)"
            " ON CONFLICT (day, email) DO UPDATE SET status = 'pending', permanent = 0,"
            " attempts = attempts + 1, message_id = excluded.message_id,"
            " updated_at = excluded.updated_at",
            [(day.isoformat(), email, mid, stamp, stamp) for email, mid in items.items()],
        )

    def record(self, day: dt.date, results: Iterable[SendResult]) -> None:
        """After an attempt: store each result's outcome."""
        stamp = self._stamp()
        rows: list[tuple[object, ...]] = []
        for result in results:
            if result.status in DELIVERED:
                status, permanent = SENT, 0
            elif result.status == SendStatus.SKIPPED:
                status, permanent = PENDING, 0
            else:
                status, permanent = FAILED, 0 if result.transient else 1
            rows.append(
                (
                    status,
                    permanent,
                    result.message_id,
                    result.error,
                    stamp,
                    day.isoformat(),
                    result.email,
                )
            )
        self._write(
            "UPDATE deliveries SET status = ?, permanent = ?,"
            " provider_id = COALESCE(?, provider_id), last_error = ?, updated_at = ?"
            " WHERE day = ? AND email = ?",
            rows,
        )

    def counts(self, day: dt.date) -> dict[str, int]:
        """Rows of ``day`` per status."""
        with self._lock:
            rows = self._db.execute(
                "SELECT status, COUNT(*) FROM deliveries WHERE day = ? GROUP BY status",
                (day.isoformat(),),
            ).fetchall()
        return {status: count for status, count in rows}

    # -- papers --------------------------------------------------------------------

    def record_papers(self, day: dt.date, keys: Iterable[str]) -> None:
        """Remember that the papers ``keys`` went out on ``day``."""
        self._write(
            "INSERT OR IGNORE INTO sent_papers (day, paper_key) VALUES (?, ?)",
            [(day.isoformat(), key) for key in keys],
        )

    def recent_paper_keys(self, day: dt.date, days: int) -> set[str]:
        """Paper keys sent in the ``days`` days before ``day`` (not ``day`` itself)."""
        if days <= 0:
            return set()
        start = day - dt.timedelta(days=days)
        with self._lock:
            rows = self._db.execute(
                "SELECT DISTINCT paper_key FROM sent_papers WHERE day >= ? AND day < ?",
                (start.isoformat(), day.isoformat()),
            ).fetchall()
        return {row[0] for row in rows}
