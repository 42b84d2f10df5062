"""The state database: the one module that parses the ``state`` URL, connects, migrates
and holds every query. Nothing else in the package issues SQL.

URLs (:func:`parse_state_url`)
------------------------------
=================================  ===============================================
``sqlite:///relative/state.db``    a SQLite file, relative to ``base`` (the config
                                   file's folder) or else the working directory
``sqlite:////var/lib/n/state.db``  an absolute SQLite file
``state.db``, ``/var/lib/x.db``    a bare path: a SQLite file
``postgresql://user@host/db``      PostgreSQL through psycopg 3 (``postgres://`` too;
                                   install the ``newsletter[postgres]`` extra)
``:memory:``                       a private in-memory SQLite database (tests only:
                                   each :class:`State` gets its own)
=================================  ===============================================

Opening
-------
``State(url)`` connects and brings the schema up to date (see *Migrations*);
``State.open_existing(url)`` does the same but returns None instead of creating a
SQLite file that is not there (the read-only commands ``status``, ``subscribers list``,
``preview`` use it, so they never create a file). A :class:`State` holds one connection
behind a lock, so threads may share it (on PostgreSQL a second one, opened at the first
outcome, writes outcomes: see :meth:`State.record`); use it as a context manager or call
``close()``.
Every error of the database is raised as :class:`~newsletter.errors.LedgerError`.

Migrations
----------
:data:`MIGRATIONS` is an ordered tuple of :class:`Migration` (version, name, SQL for
SQLite, SQL for PostgreSQL). ``schema_migrations`` records which versions were applied;
opening applies the missing ones in order, each in one transaction (a SQLite
``BEGIN IMMEDIATE`` / a PostgreSQL advisory lock, so two processes opening a fresh
database at once do not race). Migration 1 is exactly the schema the code before
version-tracking created (``CREATE TABLE IF NOT EXISTS``), so such a database is upgraded
in place, never dropped. **To add a table: append a Migration with the next version at
the end of MIGRATIONS and put its queries in this module**; never edit an applied one.

The API, by table
-----------------
Deliveries (``deliveries``: one row per (day, address); status ``pending`` / ``sent`` /
``failed``, ``permanent``, ``attempts``, ``message_id``, ``provider_id``, ``last_error``,
``variant`` (the content key of the digest the reader got), ``claim_owner`` /
``claim_until`` (the lease))::

    claim(day, emails, owner=, lease=, retry_failed=)  -> Claim   # one write transaction
    mark_attempt(day, {email: (message_id, variant)}, owner=, lease=)
    record(day, results)          # outcomes; the claim is released
    release(day, emails, owner=)  # claimed but never handed to the backend
    renew(owner, lease=)          # the sender's heartbeat: extend every lease it holds
    deliveries(day) / counts(day) / days() / to_send(day, emails) / mark_pending(...)

Claims: :meth:`State.claim` takes the rows of a batch of addresses for one owner in one
write transaction (SQLite: ``BEGIN IMMEDIATE``, which serialises writers; PostgreSQL:
``UPDATE … WHERE … IN (SELECT … FOR UPDATE SKIP LOCKED)`` plus ``INSERT … ON CONFLICT DO
NOTHING``). A row can be claimed when it is not ``sent``, not failed for good (unless
``retry_failed``), and nobody holds a live lease on it. Suppressed and paused readers
are checked in the same transaction, so an unsubscribe recorded during a send is
honoured for everyone not yet claimed. A claim whose owner died is taken over only when
its lease (``claim_until``) has passed; a live sender renews its leases (a heartbeat).

Papers::

    record_papers(day, keys) / recent_paper_keys(day, days)      # digest.dedupe_days
    save_variant(day, variant, keys)   # a (day, variant)'s paper keys, stored once
    papers_received(email, since=None) -> set[str]   # one query: what a reader got
    save_day(day, edition=, prepared_at=) / load_day(date, edition=) /
    load_days(start, end, edition=)    # each prepared day's papers (``days`` table)

Readers' own choices (``suppress_list``, ``prefs_overlay``, ``prefs_events``; see
:mod:`newsletter.prefs` for their meaning) and sign-ups (``signup_pending`` with each
sign-up's nonce, ``signup_attempts`` per client; see :mod:`newsletter.web`)::

    suppress / unsuppress / is_suppressed / suppressions / suppressed_count
    set_preferences / preferences / overlays / apply(subscribers) / skip_reasons(...)
    request_signup / claim_signup / unclaim_signup / cancel_signup / pending_signup / events

The admin's list when it lives here (``subscribers: state``; ``subscribers``)::

    subscriber_batch(after=, limit=) / subscriber_entry / subscriber_emails /
    subscriber_count / add_subscribers(entries) / update_subscriber / remove_subscriber

Bounces and complaints (``bounce_events``; ``suppress_list.event_id`` names the event
behind a suppression; see :mod:`newsletter.bounces`)::

    add_bounce_event(event) -> False for a replay / bounce_events(email=) / bounce_event(id)
    bounce_times(email, kind, since=) / bounce_counts(since) / sent_count(since_day)
    delivery_for_message_id(message_id) -> (address, day) / suppression(email)

Runs and the daemon (``runs``, ``state_meta``)::

    start_run(day, command=, owner=) -> run id / finish_run(run id, counts, outcome=)
    last_run() / runs_for(day) / meta(key) / set_meta(key, value, replace=)

Times are ISO-8601 text in UTC in both engines; lease times compare as text, so
hosts sharing a PostgreSQL database need clocks in step (NTP) to within a lease.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import os
import re
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self
from urllib.parse import urlsplit, urlunsplit

from newsletter.closing import Closing
from newsletter.errors import LedgerError
from newsletter.feedback import SIGNALS, Feedback, Signal, paper_ref
from newsletter.models import (
    DELIVERED,
    SUMMARY_STYLES,
    Day,
    Paper,
    SendResult,
    SendStatus,
    Subscriber,
    SummaryStyle,
    email_key,
)
from newsletter.weekly import FREQUENCIES, WEEKDAYS, Frequency, Weekday

if TYPE_CHECKING:
    import psycopg

SQLITE_PREFIX = "sqlite:///"
"""``sqlite:///relative.db`` or ``sqlite:////absolute.db``."""

POSTGRES_SCHEMES = ("postgresql", "postgres")
"""URL schemes taken as PostgreSQL."""

MEMORY = ":memory:"
"""The in-memory SQLite database (tests only)."""

BUSY_TIMEOUT_SECONDS = 30.0
"""How long a SQLite write waits for another process holding the database."""

DEFAULT_LEASE_SECONDS = 120.0
"""How long a claim stays another sender's after its last renewal."""

CLAIM_BATCH = 1000
"""Most addresses claimed in one transaction (also the most an IN list holds)."""

ROWS_PER_STATEMENT = 500
"""Most rows one PostgreSQL ``UPDATE … FROM (VALUES …)`` carries (under its 65,535
parameters at 7 a row)."""

_PG_TYPES = {"permanent": "integer"}
"""Columns whose PostgreSQL type is not text (the VALUES rows of an update are cast)."""

SUBSCRIBER_BATCH = 5000
"""Entries of a list kept in the database read per query (memory stays flat)."""

PENDING = "pending"
SENT = "sent"
FAILED = "failed"

Engine = Literal["sqlite", "postgresql"]
Now = Callable[[], dt.datetime]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --------------------------------------------------------------------------- URLs


@dataclass(frozen=True, slots=True)
class StateURL:
    """A parsed ``state`` setting."""

    engine: Engine
    target: str
    """The SQLite file (or ``:memory:``), or the PostgreSQL connection URL."""

    @property
    def is_memory(self) -> bool:
        return self.engine == "sqlite" and self.target == MEMORY

    @property
    def path(self) -> Path | None:
        """The SQLite file, or None (in memory, PostgreSQL)."""
        return Path(self.target) if self.engine == "sqlite" and not self.is_memory else None

    def display(self) -> str:
        """The URL for messages: a PostgreSQL password is replaced by ``***``."""
        if self.engine == "sqlite":
            return self.target
        parts = urlsplit(self.target)
        if parts.password is None:
            return self.target
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))


def parse_state_url(
    url: str | os.PathLike[str], *, base: str | os.PathLike[str] | None = None
) -> StateURL:
    """The one parser of ``state`` URLs (see the module doc); LedgerError when unusable.

    A relative SQLite path is taken relative to ``base`` when given (the folder of the
    config file that named it).
    """
    text = os.fspath(url).strip()
    if not text:
        raise LedgerError("state: empty URL (e.g. sqlite:///newsletter.db)")
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in POSTGRES_SCHEMES:
        parts = urlsplit(text)
        if not (parts.path.strip("/") or parts.hostname or parts.query):
            raise LedgerError(f"state: {_redact(text)} names no PostgreSQL database")
        return StateURL("postgresql", text)
    if text.startswith(SQLITE_PREFIX):
        path = text[len(SQLITE_PREFIX) :]
    elif scheme:
        raise LedgerError(
            f"state: {_redact(text)}: use sqlite:///path, a file path or postgresql://"
        )
    else:
        path = text
    if "?" in path:
        raise LedgerError(f"state: {text!r}: options after '?' are not supported")
    if not path:
        raise LedgerError(f"state: {text!r} names no file")
    if path == MEMORY:
        return StateURL("sqlite", MEMORY)
    file = Path(path).expanduser()
    if base is not None and not file.is_absolute():
        file = Path(base) / file
    return StateURL("sqlite", str(file))


def resolve_state_url(url: str, *, base: str | os.PathLike[str]) -> str:
    """``url`` with a relative SQLite path made absolute against ``base``
    (``sqlite:///s.db`` -> ``sqlite:////etc/newsletter/s.db``); others unchanged."""
    parsed = parse_state_url(url, base=base)
    if parsed.path is None:
        return url.strip()
    return SQLITE_PREFIX + str(parsed.path)


