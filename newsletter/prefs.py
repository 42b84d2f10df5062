"""What subscribers chose themselves: the suppression list and the preference overlay.

They live in the state database (the SQLite file of ``settings.state``, shared with the
delivery ledger; our tables are prefixed ``suppress_`` and ``prefs_``), never in the
admin's YAML, so a hand edit of the list can never undo an unsubscribe.
:meth:`PrefsStore.apply` turns the admin's list into who gets the next send.

Tables::

    suppress_list     one row per suppressed address (key = casefolded address)
    prefs_overlay     topics / summary / paused chosen on the preferences page
    prefs_signups     sign-ups waiting for their confirmation click
    prefs_events      every change, in order (an audit trail: nothing is lost silently)

Every write is one short ``BEGIN IMMEDIATE`` transaction, so several web threads and a
send can share the file; repeating a write (a replayed token) changes nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from newsletter.config import Settings
from newsletter.errors import LedgerError
from newsletter.ledger import BUSY_TIMEOUT_SECONDS, SQLITE_PREFIX
from newsletter.models import SUMMARY_STYLES, Subscriber, SummaryStyle, email_key

_SCHEMA = """
CREATE TABLE IF NOT EXISTS suppress_list (
    email_key TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    reason TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS prefs_overlay (
    email_key TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    topics TEXT,
    summary TEXT,
    paused INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS prefs_signups (
    email_key TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    name TEXT NOT NULL,
    topics TEXT NOT NULL,
    requested_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS prefs_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    at TEXT NOT NULL
);
"""


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def sqlite_path(state_url: str) -> str:
    """The file of a ``sqlite:///`` state URL (a bare path is taken as is)."""
    if state_url.startswith(SQLITE_PREFIX):
        path = state_url[len(SQLITE_PREFIX) :]
    elif "://" in state_url:
        raise LedgerError(f"{state_url}: only sqlite:/// state URLs are supported")
    else:
        path = state_url
    if not path or path == ":memory:":
        raise LedgerError(f"{state_url}: name a database file (it is shared between processes)")
    return path


@dataclass(frozen=True, slots=True)
class Suppression:
    """One suppressed address."""

    email: str
    reason: str
    source: str
    created_at: str


@dataclass(frozen=True, slots=True)
class Overlay:
    """Preferences a subscriber set themselves; None means "as in the list"."""

    email: str
    topics: tuple[str, ...] | None = None
    summary: SummaryStyle | None = None
    paused: bool = False
    updated_at: str = ""


@dataclass(frozen=True, slots=True)
class Signup:
    """A sign-up waiting for its confirmation."""

    email: str
    name: str
    topics: tuple[str, ...]
    requested_at: str


class PrefsStore:
    """The suppression list and preference overlay in the state database."""

    def __init__(self, state_url: str, *, now: Callable[[], dt.datetime] = _utcnow) -> None:
        self.path = sqlite_path(state_url)
        self._now = now
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as conn:
            try:
                conn.executescript(_SCHEMA)
            except sqlite3.Error as exc:
                raise LedgerError(f"{self.path}: cannot set up the state database: {exc}") from None

    # -- plumbing ---------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            raise LedgerError(f"{self.path}: cannot open the state database: {exc}") from None
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with closing(self._connect()) as conn:
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise LedgerError(f"{self.path}: state database write failed: {exc}") from None
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with closing(self._connect()) as conn:
            try:
                return conn.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise LedgerError(f"{self.path}: state database read failed: {exc}") from None

    def _stamp(self) -> str:
        return self._now().astimezone(dt.UTC).isoformat(timespec="seconds")

    @staticmethod
    def _event(conn: sqlite3.Connection, key: str, kind: str, detail: str, at: str) -> None:
        conn.execute(
            "INSERT INTO prefs_events (email_key, kind, detail, at) VALUES (?, ?, ?, ?)",
            (key, kind, detail, at),
        )

    # -- suppression ------------------------------------------------------------------

    def suppress(self, email: str, *, reason: str = "unsubscribe", source: str = "web") -> bool:
        """Suppress ``email``; True if it was not suppressed before (replays change nothing)."""
        key = email_key(email)
        at = self._stamp()
        with self._write() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO suppress_list (email_key, email, reason, source, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (key, email.strip(), reason, source, at),
            )
            if cur.rowcount:
                self._event(conn, key, "suppress", f"{reason} via {source}", at)
            return bool(cur.rowcount)

    def unsuppress(self, email: str, *, source: str = "admin") -> bool:
        """Lift a suppression (the admin's or a confirmed sign-up's decision)."""
        key = email_key(email)
        at = self._stamp()
        with self._write() as conn:
            cur = conn.execute("DELETE FROM suppress_list WHERE email_key = ?", (key,))
            if cur.rowcount:
                self._event(conn, key, "unsuppress", f"via {source}", at)
            return bool(cur.rowcount)

    def is_suppressed(self, email: str) -> bool:
        return bool(
            self._read("SELECT 1 FROM suppress_list WHERE email_key = ?", (email_key(email),))
        )

    def suppressions(self) -> list[Suppression]:
        rows = self._read(
            "SELECT email, reason, source, created_at FROM suppress_list ORDER BY created_at, email"
        )
        return [Suppression(*row) for row in rows]

    def suppressed_count(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM suppress_list")[0][0])

    # -- preferences ------------------------------------------------------------------

    def set_preferences(
        self,
        email: str,
        *,
        topics: Iterable[str] | None = None,
        summary: SummaryStyle | None = None,
        paused: bool = False,
    ) -> Overlay:
        """Record the subscriber's own choices (replacing earlier ones)."""
        if summary is not None and summary not in SUMMARY_STYLES:
            raise ValueError(f"{summary!r} is not one of {' | '.join(SUMMARY_STYLES)}")
        key = email_key(email)
        at = self._stamp()
        topic_list = list(topics) if topics is not None else None
        overlay = Overlay(
            email=email.strip(),
            topics=tuple(topic_list) if topic_list is not None else None,
            summary=summary,
            paused=paused,
            updated_at=at,
        )
        detail = json.dumps(
            {"topics": topic_list, "summary": summary, "paused": paused}, ensure_ascii=False
        )
        with self._write() as conn:
            conn.execute(
                "INSERT INTO prefs_overlay (email_key, email, topics, summary, paused, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(email_key) DO UPDATE SET"
                " email = excluded.email, topics = excluded.topics, summary = excluded.summary,"
                " paused = excluded.paused, updated_at = excluded.updated_at",
                (
                    key,
                    overlay.email,
                    json.dumps(topic_list, ensure_ascii=False) if topic_list is not None else None,
                    summary,
                    int(paused),
                    at,
                ),
            )
            self._event(conn, key, "preferences", detail, at)
        return overlay

    def preferences(self, email: str) -> Overlay | None:
        rows = self._read(
            "SELECT email, topics, summary, paused, updated_at FROM prefs_overlay"
            " WHERE email_key = ?",
            (email_key(email),),
        )
        return _overlay(rows[0]) if rows else None

    def overlays(self) -> dict[str, Overlay]:
        """Every overlay, by casefolded address."""
        rows = self._read("SELECT email, topics, summary, paused, updated_at FROM prefs_overlay")
        return {email_key(row[0]): _overlay(row) for row in rows}

    # -- the next send ----------------------------------------------------------------

    def apply(self, subscribers: Iterable[Subscriber]) -> list[Subscriber]:
        """Who gets the next send: inactive, suppressed and paused entries dropped, and
        each subscriber's own topic / summary choices laid over the admin's entry."""
        suppressed = {row[0] for row in self._read("SELECT email_key FROM suppress_list")}
        overlays = self.overlays()
        out: list[Subscriber] = []
        for sub in subscribers:
            key = email_key(sub.email)
            if not sub.active or key in suppressed:
                continue
            overlay = overlays.get(key)
            if overlay is not None:
                if overlay.paused:
                    continue
                changes: dict[str, Any] = {}
                if overlay.topics is not None:
                    changes["topics"] = overlay.topics
                if overlay.summary is not None:
                    changes["summary"] = overlay.summary
                if changes:
                    sub = dataclasses.replace(sub, **changes)
            out.append(sub)
        return out

    # -- sign-ups ---------------------------------------------------------------------

    def add_signup(self, email: str, *, name: str = "", topics: Iterable[str] = ()) -> None:
        """Remember a sign-up until its confirmation link is clicked."""
        key = email_key(email)
        at = self._stamp()
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO prefs_signups"
                " (email_key, email, name, topics, requested_at) VALUES (?, ?, ?, ?, ?)",
                (key, email.strip(), name, json.dumps(list(topics), ensure_ascii=False), at),
            )
            self._event(conn, key, "signup", "requested", at)

    def signup(self, email: str) -> Signup | None:
        rows = self._read(
            "SELECT email, name, topics, requested_at FROM prefs_signups WHERE email_key = ?",
            (email_key(email),),
        )
        if not rows:
            return None
        email_, name, topics, requested_at = rows[0]
        return Signup(email_, name, tuple(json.loads(topics)), requested_at)

    def finish_signup(self, email: str) -> None:
        """Forget a pending sign-up and lift any earlier suppression (they opted in again)."""
        key = email_key(email)
        at = self._stamp()
        with self._write() as conn:
            conn.execute("DELETE FROM prefs_signups WHERE email_key = ?", (key,))
            cur = conn.execute("DELETE FROM suppress_list WHERE email_key = ?", (key,))
            if cur.rowcount:
                self._event(conn, key, "unsuppress", "confirmed sign-up", at)
            self._event(conn, key, "signup", "confirmed", at)

    def events(self, email: str | None = None) -> list[tuple[str, str, str, str]]:
        """(email key, kind, detail, at) of every change, oldest first."""
        if email is None:
            rows = self._read("SELECT email_key, kind, detail, at FROM prefs_events ORDER BY id")
        else:
            rows = self._read(
                "SELECT email_key, kind, detail, at FROM prefs_events WHERE email_key = ?"
                " ORDER BY id",
                (email_key(email),),
            )
        return [(str(a), str(b), str(c), str(d)) for a, b, c, d in rows]


def _overlay(row: tuple[Any, ...]) -> Overlay:
    email, topics, summary, paused, updated_at = row
    return Overlay(
        email=email,
        topics=tuple(json.loads(topics)) if topics is not None else None,
        summary=summary if summary in SUMMARY_STYLES else None,
        paused=bool(paused),
        updated_at=updated_at,
    )


def next_send_subscribers(settings: Settings) -> list[Subscriber]:
    """The admin's list, validated against the configured taxonomy, with the readers'
    own choices applied: who gets the next send and what each asked for."""
    from newsletter import subscribers as roster  # the send path's only use of the YAML list

    known = roster.default_topic_names(settings.digest.taxonomy)
    subscribers = roster.load_subscribers(settings.subscribers, known_topics=known)
    return PrefsStore(settings.state).apply(subscribers)