def _redact(text: str) -> str:
    parts = urlsplit(text)
    return StateURL("postgresql", text).display() if parts.password else text


def lock_path_for(state_url: str, *, base: str | os.PathLike[str] | None = None) -> Path:
    """The single-daemon lock file beside a SQLite state file (``state.db.lock``).

    For PostgreSQL or ``:memory:`` it is ``newsletter.lock`` in ``base`` (the config
    file's folder, or here). It is per host: across hosts, claims keep sends single.
    """
    parsed = parse_state_url(state_url, base=base)
    if parsed.path is not None:
        return Path(str(parsed.path) + ".lock")
    return Path(base or ".") / "newsletter.lock"


# --------------------------------------------------------------------------- migrations


@dataclass(frozen=True, slots=True)
class Migration:
    """One forward step of the schema, written for SQLite; statements are separated by
    ``;`` (so no ``;`` inside a statement). PostgreSQL runs the same script with its
    identity column for SQLite's ``AUTOINCREMENT`` key."""

    version: int
    name: str
    sql: str

    def script(self, engine: Engine) -> str:
        if engine == "sqlite":
            return self.sql
        return self.sql.replace(
            _AUTOINCREMENT, "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
        )


_AUTOINCREMENT = "id INTEGER PRIMARY KEY AUTOINCREMENT"


_V1 = """
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
)
"""
"""What ``ledger.py`` and ``prefs.py`` created before the schema had versions."""

_V2 = """
ALTER TABLE deliveries ADD COLUMN claim_owner TEXT;
ALTER TABLE deliveries ADD COLUMN claim_until TEXT;
ALTER TABLE deliveries ADD COLUMN variant TEXT;
CREATE INDEX deliveries_claim_owner ON deliveries (claim_owner);
CREATE INDEX deliveries_email ON deliveries (email, day);
CREATE TABLE variant_papers (
    day TEXT NOT NULL,
    variant TEXT NOT NULL,
    position INTEGER NOT NULL,
    paper_key TEXT NOT NULL,
    PRIMARY KEY (day, variant, position)
);
CREATE TABLE days (
    day TEXT NOT NULL,
    edition TEXT NOT NULL,
    source TEXT NOT NULL,
    papers TEXT NOT NULL,
    prepared_at TEXT NOT NULL,
    PRIMARY KEY (day, edition)
);
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    day TEXT NOT NULL,
    command TEXT NOT NULL,
    owner TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    outcome TEXT,
    counts TEXT
);
CREATE INDEX runs_started ON runs (started_at);
CREATE TABLE state_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at TEXT NOT NULL
)
"""

_V3 = """
CREATE TABLE signup_pending (
    email_key TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    name TEXT NOT NULL,
    topics TEXT NOT NULL,
    nonce TEXT NOT NULL,
    client TEXT NOT NULL,
    requested_at TEXT NOT NULL
);
CREATE INDEX signup_pending_requested ON signup_pending (requested_at);
CREATE TABLE signup_attempts (
    client TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX signup_attempts_client ON signup_attempts (client, at)
"""
"""Sign-ups with abuse limits: pending ones with their nonce, and recent posts per client
(the old ``prefs_signups`` table is no longer read)."""

_V4 = """
CREATE TABLE subscribers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email_key TEXT NOT NULL UNIQUE,
    email TEXT NOT NULL,
    entry TEXT NOT NULL,
    updated_at TEXT NOT NULL
)
"""
"""The admin's list kept in the database (``subscribers: state``): one row per reader,
``entry`` the fields as JSON, ``id`` the order of adding (read back in batches by id)."""

_BOUNCES = """
CREATE TABLE bounce_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    email_key TEXT NOT NULL,
    email TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('hard', 'soft', 'complaint')),
    status TEXT,
    diagnostic TEXT NOT NULL,
    source TEXT NOT NULL,
    day TEXT,
    matched TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE INDEX bounce_events_email ON bounce_events (email_key, occurred_at);
CREATE INDEX bounce_events_occurred ON bounce_events (occurred_at);
CREATE INDEX deliveries_message_id ON deliveries (message_id);
ALTER TABLE suppress_list ADD COLUMN event_id TEXT
"""
"""Bounces and complaints (:mod:`newsletter.bounces`): every event, and which one caused
a suppression."""

_V6 = """
ALTER TABLE prefs_overlay ADD COLUMN keywords TEXT;
ALTER TABLE prefs_overlay ADD COLUMN authors TEXT;
ALTER TABLE prefs_overlay ADD COLUMN max_papers TEXT;
ALTER TABLE prefs_overlay ADD COLUMN timezone TEXT;
ALTER TABLE prefs_overlay ADD COLUMN frequency TEXT;
ALTER TABLE prefs_overlay ADD COLUMN weekday TEXT;
CREATE TABLE reader_signals (
    email_key TEXT NOT NULL,
    signal TEXT NOT NULL,
    target TEXT NOT NULL,
    paper TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (email_key, signal, target)
);
CREATE INDEX variant_papers_paper ON variant_papers (paper_key)
"""
"""Readers steer their digest: the rest of the preferences page, and feedback signals."""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "ledger and preferences", _V1),
    Migration(2, "claims, variants, prepared days, runs", _V2),
    Migration(3, "sign-ups with nonces and per-client limits", _V3),
    Migration(4, "subscriber list", _V4),
    Migration(5, "bounce and complaint events", _BOUNCES),
    Migration(6, "reader settings and feedback signals", _V6),
)
"""Every schema step, oldest first. Append new ones at the end (next version)."""

LATEST_VERSION = MIGRATIONS[-1].version

_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL
)
"""

_PG_MIGRATION_LOCK = 0x6E6C7374  # "nlst": the advisory lock migrations hold


def _statements(script: str) -> list[str]:
    return [part.strip() for part in script.split(";") if part.strip()]


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class Delivery:
    """One ``deliveries`` row."""

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
    variant: str | None = None
    claim_owner: str | None = None
    claim_until: str | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """What :meth:`State.claim` did with each address of a batch."""

    claimed: tuple[str, ...] = ()
    """Now held by the caller, in the order given."""
    done: tuple[str, ...] = ()
    """Sent already, or failed for good (not retried)."""
    busy: tuple[str, ...] = ()
    """Held by another sender's live claim."""
    skipped: Mapping[str, str] = field(default_factory=dict)
    """Address -> why it is not sent: ``unsubscribed``, ``suppressed`` or ``paused``."""


@dataclass(frozen=True, slots=True)
class Suppression:
    """One suppressed address."""

    email: str
    reason: str
    source: str
    created_at: str
    event_id: str | None = None
    """The bounce or complaint event that caused it (``bounce_events.event_id``)."""


@dataclass(frozen=True, slots=True)
class BounceEvent:
    """One bounce or complaint, as stored (``bounce_events``)."""

    event_id: str
    email: str
    kind: str
    """``hard``, ``soft`` or ``complaint``."""
    status: str | None
    diagnostic: str
    source: str
    """Where it came from: ``file:PATH``, ``imap:…``, ``webhook:ses``, ``submission``."""
    day: dt.date | None
    """The day's digest it answers, when the report let us match one."""
    matched: str
    """How the subscriber was found: ``verp``, ``message-id``, ``address`` (the report's
    own, no day) or ``ledger`` (a failure at submission)."""
    occurred_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Overlay:
    """Preferences a subscriber set themselves; None means "as in the list"."""

    email: str
    topics: tuple[str, ...] | None = None
    summary: SummaryStyle | None = None
    paused: bool = False
    updated_at: str = ""
    keywords: tuple[str, ...] | None = None
    authors: tuple[str, ...] | None = None
    max_papers: int | Literal["all"] | None = None
    """A number, ``"all"`` (no limit), or None (as in the list)."""
    timezone: str | None = None
    frequency: Frequency | None = None
    weekday: Weekday | None = None

    def laid_over(self, sub: Subscriber) -> Subscriber:
        """``sub`` with every choice of this overlay that is set replacing the list's."""
        changes: dict[str, Any] = {}
        for name in ("topics", "summary", "keywords", "authors", "timezone", "frequency"):
            value = getattr(self, name)
            if value is not None:
                changes[name] = value
        if self.weekday is not None:
            changes["weekday"] = self.weekday
        if self.max_papers is not None:
            changes["max_papers"] = None if self.max_papers == "all" else self.max_papers
        return dataclasses.replace(sub, **changes) if changes else sub


@dataclass(frozen=True, slots=True)
class Signup:
    """A sign-up waiting for its confirmation."""

    email: str
    name: str
    topics: tuple[str, ...]
    requested_at: str
    nonce: str = ""
    """Random, in the confirmation link: the link confirms this sign-up only, once."""
    client: str = ""
    """The address the sign-up was posted from."""


@dataclass(frozen=True, slots=True)
class SignupDecision:
    """What :meth:`State.request_signup` decided: ``send`` a confirmation with ``nonce``;
    ``recent`` (one went out within the interval: nothing changed); ``client_limit``
    (that client posted too often); ``full`` (too many sign-ups pending)."""

    outcome: SignupOutcome
    nonce: str | None = None


SignupOutcome = Literal["send", "recent", "client_limit", "full"]


@dataclass(frozen=True, slots=True)
class StoredSignal:
    """One feedback signal of a reader."""

    signal: Signal
    target: str
    """The paper key ("more", "less") or the topic name ("fewer_topic")."""
    title: str
    """The paper's title when known, else the target."""
    created_at: str


@dataclass(frozen=True, slots=True)
class StoredDay:
    """A prepared day as the ``days`` table keeps it."""

    day: Day
    edition: str
    prepared_at: str


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One ``send`` / scheduled run."""

    id: str
    day: dt.date
    command: str
    owner: str
    started_at: str
    finished_at: str | None
    outcome: str | None
    counts: Mapping[str, int]


def apply_choices(
    subscribers: Iterable[Subscriber],
    suppressed: Mapping[str, str],
    overlays: Mapping[str, Overlay],
) -> tuple[list[Subscriber], dict[str, int]]:
    """Who gets the next send (see :meth:`State.apply_counted`), from the suppressed keys
    (casefolded address -> reason) and the overlays (casefolded address -> Overlay)."""
    out: list[Subscriber] = []
    skipped: dict[str, int] = {}
    for sub in subscribers:
        key = email_key(sub.email)
        why: str | None = None
        overlay = overlays.get(key)
        if not sub.active:
            why = "inactive"
        elif key in suppressed:
            why = "unsubscribed" if suppressed[key] == "unsubscribe" else "suppressed"
        elif overlay is not None and overlay.paused:
            why = "paused"
        if why is not None:
            skipped[why] = skipped.get(why, 0) + 1
            continue
        if overlay is not None:
            sub = overlay.laid_over(sub)
        out.append(sub)
    return out, skipped


def new_owner(command: str = "send") -> str:
    """A claim owner unique to this process and run: ``host:pid:command:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{command}:{secrets.token_hex(4)}"


def variant_key(paper_keys: Sequence[str]) -> str:
    """The content key of a digest: a short hash of its paper keys in order."""
    digest = hashlib.sha256("\n".join(paper_keys).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:16]


def paper_to_json(paper: Paper) -> dict[str, Any]:
    """A Paper as JSON data (datetimes as ISO text, tuples as lists)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(paper):
        value = getattr(paper, f.name)
        if isinstance(value, dt.datetime):
            value = value.isoformat()
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


_DATETIME_FIELDS = frozenset({"published_at", "submitted_at"})
_TUPLE_FIELDS = frozenset({"authors", "keywords", "categories"})
_PAPER_FIELDS = frozenset(f.name for f in dataclasses.fields(Paper))


def paper_from_json(data: Mapping[str, Any]) -> Paper:
    """The inverse of :func:`paper_to_json` (unknown keys ignored)."""
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        if name not in _PAPER_FIELDS:
            continue
        if name in _DATETIME_FIELDS and value is not None:
            value = dt.datetime.fromisoformat(value)
        elif name in _TUPLE_FIELDS:
            value = tuple(value or ())
        kwargs[name] = value
    return Paper(**kwargs)


# --------------------------------------------------------------------------- the database


class State(Closing):
    """An open state database (see the module doc); threads may share one."""

    def __init__(
        self,
        url: str | os.PathLike[str] | StateURL,
        *,
        base: str | os.PathLike[str] | None = None,
        now: Now | None = None,
        durable: bool = False,
    ) -> None:
        """Connect (creating a SQLite file and its folder if needed) and migrate.

        ``durable``: SQLite ``synchronous=FULL`` (each commit reaches the disk; for
        readers' own choices); otherwise ``NORMAL`` (safe against a process crash).
        """
        parsed = url if isinstance(url, StateURL) else parse_state_url(url, base=base)
        self.url = parsed
        self.engine: Engine = parsed.engine
        self._now: Now = now or _utcnow
        self._lock = threading.RLock()
        self._closed = False
        self._durable = durable
        self._outcomes = _GroupCommit(self._write_outcomes)
        self._outcome_conn: Any = None
        """PostgreSQL: the connection outcomes are written on (opened at the first), so
        the senders' writes never wait behind a claim's round trips on the main one."""
        if parsed.engine == "postgresql":
            self._conn: Any = _pg_connect(parsed, durable=durable)
        else:
            if parsed.path is not None:
                try:
                    parsed.path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise LedgerError(f"state database {parsed.display()}: {exc}") from None
            self._conn = _sqlite_connect(parsed, durable=durable)
        try:
            self.migrate()
        except LedgerError as exc:
            self.close()
            raise LedgerError(
                str(exc).replace(
                    f"state database {parsed.display()}: ",
                    f"{parsed.display()}: cannot open the state database: ",
                    1,
                )
            ) from None
        except BaseException:
            self.close()
            raise

    @classmethod
    def open_existing(
        cls,
        url: str | os.PathLike[str] | StateURL,
        *,
        base: str | os.PathLike[str] | None = None,
        now: Now | None = None,
    ) -> Self | None:
        """Like ``State(url)``, but None when a SQLite file is not there (creates nothing)."""
        parsed = url if isinstance(url, StateURL) else parse_state_url(url, base=base)
        if parsed.is_memory:
            return None
        if parsed.path is not None and not parsed.path.is_file():
            return None
        return cls(parsed, now=now)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()
                if self._outcome_conn is not None:
                    self._outcome_conn.close()

    # -- plumbing ------------------------------------------------------------------

    def _error(self, exc: Exception) -> LedgerError:
        text = " ".join(str(exc).split())
        return LedgerError(f"state database {self.url.display()}: {text}")

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.engine == "postgresql" else sql

    def _db_errors(self) -> tuple[type[Exception], ...]:
        if self.engine == "postgresql":
            import psycopg

            return (psycopg.Error,)
        return (sqlite3.Error,)

    @contextmanager
    def _tx(self) -> Iterator[_Tx]:
        """One write transaction (SQLite: ``BEGIN IMMEDIATE``); LedgerError on failure."""
        with self._lock:
            errors = self._db_errors()
            try:
                if self.engine == "sqlite":
                    self._conn.execute("BEGIN IMMEDIATE")
                    try:
                        yield _Tx(self, self._conn)
                    except BaseException:
                        if self._conn.in_transaction:
                            self._conn.execute("ROLLBACK")
                        raise
                    self._conn.execute("COMMIT")
                else:
                    with self._conn.transaction(), self._conn.cursor() as cur:
                        yield _Tx(self, cur)
            except errors as exc:
                raise self._error(exc) from None

    def _write_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """``sql`` once for each of ``rows``, all in one write transaction (none: nothing)."""
        if rows:
            with self._tx() as tx:
                tx.executemany(sql, rows)

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                if self.engine == "sqlite":
                    return list(self._conn.execute(sql, args).fetchall())
                with self._conn.cursor() as cur:
                    cur.execute(self._sql(sql), args)
                    return list(cur.fetchall())
            except self._db_errors() as exc:
                raise self._error(exc) from None

    def _stamp(self, at: dt.datetime | None = None) -> str:
        return (at or self._now()).astimezone(dt.UTC).isoformat(timespec="seconds")

    def _lease_stamp(self, at: dt.datetime) -> str:
        return at.astimezone(dt.UTC).isoformat(timespec="milliseconds")

    # -- migrations ----------------------------------------------------------------

    def schema_version(self) -> int:
        """The newest migration applied (0 for an empty database)."""
        with self._lock:
            try:
                rows = self._read("SELECT MAX(version) FROM schema_migrations")
            except LedgerError:
                return 0
        return int(rows[0][0] or 0)

    def migrate(self) -> list[int]:
        """Apply the missing migrations in order; returns the versions applied."""
        applied: list[int] = []
        with self._tx() as tx:
            if self.engine == "postgresql":
                tx.execute("SELECT pg_advisory_xact_lock(?)", (_PG_MIGRATION_LOCK,))
            tx.execute(_MIGRATIONS_TABLE)
            current = int(tx.fetch("SELECT MAX(version) FROM schema_migrations")[0][0] or 0)
            if current > LATEST_VERSION:
                raise LedgerError(
                    f"state database {self.url.display()} has schema version {current}, "
                    f"newer than this program knows ({LATEST_VERSION}): upgrade newsletter"
                )
            for migration in MIGRATIONS:
                if migration.version <= current:
                    continue
                for statement in _statements(migration.script(self.engine)):
                    tx.execute(statement)
                tx.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, self._stamp(_utcnow())),
                )
                applied.append(migration.version)
        return applied

    # -- deliveries: reading ------------------------------------------------------------

    _DELIVERY_COLUMNS = (
        "day, email, status, permanent, attempts, provider_id, message_id, last_error,"
        " created_at, updated_at, variant, claim_owner, claim_until"
    )

    def deliveries(self, day: dt.date) -> dict[str, Delivery]:
        """Every row of ``day``, by address."""
        rows = self._read(
            f"SELECT {self._DELIVERY_COLUMNS} FROM deliveries WHERE day = ?", (day.isoformat(),)
        )
        return {
            row[1]: Delivery(
                dt.date.fromisoformat(row[0]),
                row[1],
                row[2],
                bool(row[3]),
                int(row[4]),
                *row[5:],
            )
            for row in rows
        }

    def counts(self, day: dt.date) -> dict[str, int]:
        """Rows of ``day`` per status (``pending``, ``sent``, ``failed``)."""
        rows = self._read(
            "SELECT status, COUNT(*) FROM deliveries WHERE day = ? GROUP BY status",
            (day.isoformat(),),
        )
        return {str(status): int(count) for status, count in rows}

    def detailed_counts(self, day: dt.date) -> dict[str, int]:
        """Rows of ``day`` per status, every status present (0 when none), and
        ``failed_permanent``: how many of the failed ones will not be retried."""
        rows = self._read(
            "SELECT status, permanent, COUNT(*) FROM deliveries WHERE day = ?"
            " GROUP BY status, permanent",
            (day.isoformat(),),
        )
        out = {SENT: 0, FAILED: 0, PENDING: 0, "failed_permanent": 0}
        for status, permanent, count in rows:
            out[str(status)] = out.get(str(status), 0) + int(count)
            if status == FAILED and permanent:
                out["failed_permanent"] += int(count)
        return out

    def days(self) -> list[dt.date]:
        """Every day with a delivery row, oldest first."""
        rows = self._read("SELECT DISTINCT day FROM deliveries ORDER BY day")
        return [dt.date.fromisoformat(day) for (day,) in rows]

    def sent_days(self) -> list[dt.date]:
        """Every day whose papers went out to someone, oldest first."""
        rows = self._read("SELECT DISTINCT day FROM deliveries WHERE status = 'sent' ORDER BY day")
        return [dt.date.fromisoformat(day) for (day,) in rows]

    def day_span(self, day: dt.date) -> tuple[str | None, str | None]:
        """The first row's creation and the last row's update of ``day``."""
        rows = self._read(
            "SELECT MIN(created_at), MAX(updated_at) FROM deliveries WHERE day = ?",
            (day.isoformat(),),
        )
        return (rows[0][0], rows[0][1]) if rows else (None, None)

    def final_recipients(self, day: dt.date) -> set[str]:
        """Casefolded addresses with nothing left to do on ``day``: sent, or failed for good."""
        rows = self._read(
            "SELECT email FROM deliveries WHERE day = ?"
            " AND (status = 'sent' OR (status = 'failed' AND permanent = 1))",
            (day.isoformat(),),
        )
        return {email_key(email) for (email,) in rows}

    def to_send(
        self, day: dt.date, emails: Iterable[str], *, retry_failed: bool = False
    ) -> list[str]:
        """Those of ``emails`` not yet sent nor failed for good (a read, not a claim:
        for display and planning; :meth:`claim` decides who sends). Only the rows of
        ``emails`` are read (CLAIM_BATCH a query): a batch of a long list costs its size."""
        asked = list(emails)
        state: dict[str, tuple[str, bool]] = {}
        for start in range(0, len(asked), CLAIM_BATCH):
            batch = sorted(set(asked[start : start + CLAIM_BATCH]))
            marks = ", ".join("?" * len(batch))
            rows = self._read(
                "SELECT email, status, permanent FROM deliveries"
                f" WHERE day = ? AND email IN ({marks})",
                [day.isoformat(), *batch],
            )
            state.update((email, (status, bool(permanent))) for email, status, permanent in rows)
        out: list[str] = []
        for email in asked:
            found = state.get(email)
            if (
                found is None
                or found[0] == PENDING
                or (found[0] == FAILED and (retry_failed or not found[1]))
            ):
                out.append(email)
        return out

    # -- deliveries: claims ------------------------------------------------------------

    def claim(
        self,
        day: dt.date,
        emails: Sequence[str],
        *,
        owner: str,
        lease: float = DEFAULT_LEASE_SECONDS,
        retry_failed: bool = False,
    ) -> Claim:
        """Take the rows of ``emails`` for ``owner`` in one write transaction.

        See the module doc. ``emails`` may be longer than CLAIM_BATCH: it is then
        claimed in several transactions, one per CLAIM_BATCH addresses.
        """
        if len(emails) > CLAIM_BATCH:
            parts = [
                self.claim(
                    day,
                    emails[i : i + CLAIM_BATCH],
                    owner=owner,
                    lease=lease,
                    retry_failed=retry_failed,
                )
                for i in range(0, len(emails), CLAIM_BATCH)
            ]
            return Claim(
                claimed=tuple(e for p in parts for e in p.claimed),
                done=tuple(e for p in parts for e in p.done),
                busy=tuple(e for p in parts for e in p.busy),
                skipped={k: v for p in parts for k, v in p.skipped.items()},
            )
        unique = list(dict.fromkeys(emails))
        if not unique:
            return Claim()
        now = self._now()
        stamp = self._stamp(now)
        now_text = self._lease_stamp(now)
        until = self._lease_stamp(now + dt.timedelta(seconds=lease))
        key_of = {email: email_key(email) for email in unique}
        keys = sorted(set(key_of.values()))
        marks = ", ".join("?" * len(keys))
        with self._tx() as tx:
            reasons: dict[str, str] = {}
            for key, reason in tx.fetch(
                f"SELECT email_key, reason FROM suppress_list WHERE email_key IN ({marks})", keys
            ):
                reasons[key] = "unsubscribed" if reason == "unsubscribe" else "suppressed"
            for (key,) in tx.fetch(
                f"SELECT email_key FROM prefs_overlay WHERE paused = 1 AND email_key IN ({marks})",
                keys,
            ):
                reasons.setdefault(key, "paused")
            skipped = {e: reasons[key_of[e]] for e in unique if key_of[e] in reasons}
            wanted = sorted(e for e in unique if e not in skipped)
            got: set[str] = set()
            if wanted:
                emarks = ", ".join("?" * len(wanted))
                claimable = (
                    "status <> 'sent'"
                    + ("" if retry_failed else " AND NOT (status = 'failed' AND permanent = 1)")
                    + " AND (claim_owner IS NULL OR claim_until IS NULL OR claim_until < ?)"
                )
                if self.engine == "postgresql":
                    taken = tx.fetch(
                        "UPDATE deliveries SET claim_owner = ?, claim_until = ?, updated_at = ?"
                        " WHERE day = ? AND email IN (SELECT email FROM deliveries"
                        f" WHERE day = ? AND email IN ({emarks}) AND {claimable}"
                        " ORDER BY email FOR UPDATE SKIP LOCKED) RETURNING email",
                        [owner, until, stamp, day.isoformat(), day.isoformat(), *wanted, now_text],
                    )
                else:
                    taken = tx.fetch(
                        "UPDATE deliveries SET claim_owner = ?, claim_until = ?, updated_at = ?"
                        f" WHERE day = ? AND email IN ({emarks}) AND {claimable} RETURNING email",
                        [owner, until, stamp, day.isoformat(), *wanted, now_text],
                    )
                got.update(email for (email,) in taken)
                rest = [e for e in wanted if e not in got]
                if rest:
                    values = ", ".join("(?, ?, 'pending', 0, ?, ?, ?, ?)" for _ in rest)
                    args: list[Any] = []
                    for email in rest:
                        args += [day.isoformat(), email, stamp, stamp, owner, until]
                    inserted = tx.fetch(
                        "INSERT INTO deliveries (day, email, status, attempts, created_at,"
                        f" updated_at, claim_owner, claim_until) VALUES {values}"
                        " ON CONFLICT (day, email) DO NOTHING RETURNING email",
                        args,
                    )
                    got.update(email for (email,) in inserted)
            left = [e for e in wanted if e not in got]
            done: set[str] = set()
            if left:
                lmarks = ", ".join("?" * len(left))
                final = (
                    "status = 'sent'"
                    if retry_failed
                    else "(status = 'sent' OR (status = 'failed' AND permanent = 1))"
                )
                done = {
                    email
                    for (email,) in tx.fetch(
                        f"SELECT email FROM deliveries WHERE day = ? AND email IN ({lmarks})"
                        f" AND {final}",
                        [day.isoformat(), *left],
                    )
                }
        return Claim(
            claimed=tuple(e for e in unique if e in got),
            done=tuple(e for e in unique if e in done),
            busy=tuple(e for e in unique if e in left and e not in done),
            skipped=skipped,
        )

    def mark_attempt(
        self,
        day: dt.date,
        items: Mapping[str, tuple[str | None, str | None]],
        *,
        owner: str,
        lease: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        """Before handing claimed rows to the backend: attempts + 1, our Message-ID and
        the variant (``items``: address -> (message id, variant)), lease renewed."""
        now = self._now()
        stamp = self._stamp(now)
        until = self._lease_stamp(now + dt.timedelta(seconds=lease))
        self._update_each(
            "status = 'pending', permanent = 0, attempts = attempts + 1, message_id = ?,"
            " variant = COALESCE(?, variant), claim_until = ?, updated_at = ?",
            ("message_id", "variant", "claim_until", "updated_at"),
            [
                (mid, variant, until, stamp, day.isoformat(), email, owner)
                for email, (mid, variant) in items.items()
            ],
            owned=True,
        )

    def renew(self, owner: str, *, lease: float = DEFAULT_LEASE_SECONDS) -> int:
        """Extend every lease ``owner`` holds (its heartbeat); returns how many."""
        until = self._lease_stamp(self._now() + dt.timedelta(seconds=lease))
        with self._tx() as tx:
            return tx.execute(
                "UPDATE deliveries SET claim_until = ? WHERE claim_owner = ?"
                " AND status = 'pending'",
                (until, owner),
            )

    def release(self, day: dt.date, emails: Iterable[str], *, owner: str) -> None:
        """Give back claims never handed to the backend (others may take them at once)."""
        self._write_many(
            "UPDATE deliveries SET claim_owner = NULL, claim_until = NULL"
            " WHERE day = ? AND email = ? AND claim_owner = ? AND status = 'pending'",
            [(day.isoformat(), email, owner) for email in emails],
        )

    def mark_pending(self, day: dt.date, items: Mapping[str, str | None]) -> None:
        """Rows for ``items`` (address -> Message-ID) become pending, attempts + 1,
        without a claim (for tools and tests that drive the backend themselves)."""
        stamp = self._stamp()
        with self._tx() as tx:
            tx.executemany(
                "INSERT INTO deliveries"
                " (day, email, status, attempts, message_id, created_at, updated_at)"
                " VALUES (?, ?, 'pending', 1, ?, ?, ?)"
                " ON CONFLICT (day, email) DO UPDATE SET status = 'pending', permanent = 0,"
                " attempts = deliveries.attempts + 1, message_id = excluded.message_id,"
                " updated_at = excluded.updated_at",
                [(day.isoformat(), email, mid, stamp, stamp) for email, mid in items.items()],
            )

    def record(self, day: dt.date, results: Iterable[SendResult]) -> None:
        """Store each result's outcome and release its claim (``skipped``: back to a
        pending row anyone may claim).

        Threads calling this at the same time share a write (a group commit): the first
        writes its rows, those arriving meanwhile wait and the next of them writes all
        theirs in one go; each call returns once its own rows are committed. So the SMTP
        connections, each recording its last accepted message before the next can be
        accepted, cost one transaction (on PostgreSQL one statement) per group, not per
        message.
        """
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
        if rows:
            self._outcomes(rows)

    def _write_outcomes(self, rows: list[tuple[Any, ...]]) -> None:
        """One group's outcomes (:class:`_GroupCommit` calls this from one thread at a time)."""
        assignments = (
            "status = ?, permanent = ?, provider_id = COALESCE(?, provider_id),"
            " last_error = ?, updated_at = ?, claim_owner = NULL, claim_until = NULL"
        )
        names = ("status", "permanent", "provider_id", "last_error", "updated_at")
        if self.engine == "sqlite":
            self._update_each(assignments, names, rows)
            return
        if self._outcome_conn is None:
            self._outcome_conn = _pg_connect(self.url, durable=self._durable)
        self._run_pg(
            self._outcome_conn,
            _pg_updates(
                f"{assignments} WHERE day = ? AND email = ?", [*names, "day", "email"], rows
            ),
        )

    def _update_each(
        self,
        assignments: str,
        names: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        owned: bool = False,
    ) -> None:
        """Update ``deliveries`` row by row: each of ``rows`` holds the values of
        ``assignments``' placeholders (the columns ``names``, in order), then the day and
        the address (and the claim's owner when ``owned``: the row is left alone unless
        it still holds that claim).

        SQLite: one statement a row, in one transaction (in-process, no round trip).
        PostgreSQL: one ``UPDATE … FROM (VALUES …)`` a ROWS_PER_STATEMENT rows, so a
        batch costs one round trip, not one a row.
        """
        if not rows:
            return
        match = "day = ? AND email = ?" + (" AND claim_owner = ?" if owned else "")
        if self.engine == "sqlite":
            self._write_many(f"UPDATE deliveries SET {assignments} WHERE {match}", rows)
            return
        columns = [*names, "day", "email", *(["claim_owner"] if owned else [])]
        with self._lock:
            self._run_pg(self._conn, _pg_updates(f"{assignments} WHERE {match}", columns, rows))

    def _run_pg(self, conn: Any, statements: Sequence[tuple[str, list[Any]]]) -> None:
        """``statements`` on the PostgreSQL connection ``conn``: one alone in autocommit
        (one round trip, no BEGIN/COMMIT), more in one transaction."""
        import psycopg

        try:
            if len(statements) == 1:
                conn.execute(*statements[0])
                return
            with conn.transaction():
                for statement, args in statements:
                    conn.execute(statement, args)
        except psycopg.Error as exc:
            raise self._error(exc) from None

    # -- papers --------------------------------------------------------------------------

    def record_papers(self, day: dt.date, keys: Iterable[str]) -> None:
        """Remember that the papers ``keys`` went out on ``day`` (``digest.dedupe_days``)."""
        self._write_many(
            "INSERT INTO sent_papers (day, paper_key) VALUES (?, ?)"
            " ON CONFLICT (day, paper_key) DO NOTHING",
            [(day.isoformat(), key) for key in keys],
        )

    def recent_paper_keys(self, day: dt.date, days: int) -> set[str]:
        """Paper keys sent in the ``days`` days before ``day`` (not ``day`` itself)."""
        if days <= 0:
            return set()
        start = day - dt.timedelta(days=days)
        rows = self._read(
            "SELECT DISTINCT paper_key FROM sent_papers WHERE day >= ? AND day < ?",
            (start.isoformat(), day.isoformat()),
        )
        return {row[0] for row in rows}

    def save_variant(self, day: dt.date, variant: str, keys: Sequence[str]) -> None:
        """Store a (day, variant)'s paper keys in order, once (a repeat changes nothing)."""
        self._write_many(
            "INSERT INTO variant_papers (day, variant, position, paper_key)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (day, variant, position) DO NOTHING",
            [(day.isoformat(), variant, i, key) for i, key in enumerate(keys)],
        )

    def variant_papers(self, day: dt.date, variant: str) -> list[str]:
        rows = self._read(
            "SELECT paper_key FROM variant_papers WHERE day = ? AND variant = ? ORDER BY position",
            (day.isoformat(), variant),
        )
        return [key for (key,) in rows]

    def papers_received(self, email: str, *, since: dt.date | None = None) -> set[str]:
        """Paper keys of every digest sent to ``email`` (on or after ``since``)."""
        rows = self._read(
            "SELECT DISTINCT v.paper_key FROM deliveries d JOIN variant_papers v"
            " ON v.day = d.day AND v.variant = d.variant"
            " WHERE d.email = ? AND d.status = 'sent' AND d.day >= ?",
            (email, (since or dt.date.min).isoformat()),
        )
        return {key for (key,) in rows}

    def save_day(
        self, day: Day, *, edition: str = "daily", prepared_at: dt.datetime | None = None
    ) -> None:
        """Store (or replace) the papers of a prepared day."""
        papers = json.dumps([paper_to_json(p) for p in day.papers], ensure_ascii=False)
        with self._tx() as tx:
            tx.execute(
                "INSERT INTO days (day, edition, source, papers, prepared_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (day, edition) DO UPDATE SET"
                " source = excluded.source, papers = excluded.papers,"
                " prepared_at = excluded.prepared_at",
                (day.date.isoformat(), edition, day.source, papers, self._stamp(prepared_at)),
            )

    def load_day(self, date: dt.date, *, edition: str = "daily") -> StoredDay | None:
        rows = self._read(
            "SELECT day, edition, source, papers, prepared_at FROM days"
            " WHERE day = ? AND edition = ?",
            (date.isoformat(), edition),
        )
        return _stored_day(rows[0]) if rows else None

    def load_days(self, start: dt.date, end: dt.date, *, edition: str = "daily") -> list[StoredDay]:
        """Stored days from ``start`` to ``end`` (both included), oldest first."""
        rows = self._read(
            "SELECT day, edition, source, papers, prepared_at FROM days"
            " WHERE day >= ? AND day <= ? AND edition = ? ORDER BY day",
            (start.isoformat(), end.isoformat(), edition),
        )
        return [_stored_day(row) for row in rows]

    # -- readers' own choices ------------------------------------------------------------

    @staticmethod
    def _event(tx: _Tx, key: str, kind: str, detail: str, at: str) -> None:
        tx.execute(
            "INSERT INTO prefs_events (email_key, kind, detail, at) VALUES (?, ?, ?, ?)",
            (key, kind, detail, at),
        )

    def suppress(
        self,
        email: str,
        *,
        reason: str = "unsubscribe",
        source: str = "web",
        event_id: str | None = None,
    ) -> bool:
        """Suppress ``email``; True if it was not suppressed before (replays change nothing).
        ``event_id``: the bounce or complaint event that caused it."""
        key = email_key(email)
        at = self._stamp()
        with self._tx() as tx:
            count = tx.execute(
                "INSERT INTO suppress_list (email_key, email, reason, source, created_at, event_id)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (email_key) DO NOTHING",
                (key, email.strip(), reason, source, at, event_id),
            )
            if count:
                self._event(tx, key, "suppress", f"{reason} via {source}", at)
            return bool(count)

    def unsuppress(self, email: str, *, source: str = "admin") -> bool:
        """Lift a suppression (the admin's or a confirmed sign-up's decision)."""
        key = email_key(email)
        at = self._stamp()
        with self._tx() as tx:
            count = tx.execute("DELETE FROM suppress_list WHERE email_key = ?", (key,))
            if count:
                self._event(tx, key, "unsuppress", f"via {source}", at)
            return bool(count)

    def is_suppressed(self, email: str) -> bool:
        return bool(
            self._read("SELECT 1 FROM suppress_list WHERE email_key = ?", (email_key(email),))
        )

    def suppressions(self) -> list[Suppression]:
        rows = self._read(
            "SELECT email, reason, source, created_at, event_id FROM suppress_list"
            " ORDER BY created_at, email"
        )
        return [Suppression(*row) for row in rows]

    def suppression(self, email: str) -> Suppression | None:
        rows = self._read(
            "SELECT email, reason, source, created_at, event_id FROM suppress_list"
            " WHERE email_key = ?",
            (email_key(email),),
        )
        return Suppression(*rows[0]) if rows else None

    # -- bounces and complaints (newsletter.bounces) ---------------------------------

    def add_bounce_event(self, event: BounceEvent) -> bool:
        """Store one event; False when its ``event_id`` is stored already (a replay)."""
        with self._tx() as tx:
            count = tx.execute(
                "INSERT INTO bounce_events (event_id, email_key, email, kind, status,"
                " diagnostic, source, day, matched, occurred_at, received_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
                (
                    event.event_id,
                    email_key(event.email),
                    event.email.strip(),
                    event.kind,
                    event.status,
                    event.diagnostic,
                    event.source,
                    event.day.isoformat() if event.day else None,
                    event.matched,
                    self._stamp(event.occurred_at),
                    self._stamp(),
                ),
            )
        return bool(count)

    def bounce_times(self, email: str, kind: str, *, since: dt.datetime) -> list[dt.datetime]:
        """When ``email``'s events of ``kind`` happened, from ``since`` on."""
        rows = self._read(
            "SELECT occurred_at FROM bounce_events WHERE email_key = ? AND kind = ?"
            " AND occurred_at >= ? ORDER BY occurred_at",
            (email_key(email), kind, self._stamp(since)),
        )
        return [dt.datetime.fromisoformat(str(row[0])) for row in rows]

    def bounce_events(self, email: str | None = None, *, limit: int = 1000) -> list[BounceEvent]:
        """Stored events, newest first (of one address when given)."""
        sql = (
            "SELECT event_id, email, kind, status, diagnostic, source, day, matched, occurred_at"
            " FROM bounce_events"
        )
        args: list[Any] = []
        if email is not None:
            sql += " WHERE email_key = ?"
            args.append(email_key(email))
        rows = self._read(sql + " ORDER BY occurred_at DESC, id DESC LIMIT ?", [*args, limit])
        return [_bounce_event(row) for row in rows]

    def bounce_event(self, event_id: str) -> BounceEvent | None:
        rows = self._read(
            "SELECT event_id, email, kind, status, diagnostic, source, day, matched, occurred_at"
            " FROM bounce_events WHERE event_id = ?",
            (event_id,),
        )
        return _bounce_event(rows[0]) if rows else None

    def bounce_counts(self, since: dt.datetime) -> dict[str, int]:
        """Events per kind that happened from ``since`` on."""
        rows = self._read(
            "SELECT kind, COUNT(*) FROM bounce_events WHERE occurred_at >= ? GROUP BY kind",
            (self._stamp(since),),
        )
        return {str(kind): int(count) for kind, count in rows}

    def sent_count(self, since: dt.date) -> int:
        """Messages delivered to the provider for the days from ``since`` on."""
        rows = self._read(
            "SELECT COUNT(*) FROM deliveries WHERE status = 'sent' AND day >= ?",
            (since.isoformat(),),
        )
        return int(rows[0][0])

    def delivery_for_message_id(self, message_id: str) -> tuple[str, dt.date] | None:
        """(address, day) of the message we sent with this Message-ID."""
        rows = self._read(
            "SELECT email, day FROM deliveries WHERE message_id = ? ORDER BY day DESC LIMIT 1",
            (message_id,),
        )
        return (str(rows[0][0]), dt.date.fromisoformat(str(rows[0][1]))) if rows else None

    def suppressed_count(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM suppress_list")[0][0])

    def set_preferences(
        self,
        email: str,
        *,
        topics: Iterable[str] | None = None,
        summary: SummaryStyle | None = None,
        paused: bool = False,
        keywords: Iterable[str] | None = None,
        authors: Iterable[str] | None = None,
        max_papers: int | Literal["all"] | None = None,
        timezone: str | None = None,
        frequency: Frequency | None = None,
        weekday: Weekday | None = None,
    ) -> Overlay:
        """Record the subscriber's own choices (replacing earlier ones; None: as in the list)."""
        if summary is not None and summary not in SUMMARY_STYLES:
            raise ValueError(f"{summary!r} is not one of {' | '.join(SUMMARY_STYLES)}")
        if frequency is not None and frequency not in FREQUENCIES:
            raise ValueError(f"{frequency!r} is not one of {' | '.join(FREQUENCIES)}")
        if weekday is not None and weekday not in WEEKDAYS:
            raise ValueError(f"{weekday!r} is not one of {' | '.join(WEEKDAYS)}")
        if max_papers is not None and max_papers != "all" and max_papers < 1:
            raise ValueError(f"max_papers must be at least 1, not {max_papers}")
        key = email_key(email)
        at = self._stamp()
        overlay = Overlay(
            email=email.strip(),
            topics=tuple(topics) if topics is not None else None,
            summary=summary,
            paused=paused,
            updated_at=at,
            keywords=tuple(keywords) if keywords is not None else None,
            authors=tuple(authors) if authors is not None else None,
            max_papers=max_papers,
            timezone=timezone,
            frequency=frequency,
            weekday=weekday,
        )

        def listed(value: tuple[str, ...] | None) -> str | None:
            return json.dumps(list(value), ensure_ascii=False) if value is not None else None

        detail = json.dumps(
            {
                "topics": listed(overlay.topics),
                "summary": summary,
                "paused": paused,
                "keywords": listed(overlay.keywords),
                "authors": listed(overlay.authors),
                "max_papers": max_papers,
                "timezone": timezone,
                "frequency": frequency,
                "weekday": weekday,
            },
            ensure_ascii=False,
        )
        with self._tx() as tx:
            tx.execute(
                "INSERT INTO prefs_overlay (email_key, email, topics, summary, paused, updated_at,"
                " keywords, authors, max_papers, timezone, frequency, weekday)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (email_key) DO UPDATE SET"
                " email = excluded.email, topics = excluded.topics, summary = excluded.summary,"
                " paused = excluded.paused, updated_at = excluded.updated_at,"
                " keywords = excluded.keywords, authors = excluded.authors,"
                " max_papers = excluded.max_papers, timezone = excluded.timezone,"
                " frequency = excluded.frequency, weekday = excluded.weekday",
                (
                    key,
                    overlay.email,
                    listed(overlay.topics),
                    summary,
                    int(paused),
                    at,
                    listed(overlay.keywords),
                    listed(overlay.authors),
                    str(max_papers) if max_papers is not None else None,
                    timezone,
                    frequency,
                    weekday,
                ),
            )
            self._event(tx, key, "preferences", detail, at)
        return overlay

    def preferences(self, email: str) -> Overlay | None:
        rows = self._read(
            f"SELECT {_OVERLAY_COLUMNS} FROM prefs_overlay WHERE email_key = ?",
            (email_key(email),),
        )
        return _overlay(rows[0]) if rows else None

    def overlays(self) -> dict[str, Overlay]:
        """Every overlay, by casefolded address."""
        rows = self._read(f"SELECT {_OVERLAY_COLUMNS} FROM prefs_overlay")
        return {email_key(row[0]): _overlay(row) for row in rows}

    def suppressed_keys(self) -> dict[str, str]:
        """Casefolded address -> reason, of every suppressed address."""
        return {
            key: reason for key, reason in self._read("SELECT email_key, reason FROM suppress_list")
        }

    def apply(self, subscribers: Iterable[Subscriber]) -> list[Subscriber]:
        """Who gets the next send: inactive, suppressed and paused entries dropped, and
        each subscriber's own topic / summary choices laid over the admin's entry."""
        return self.apply_counted(subscribers)[0]

    def apply_counted(
        self, subscribers: Iterable[Subscriber]
    ) -> tuple[list[Subscriber], dict[str, int]]:
        """:meth:`apply`, and how many were left out why (``inactive``, ``unsubscribed``,
        ``suppressed``, ``paused``; only reasons that occurred)."""
        return apply_choices(subscribers, self.suppressed_keys(), self.overlays())

    # -- sign-ups with abuse limits (newsletter serve --allow-signup) -----------------

    _SIGNUP_COLUMNS = "email, name, topics, requested_at, nonce, client"

    def request_signup(
        self,
        email: str,
        *,
        name: str,
        topics: Iterable[str],
        client: str,
        interval: dt.timedelta,
        per_client_hour: int,
        max_pending: int,
        max_age: dt.timedelta,
    ) -> SignupDecision:
        """Decide, in one write transaction, whether a sign-up post may send a
        confirmation; if so it becomes the address's pending sign-up with a new nonce.

        Expired sign-ups and attempts older than an hour are dropped first. A post for an
        address whose confirmation went out within ``interval`` changes nothing (not even
        the pending name or topics); every post counts against its ``client``.
        """
        key = email_key(email)
        now = self._now()
        at = self._stamp(now)
        with self._tx() as tx:
            tx.execute(
                "DELETE FROM signup_pending WHERE requested_at < ?", (self._stamp(now - max_age),)
            )
            tx.execute(
                "DELETE FROM signup_attempts WHERE at < ?",
                (self._stamp(now - dt.timedelta(hours=1)),),
            )
            tries = tx.fetch("SELECT COUNT(*) FROM signup_attempts WHERE client = ?", (client,))
            if int(tries[0][0]) >= per_client_hour:
                return SignupDecision("client_limit")
            tx.execute("INSERT INTO signup_attempts (client, at) VALUES (?, ?)", (client, at))
            rows = tx.fetch("SELECT requested_at FROM signup_pending WHERE email_key = ?", (key,))
            if rows and str(rows[0][0]) >= self._stamp(now - interval):
                return SignupDecision("recent")
            if not rows:
                pending = tx.fetch("SELECT COUNT(*) FROM signup_pending")
                if int(pending[0][0]) >= max_pending:
                    return SignupDecision("full")
            nonce = secrets.token_urlsafe(16)
            tx.execute(
                "INSERT INTO signup_pending"
                " (email_key, email, name, topics, nonce, client, requested_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (email_key) DO UPDATE SET"
                " email = excluded.email, name = excluded.name, topics = excluded.topics,"
                " nonce = excluded.nonce, client = excluded.client,"
                " requested_at = excluded.requested_at",
                (
                    key,
                    email.strip(),
                    name,
                    json.dumps(list(topics), ensure_ascii=False),
                    nonce,
                    client,
                    at,
                ),
            )
            self._event(tx, key, "signup", "requested", at)
            return SignupDecision("send", nonce)

    def cancel_signup(self, email: str, nonce: str) -> None:
        """Forget the pending sign-up with ``nonce`` (its confirmation could not be sent)."""
        with self._tx() as tx:
            tx.execute(
                "DELETE FROM signup_pending WHERE email_key = ? AND nonce = ?",
                (email_key(email), nonce),
            )

    def claim_signup(self, email: str, nonce: str) -> Signup | None:
        """Take the pending sign-up of ``email`` if ``nonce`` is its nonce (deleting it, so
        a link works once), else None. A suppression is lifted only if it is older than
        the sign-up request: the reader unsubscribed, then asked to come back."""
        key = email_key(email)
        at = self._stamp()
        with self._tx() as tx:
            rows = tx.fetch(
                f"SELECT {self._SIGNUP_COLUMNS} FROM signup_pending"
                " WHERE email_key = ? AND nonce = ?",
                (key, nonce),
            )
            if not rows:
                return None
            tx.execute("DELETE FROM signup_pending WHERE email_key = ?", (key,))
            claimed = _signup(rows[0])
            lifted = tx.execute(
                "DELETE FROM suppress_list WHERE email_key = ? AND created_at < ?",
                (key, claimed.requested_at),
            )
            if lifted:
                self._event(tx, key, "unsuppress", "confirmed a later sign-up", at)
            self._event(tx, key, "signup", "confirmed", at)
            return claimed

    def unclaim_signup(self, signup: Signup) -> None:
        """Put a claimed sign-up back (adding it to the list failed; its link works again)."""
        with self._tx() as tx:
            tx.execute(
                "INSERT INTO signup_pending"
                " (email_key, email, name, topics, nonce, client, requested_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (email_key) DO NOTHING",
                (
                    email_key(signup.email),
                    signup.email,
                    signup.name,
                    json.dumps(list(signup.topics), ensure_ascii=False),
                    signup.nonce,
                    signup.client,
                    signup.requested_at,
                ),
            )

    def pending_signup(self, email: str) -> Signup | None:
        """The pending sign-up of ``email``, if any."""
        rows = self._read(
            f"SELECT {self._SIGNUP_COLUMNS} FROM signup_pending WHERE email_key = ?",
            (email_key(email),),
        )
        return _signup(rows[0]) if rows else None

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

    # -- feedback signals ------------------------------------------------------------------

    def record_signal(
        self, email: str, signal: Signal, target: str, *, paper: Paper | None = None
    ) -> bool:
        """Record a reader's "more" / "less" about the paper ``target`` (with its text, for
        similarity) or "fewer_topic" about the topic ``target``; True if it is new.
        "more" and "less" about one paper replace each other; a replay changes nothing."""
        if signal not in SIGNALS:
            raise ValueError(f"{signal!r} is not one of {' | '.join(SIGNALS)}")
        key = email_key(email)
        at = self._stamp()
        text = json.dumps(paper_to_json(paper), ensure_ascii=False) if paper else None
        with self._tx() as tx:
            if signal in ("more", "less"):
                other = "less" if signal == "more" else "more"
                tx.execute(
                    "DELETE FROM reader_signals WHERE email_key = ? AND signal = ? AND target = ?",
                    (key, other, target),
                )
            added = tx.execute(
                "INSERT INTO reader_signals (email_key, signal, target, paper, created_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (email_key, signal, target) DO NOTHING",
                (key, signal, target, text, at),
            )
            if added:
                self._event(tx, key, "signal", f"{signal} {target}", at)
        return bool(added)

    def signals(self, email: str) -> list[StoredSignal]:
        """A reader's signals, newest first."""
        rows = self._read(
            "SELECT signal, target, paper, created_at FROM reader_signals WHERE email_key = ?"
            " ORDER BY created_at DESC, signal, target",
            (email_key(email),),
        )
        return [_signal(row) for row in rows]

    def clear_signals(
        self, email: str, *, signal: str | None = None, target: str | None = None
    ) -> int:
        """Forget a reader's signals (all of them, or the one named); how many went."""
        key = email_key(email)
        sql = "DELETE FROM reader_signals WHERE email_key = ?"
        args: list[Any] = [key]
        if signal is not None and target is not None:
            sql += " AND signal = ? AND target = ?"
            args += [signal, target]
        at = self._stamp()
        with self._tx() as tx:
            gone = tx.execute(sql, args)
            if gone:
                self._event(
                    tx, key, "signals cleared", f"{signal or 'all'} {target or ''}".strip(), at
                )
        return gone

    def feedback(self) -> dict[str, Feedback]:
        """Every reader's signals as :class:`newsletter.feedback.Feedback`, by casefolded
        address (one query; readers without signals are absent)."""
        liked: dict[str, list[Paper]] = {}
        disliked: dict[str, list[Paper]] = {}
        fewer: dict[str, list[str]] = {}
        rows = self._read(
            "SELECT email_key, signal, target, paper FROM reader_signals ORDER BY created_at"
        )
        for key, signal, target, paper in rows:
            if signal == "fewer_topic":
                fewer.setdefault(key, []).append(target)
            elif paper is not None:
                into = liked if signal == "more" else disliked
                into.setdefault(key, []).append(paper_from_json(json.loads(paper)))
        return {
            key: Feedback(
                liked=tuple(liked.get(key, ())),
                disliked=tuple(disliked.get(key, ())),
                fewer_topics=tuple(fewer.get(key, ())),
            )
            for key in {*liked, *disliked, *fewer}
        }

    def received_among(
        self,
        paper_keys: Iterable[str],
        *,
        emails: Iterable[str] | None = None,
        before: dt.date | None = None,
    ) -> dict[str, set[str]]:
        """Which of ``paper_keys`` each reader was sent, by casefolded address: "never
        twice" for a whole list in a few queries (CLAIM_BATCH keys or addresses each).

        Without ``emails`` every reader who received one of the keys is asked for (a
        day's papers: few rows); with them only those readers (a week's papers). With
        ``before``, only digests of earlier days count (a rerun of a day reads none of it)."""
        wanted = set(paper_keys)
        out: dict[str, set[str]] = {}
        join = (
            "SELECT d.email, v.paper_key FROM variant_papers v JOIN deliveries d"
            " ON d.day = v.day AND d.variant = v.variant WHERE d.status = 'sent' AND d.day < ?"
        )
        until = (before or dt.date.max).isoformat()
        column = "d.email" if emails is not None else "v.paper_key"
        items = sorted(set(emails) if emails is not None else wanted)
        for start in range(0, len(items), CLAIM_BATCH):
            batch = items[start : start + CLAIM_BATCH]
            marks = ", ".join("?" * len(batch))
            for email, key in self._read(f"{join} AND {column} IN ({marks})", [until, *batch]):
                if key in wanted:
                    out.setdefault(email_key(email), set()).add(key)
        return out

    def find_paper(self, ref: str, *, days: int) -> Paper | None:
        """The newest stored copy of the paper that feedback links name ``ref``
        (:func:`newsletter.feedback.paper_ref` of its key) among the last ``days`` stored
        days."""
        rows = self._read(
            "SELECT day, edition, source, papers, prepared_at FROM days"
            " WHERE edition = 'daily' ORDER BY day DESC LIMIT ?",
            (max(days, 0),),
        )
        for row in rows:
            for paper in _stored_day(row).day.papers:
                if paper_ref(paper.key) == ref:
                    return paper
        return None

    # -- runs and metadata ---------------------------------------------------------------

    def start_run(self, day: dt.date, *, command: str, owner: str) -> str:
        """Record that a run of ``day`` started; returns its id."""
        run_id = secrets.token_hex(8)
        with self._tx() as tx:
            tx.execute(
                "INSERT INTO runs (id, day, command, owner, started_at) VALUES (?, ?, ?, ?, ?)",
                (run_id, day.isoformat(), command, owner, self._lease_stamp(self._now())),
            )
        return run_id

    def finish_run(self, run_id: str, counts: Mapping[str, int], *, outcome: str) -> None:
        with self._tx() as tx:
            tx.execute(
                "UPDATE runs SET finished_at = ?, outcome = ?, counts = ? WHERE id = ?",
                (
                    self._lease_stamp(self._now()),
                    outcome,
                    json.dumps(dict(counts), sort_keys=True),
                    run_id,
                ),
            )

    _RUN_COLUMNS = "id, day, command, owner, started_at, finished_at, outcome, counts"

    def last_run(self) -> RunRecord | None:
        """The run started last (None when there was none)."""
        rows = self._read(
            f"SELECT {self._RUN_COLUMNS} FROM runs ORDER BY started_at DESC, id LIMIT 1"
        )
        return _run(rows[0]) if rows else None

    def runs_for(self, day: dt.date) -> list[RunRecord]:
        rows = self._read(
            f"SELECT {self._RUN_COLUMNS} FROM runs WHERE day = ? ORDER BY started_at",
            (day.isoformat(),),
        )
        return [_run(row) for row in rows]

    def meta(self, key: str) -> str | None:
        rows = self._read("SELECT value FROM state_meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def set_meta(self, key: str, value: str, *, replace: bool = True) -> str:
        """Set ``key``; with ``replace=False`` only when unset. Returns the value now held."""
        with self._tx() as tx:
            conflict = (
                "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
                if replace
                else "DO NOTHING"
            )
            tx.execute(
                "INSERT INTO state_meta (key, value, updated_at) VALUES (?, ?, ?)"
                f" ON CONFLICT (key) {conflict}",
                (key, value, self._stamp()),
            )
            return str(tx.fetch("SELECT value FROM state_meta WHERE key = ?", (key,))[0][0])

    # -- the subscriber list (``subscribers: state``) -----------------------------------

    def subscriber_batch(
        self, *, after: int = 0, limit: int = SUBSCRIBER_BATCH
    ) -> list[tuple[int, dict[str, Any]]]:
        """Up to ``limit`` entries (row id, fields) with ids above ``after``, in id order:
        read a long list batch by batch, so memory stays flat (as listmonk does)."""
        rows = self._read(
            "SELECT id, entry FROM subscribers WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
        )
        return [(int(row[0]), json.loads(row[1])) for row in rows]

    def subscriber_entry(self, email: str) -> dict[str, Any] | None:
        """The fields of ``email``'s entry (case-insensitive), or None."""
        rows = self._read("SELECT entry FROM subscribers WHERE email_key = ?", (email_key(email),))
        return dict(json.loads(rows[0][0])) if rows else None

    def subscriber_emails(self) -> list[str]:
        """Every address in the list, in the order they were added."""
        return [str(row[0]) for row in self._read("SELECT email FROM subscribers ORDER BY id")]

    def subscriber_count(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM subscribers")[0][0])

    def add_subscribers(self, entries: Sequence[Mapping[str, Any]]) -> int:
        """Append entries (each with an ``email``) in one transaction; an address already
        in the list is left as it is. Returns how many were added."""
        at = self._stamp()
        rows = [(email_key(str(e["email"])), str(e["email"]), _entry_json(e), at) for e in entries]
        with self._tx() as tx:
            before = int(tx.fetch("SELECT COUNT(*) FROM subscribers")[0][0])
            tx.executemany(
                "INSERT INTO subscribers (email_key, email, entry, updated_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (email_key) DO NOTHING",
                rows,
            )
            return int(tx.fetch("SELECT COUNT(*) FROM subscribers")[0][0]) - before

    def update_subscriber(self, email: str, entry: Mapping[str, Any]) -> bool:
        """Replace the fields of ``email``'s entry (its address may change); False if absent."""
        with self._tx() as tx:
            return bool(
                tx.execute(
                    "UPDATE subscribers SET email_key = ?, email = ?, entry = ?, updated_at = ?"
                    " WHERE email_key = ?",
                    (
                        email_key(str(entry["email"])),
                        str(entry["email"]),
                        _entry_json(entry),
                        self._stamp(),
                        email_key(email),
                    ),
                )
            )

    def remove_subscriber(self, email: str) -> bool:
        """Remove ``email``'s entry; False when it is not in the list."""
        with self._tx() as tx:
            return bool(
                tx.execute("DELETE FROM subscribers WHERE email_key = ?", (email_key(email),))
            )


def _entry_json(entry: Mapping[str, Any]) -> str:
    """An entry's fields as JSON (dates as ``YYYY-MM-DD``, lists as lists)."""
    return json.dumps(
        {k: list(v) if isinstance(v, tuple) else v for k, v in entry.items() if v is not None},
        default=str,
        ensure_ascii=False,
    )


def _bounce_event(row: Sequence[Any]) -> BounceEvent:
    event_id, email, kind, status, diagnostic, source, day, matched, occurred_at = row
    return BounceEvent(
        event_id=str(event_id),
        email=str(email),
        kind=str(kind),
        status=status,
        diagnostic=str(diagnostic),
        source=str(source),
        day=dt.date.fromisoformat(str(day)) if day else None,
        matched=str(matched),
        occurred_at=dt.datetime.fromisoformat(str(occurred_at)),
    )


def _pg_updates(
    sql: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> list[tuple[str, list[Any]]]:
    """``UPDATE deliveries SET <sql>`` (``?`` placeholders for ``columns``, in order) as
    PostgreSQL statements of at most ROWS_PER_STATEMENT rows each, with their arguments."""
    return [
        (_pg_update_sql(sql, tuple(columns), len(part)), [value for row in part for value in row])
        for part in (
            rows[start : start + ROWS_PER_STATEMENT]
            for start in range(0, len(rows), ROWS_PER_STATEMENT)
        )
    ]


@functools.lru_cache(maxsize=64)
def _pg_update_sql(sql: str, columns: tuple[str, ...], count: int) -> str:
    """The text of :func:`_pg_updates`' statement for ``count`` rows (made once: a sender
    records one or two rows at a time, thousands of times): each placeholder becomes the
    VALUES column of its value (``v.new_<column>``)."""
    given = iter(columns)
    named = re.sub(r"\?", lambda _: f"v.new_{next(given)}", sql)
    set_part, where_part = named.split(" WHERE ", 1)
    row_marks = "(" + ", ".join(f"%s::{_PG_TYPES.get(c, 'text')}" for c in columns) + ")"
    return (
        f"UPDATE deliveries SET {set_part} FROM (VALUES {', '.join([row_marks] * count)})"
        f" AS v({', '.join(f'new_{c}' for c in columns)}) WHERE {where_part}"
    )


class _GroupCommit:
    """Rows from many threads written in as few writes as possible (a group commit).

    A caller with nobody writing writes its rows at once; callers arriving while a write
    runs queue theirs and wait, and when it ends the first of them writes everything
    queued. Each call returns when its own rows are written, or raises the error of the
    write that held them.
    """

    def __init__(self, write: Callable[[list[tuple[Any, ...]]], None]) -> None:
        self._write = write
        self._changed = threading.Condition()
        self._queued: list[tuple[Any, ...]] = []
        self._calls = 0
        """Calls so far; call number n is written once ``_written >= n``."""
        self._written = 0
        self._writing = False
        self._failed: dict[int, BaseException] = {}
        """Call number -> the error of the write that held its rows (until it raises it)."""

    def __call__(self, rows: Sequence[tuple[Any, ...]]) -> None:
        with self._changed:
            self._queued.extend(rows)
            self._calls += 1
            mine = self._calls
            while self._writing and self._written < mine:
                self._changed.wait()
            if self._written >= mine:  # another caller wrote ours with theirs
                failed = self._failed.pop(mine, None)
                if failed is not None:
                    raise failed
                return
            self._writing = True
            batch, self._queued = self._queued, []
            last = self._calls
        failed = None
        try:
            self._write(batch)
        except BaseException as exc:
            failed = exc
            raise
        finally:
            with self._changed:
                if failed is not None:
                    for call in range(self._written + 1, last + 1):
                        if call != mine:
                            self._failed[call] = failed
                self._written = last
                self._writing = False
                self._changed.notify_all()


class _Tx:
    """Statements inside one :meth:`State._tx` transaction."""

    def __init__(self, state: State, handle: Any) -> None:
        self._state = state
        self._handle = handle

    def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run one statement; the number of rows it changed."""
        cur = self._handle.execute(self._state._sql(sql), args)
        return int(cur.rowcount)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._handle.executemany(self._state._sql(sql), rows)

    def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self._handle.execute(self._state._sql(sql), args)
        return list(cur.fetchall())


def _sqlite_connect(url: StateURL, *, durable: bool) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(
            url.target, timeout=BUSY_TIMEOUT_SECONDS, check_same_thread=False, isolation_level=None
        )
    except sqlite3.Error as exc:
        raise LedgerError(f"{url.display()}: cannot open the state database: {exc}") from None
    try:
        _wal_mode(conn)
        conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
    except sqlite3.Error as exc:
        conn.close()
        raise LedgerError(f"{url.display()}: cannot open the state database: {exc}") from None
    return conn


def _wal_mode(conn: sqlite3.Connection) -> None:
    """Put the database in WAL mode, waiting (up to BUSY_TIMEOUT_SECONDS) while another
    process does the same: SQLite answers "database is locked" at once, without its busy
    handler, to the second of two connections that both need the exclusive lock the
    switch takes (a deadlock it avoids), as when two sends start on a new state file."""
    give_up = time.monotonic() + BUSY_TIMEOUT_SECONDS
    pause = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            primary = exc.sqlite_errorcode & 0xFF  # SQLITE_BUSY_SNAPSHOT... are SQLITE_BUSY
            if primary not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise
            if time.monotonic() + pause > give_up:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


def _pg_connect(url: StateURL, *, durable: bool) -> psycopg.Connection[Any]:
    try:
        import psycopg
    except ImportError:
        raise LedgerError(
            "state: a postgresql:// URL needs psycopg: pip install 'newsletter[postgres]'"
        ) from None
    target = "postgresql" + url.target[url.target.index("://") :]
    try:
        conn = psycopg.connect(target, autocommit=True, connect_timeout=10)
        if not durable:
            # Like SQLite's synchronous=NORMAL: a commit does not wait for the server's
            # disk flush (the server keeps it; only a crash of the server itself within a
            # fraction of a second may lose it). A send commits once per message.
            conn.execute("SET synchronous_commit = off")
        return conn
    except psycopg.Error as exc:
        text = " ".join(str(exc).split())
        raise LedgerError(f"state database {url.display()}: {text}") from None


_OVERLAY_COLUMNS = (
    "email, topics, summary, paused, updated_at,"
    " keywords, authors, max_papers, timezone, frequency, weekday"
)


def _overlay(row: tuple[Any, ...]) -> Overlay:
    email, topics, summary, paused, updated_at = row[:5]
    keywords, authors, max_papers, timezone, frequency, weekday = row[5:]

    def listed(text: str | None) -> tuple[str, ...] | None:
        return tuple(json.loads(text)) if text is not None else None

    papers: int | Literal["all"] | None = None
    if max_papers == "all":
        papers = "all"
    elif max_papers is not None and str(max_papers).isdigit():
        papers = int(max_papers)
    return Overlay(
        email=email,
        topics=listed(topics),
        summary=summary if summary in SUMMARY_STYLES else None,
        paused=bool(paused),
        updated_at=updated_at,
        keywords=listed(keywords),
        authors=listed(authors),
        max_papers=papers,
        timezone=timezone,
        frequency=frequency if frequency in FREQUENCIES else None,
        weekday=weekday if weekday in WEEKDAYS else None,
    )


def _signup(row: tuple[Any, ...]) -> Signup:
    email, name, topics, requested_at, nonce, client = row
    return Signup(email, name, tuple(json.loads(topics)), requested_at, nonce, client)


def _signal(row: tuple[Any, ...]) -> StoredSignal:
    signal, target, paper, created_at = row
    title = str(json.loads(paper).get("title") or target) if paper else target
    return StoredSignal(signal=signal, target=target, title=title, created_at=created_at)


def _stored_day(row: tuple[Any, ...]) -> StoredDay:
    day, edition, source, papers, prepared_at = row
    loaded = json.loads(papers)
    return StoredDay(
        day=Day(
            date=dt.date.fromisoformat(day),
            papers=tuple(paper_from_json(p) for p in loaded),
            source=source,
        ),
        edition=edition,
        prepared_at=prepared_at,
    )


def _run(row: tuple[Any, ...]) -> RunRecord:
    run_id, day, command, owner, started_at, finished_at, outcome, counts = row
    return RunRecord(
        id=run_id,
        day=dt.date.fromisoformat(day),
        command=command,
        owner=owner,
        started_at=started_at,
        finished_at=finished_at,
        outcome=outcome,
        counts=json.loads(counts) if counts else {},
    )
